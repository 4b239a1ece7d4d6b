"""KV placement policies: which memory tier holds each layer's (or each block's) KV. One per file.

`place(layer_bytes, tiers)` gets the KV bytes of every layer of a stage (one GPU, the run's final
context) and the tiers in order (HBM, host, the third tier), and returns per layer the fraction it
keeps in each tier, and whether a layer's tiers are read one after another (`serial`) or at once.
A new policy is a new module here with a class (`name`, `description`, `parallel`, `place`) that
calls `register`. `placement(run, ...)` builds the tiers from the experiment and applies the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcore.config.hardware import GIB
from simcore.errors import SimcoreError
from simcore.registry import Registry

REGISTRY: Registry = Registry("KV placement policy", __name__)
register = REGISTRY.register


@dataclass(frozen=True)
class Tier:
    name: str
    bandwidth: float  # bytes/s per GPU, per direction, as achieved
    capacity: float  # bytes per GPU


@dataclass(frozen=True)
class Placement:
    policy: str
    tiers: tuple[Tier, ...]
    fractions: tuple[tuple[float, ...], ...]  # per layer of the stage, per tier
    layer_bytes: tuple[float, ...]
    parallel: bool  # a layer's tiers are read at once (block spread) or it lives in one tier

    def resident(self) -> dict[str, float]:
        """Bytes each tier holds at the final context."""
        return {t.name: sum(f[i] * b for f, b in zip(self.fractions, self.layer_bytes))
                for i, t in enumerate(self.tiers)}

    def split(self, k: int) -> tuple[tuple[str, float, float], ...]:
        """(tier, fraction, bandwidth) of the stage's k-th layer, tiers holding none left out."""
        return tuple((t.name, f, t.bandwidth) for t, f in zip(self.tiers, self.fractions[k]) if f > 0)


def get_placement(name: str):
    return REGISTRY.get(name, "inference.kv_placement.policy")


def tiers_of(run, hbm_free: float) -> tuple[Tier, ...]:
    cfg = run.experiment.inference.kv_placement
    node = run.system.cluster
    host = (cfg.host_gib * GIB) if cfg.host_gib else node.host.memory_gib * GIB / node.gpus_per_node
    hbm_bw = run.system.gpu.memory.bandwidth * run.system.efficiency.attention_decode_memory  # as a fetch reads it
    out = [Tier("hbm", hbm_bw, max(0.0, hbm_free)),
           Tier("host", run.system.host_bandwidth, host)]
    if cfg.tier is not None:
        out.append(Tier(cfg.tier.name, cfg.tier.bandwidth_gbps * 1e9, cfg.tier.capacity_gib * GIB))
    return tuple(out)


def place(run, layer_bytes: list[float], hbm_free: float) -> Placement:
    """The experiment's policy over one stage's layers; a one-line error when the tiers cannot hold them."""
    policy = get_placement(run.experiment.inference.kv_placement.policy)
    tiers = tiers_of(run, hbm_free)
    total, room = sum(layer_bytes), sum(t.capacity for t in tiers)
    if total > room:
        g = lambda b: f"{b / GIB:,.1f} GiB"  # noqa: E731
        raise SimcoreError(f"inference.kv_placement: the KV cache needs {g(total)} per GPU but the tiers hold "
                           f"{g(room)} (" + ", ".join(f"{t.name} {g(t.capacity)}" for t in tiers) +
                           "); lower the batch or context, or add a tier")
    fr = policy.place(list(layer_bytes), tiers)
    return Placement(policy.name, tiers, tuple(tuple(f) for f in fr), tuple(layer_bytes), policy.parallel)
