"""The one roofline function that prices every op on a system.

time = max(FLOPs / (peak x compute efficiency), bytes / (bandwidth x memory efficiency))
       + kernel floor
Efficiencies depend on the op's shape and come from the GPU's efficiency profile
(hardware/efficiency/*.yaml, fitted against real microbenchmarks by `simcore calibrate`).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, fields

from simcore.config.hardware import System
from simcore.cost.collectives import collective_time
from simcore.ops.backward import BACKWARD
from simcore.ops.op import ATTN_DECODE, ATTN_PREFILL, COLLECTIVE, GEMM, KV_FETCH, LINEAR_ATTN, MEMORY, ROUTING, Op


@dataclass(frozen=True, slots=True)
class Cost:
    compute_s: float  # FLOP-limited time
    memory_s: float  # byte-limited time (HBM, host link or network)
    floor_s: float  # fixed per-kernel cost (launch, ramp, tail)

    @property
    def total(self) -> float:
        return max(self.compute_s, self.memory_s) + self.floor_s

    @property
    def bound(self) -> str:
        if self.floor_s > max(self.compute_s, self.memory_s):
            return "latency"
        return "compute" if self.compute_s >= self.memory_s else "memory"


def gemm_compute_efficiency(system: System, m: float, dtype: str = "bf16") -> float:
    g = system.efficiency.gemm
    return g.compute_max_for(dtype) * m / (m + g.m_half)


GROUPED_TILE = 128  # output rows and columns of one grouped-GEMM tile (CUTLASS / Triton MoE kernels)


def grouped_gemm_waves(system: System, shape: tuple) -> int:
    """Rounds of output tiles each SM works through in a grouped (MoE) GEMM of `active` experts,
    each M x N: no split-K, so a thin slice (small N or K per GPU) still costs a tile per 128 columns."""
    m, n, _, active = shape
    tiles = math.ceil(active - 1e-9) * math.ceil(m / GROUPED_TILE) * math.ceil(n / GROUPED_TILE)
    return math.ceil(tiles / system.gpu.sm_count)


def prefill_attention_efficiency(system: System, tiles: float, seq: float, backward: bool = False) -> float:
    a = system.efficiency.attention_prefill
    fill = min(1.0, tiles / system.gpu.sm_count)  # fewer tiles than SMs leaves SMs idle
    return a.compute_max * seq / (seq + a.s_half) * fill * (a.backward if backward else 1.0)


# Every field of an op but its layer index: equal ops of different layers share one price.
_PRICE_KEY = operator.attrgetter(*(f.name for f in fields(Op) if f.name != "layer"))


class Pricer:
    """Prices ops on one system; memoized because the same op shapes recur every layer and step
    (keyed by every field but the layer index, so an op's price must not depend on it)."""

    def __init__(self, system: System, custom_all_reduce: bool = True):
        self.system = system
        self.custom_all_reduce = custom_all_reduce
        self._cache: dict[tuple, Cost] = {}

    def time(self, op: Op) -> float:
        return self.cost(op).total

    def cost(self, op: Op) -> Cost:
        key = _PRICE_KEY(op)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._price(op)
        return found

    def _price(self, op: Op) -> Cost:
        sys = self.system
        eff = sys.efficiency
        floor = 0.0
        if op.kernel:
            floor = {MEMORY: eff.elementwise_floor, ROUTING: eff.moe_layer_floor}.get(op.family, eff.kernel_floor)
        if op.family == COLLECTIVE:
            t = collective_time(op.collective, op.bytes, op.group, sys, op.inter_node, self.custom_all_reduce,
                                op.per_node)
            return Cost(0.0, t, floor)
        if op.tier_bw:  # a tier of inference.kv_placement (HBM shares keep the attention stream's pricing)
            return Cost(0.0, op.bytes / op.tier_bw, floor)
        if op.tier == "host":
            return Cost(0.0, op.bytes / sys.host_bandwidth, floor)
        bw = sys.gpu.memory.bandwidth
        peak = sys.gpu.peak_flops(op.dtype) if op.flops else 1.0
        if op.family == GEMM:
            m = op.shape[0]
            c = op.flops / (peak * gemm_compute_efficiency(sys, m, op.dtype))
            if op.upcast:  # dequantizing the weights inside the kernel: work in proportion to the rows
                # computed (not to the tile rows a small M wastes, which it overlaps with)
                c += (1 / eff.upcast_gemm - 1) * op.flops / (peak * eff.gemm.compute_max_for(op.dtype))
            if len(op.shape) == 4 and op.kernel:  # grouped over experts: each output tile's fixed cost
                floor += grouped_gemm_waves(sys, op.shape) * eff.moe_tile_us * 1e-6
            if op.scaled_mm:
                floor += eff.scaled_mm_fp8_us * 1e-6
            return Cost(c, op.bytes / (bw * eff.gemm.memory), floor)
        if op.family == ATTN_PREFILL:
            tiles, seq, *rate = op.shape  # a third field: the kernel's rate against the flash curve's
            eff_a = prefill_attention_efficiency(sys, tiles, seq, op.kind == BACKWARD) * (rate[0] if rate else 1.0)
            c = op.flops / (peak * eff_a)
            return Cost(c, op.bytes / (bw * eff.gemm.memory), floor)
        if op.family == LINEAR_ATTN:  # chunked matmuls at the attention kernels' reachable peak; the state streams
            c = op.flops / (peak * eff.attention_prefill.compute_max) if op.flops else 0.0
            return Cost(c, op.bytes / (bw * eff.memory), floor)
        if op.family == ATTN_DECODE or op.kind == KV_FETCH:
            c = op.flops / (peak * eff.attention_prefill.compute_max) if op.flops else 0.0
            return Cost(c, op.bytes / (bw * eff.attention_decode_memory), floor)
        return Cost(0.0, op.bytes / (bw * eff.memory), floor)
