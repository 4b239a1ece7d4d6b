"""Analytical walk over one rank's ordered op list: the single timing path of a pass.

Ops run back to back on the rank's stream. With kvcache_fetch_overlap, a layer's KV fetch
may run under the compute that precedes it, but only in the bandwidth that compute leaves
idle: for a cache in HBM that is the time the preceding ops are not memory-bound; for a
cache in host memory (its own link) it is their whole duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.cost.roofline import Pricer
from simcore.ops.op import KV_FETCH, Op


@dataclass
class Timed:
    op: Op
    duration: float  # the op's own time
    exposed: float  # the part that adds to the rank's time (less than duration when overlapped)
    bound: str


@dataclass
class Walk:
    ops: list[Timed] = field(default_factory=list)
    host_stall: float = 0.0  # time the GPU waits for the host to launch kernels (no CUDA graphs)

    @property
    def time(self) -> float:
        return sum(t.exposed for t in self.ops) + self.host_stall

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.ops:
            out[t.op.kind] = out.get(t.op.kind, 0.0) + t.exposed
        if self.host_stall:
            out["host_launch"] = self.host_stall
        return out

    def kv_bytes(self, kind: str) -> float:
        return sum(t.op.kv_bytes for t in self.ops if t.op.kind == kind)


def walk(ops: list[Op], pricer: Pricer, fetch_overlap: bool, launch_s: float = 0.0) -> Walk:
    """launch_s: host time per kernel launch when kernels are not replayed from a CUDA graph;
    the host runs ahead of the GPU, so it only adds time when launching outlasts the work."""
    out = Walk()
    hbm_slack = link_slack = 0.0  # time since the last fetch that HBM / the host link sat idle
    for op in ops:
        cost = pricer.cost(op)
        duration = cost.total
        exposed = duration
        if op.kind == KV_FETCH:
            if fetch_overlap:
                exposed = max(0.0, duration - (link_slack if op.tier == "host" else hbm_slack))
            hbm_slack = link_slack = 0.0
        else:
            hbm_slack += duration - cost.memory_s
            link_slack += duration
        out.ops.append(Timed(op, duration, exposed, cost.bound))
    if launch_s:
        kernels = sum(1 for op in ops if op.kernel)
        out.host_stall = max(0.0, kernels * launch_s - out.time)
    return out
