"""Schema of `inference.kv_placement`: KV cache spread over memory tiers by a policy (docs/serving.md).

Tiers: the GPU's HBM, host DRAM over the GPU's host link, and an optional third tier (local NVMe
SSD, CXL memory) with its own per-GPU bandwidth and capacity. The policy (one file each in
simcore/memory/kv_placement/, checked through the registry) decides which layers or which share
of each layer's blocks live where.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from simcore.config.validation import Strict


class KVTier(Strict):
    """A third KV tier, per GPU."""

    name: str = Field(min_length=1)  # e.g. ssd, cxl
    bandwidth_gbps: float = Field(ge=1e-3, le=1e7)  # achieved GB/s per GPU, per direction
    capacity_gib: float = Field(ge=1e-3, le=2**20)  # per GPU

    @model_validator(mode="after")
    def _name(self):
        if self.name in ("hbm", "host"):
            raise ValueError(f"name {self.name!r} is taken by a built-in tier; call the third tier e.g. ssd or cxl")
        return self


class KVPlacement(Strict):
    policy: str = "hbm"  # hbm | layer_spill | block_spread (simcore/memory/kv_placement/)
    host_gib: float | None = Field(default=None, ge=1e-3, le=2**20)  # host DRAM for KV per GPU; default: the node's host memory / GPUs per node
    tier: KVTier | None = None  # the third tier
