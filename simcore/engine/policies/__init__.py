"""Overlap policies: what may run concurrently on a rank. One policy per file in this package.

A policy names the overlaps it allows; the engine implements each overlap once:
- "kv_fetch": a layer's kv_cache_fetch runs on the copy stream and may start once the
  previous layer's fetch is done (prefetch of layer l+1 under the compute of layer l),
  sharing HBM bandwidth with the compute it overlaps;
- "tp_comm": a tensor-parallel collective runs on the comm stream in chunks, and the op
  after it starts on each chunk as it arrives (collective-GEMM overlap);
- "pp_comm": a pipeline send runs on the comm stream, so the stage goes on with its next
  micro-batch while the activations travel;
- "dp_grad": a training step's data-parallel gradient buckets (ops named dp_grad_*) run on their
  own stream as backward produces them; without it they run after the last backward;
- "tp_bwd": Transformer Engine without userbuffers (ub_tp_comm_overlap off): only the backward
  reduce-scatter of a column-parallel GEMM's data gradient (sequence parallelism) runs on the comm
  stream, beside that GEMM's weight-gradient GEMM (TE issues it with async_op=True before the
  wgrad GEMM); every other TP collective blocks the compute stream. "tp_comm" includes it;
- "zero_prefetch": under ZeRO 3 a layer's weight all-gather (ops named dp_param_all_gather.*) runs
  on the prefetch stream and may start once the previous layer's gather was issued (FSDP's
  forward and backward prefetch: layer l+1's weights arrive under layer l's compute); the
  layer's first op waits for it. Without it each gather runs on the main stream before its layer.
A new policy is a new module here that calls `register` (it may also override
`stream_for` / `chunks_for` for behaviour beyond these four).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from simcore.ops.backward import is_tp_grad_scatter
from simcore.ops.op import COMM, KV_FETCH, Op
from simcore.registry import Registry

OVERLAPS = ("kv_fetch", "tp_comm", "tp_bwd", "pp_comm", "dp_grad", "zero_prefetch")
MAIN, COPY, COMM_STREAM, DP_STREAM, PREFETCH = "main", "copy", "comm", "dp", "prefetch"
DP_GRAD = "dp_grad_"  # name prefix of data-parallel gradient collectives
DP = "dp_"  # name prefix of every data-parallel collective (gradients, ZeRO weight gathers)
ZERO_GATHER = "dp_param_all_gather."  # name prefix of ZeRO 3's per-layer weight gathers (forward, backward)


@dataclass(frozen=True)
class OverlapPolicy:
    name: str
    description: str
    overlaps: frozenset[str] = field(default_factory=frozenset)
    tp_chunks: int = 4
    fetch_chunks: int = 8  # a KV fetch shares HBM with the compute it overlaps in this many pieces

    def with_overlap(self, extra: str) -> "OverlapPolicy":
        return replace(self, overlaps=self.overlaps | {extra})

    def stream_for(self, op: Op) -> str:
        if op.kind == COMM and op.name.startswith(DP):
            if op.name.startswith(ZERO_GATHER) and "zero_prefetch" in self.overlaps:
                return PREFETCH
            return DP_STREAM if op.name.startswith(DP_GRAD) and "dp_grad" in self.overlaps else MAIN
        if op.kind == KV_FETCH and "kv_fetch" in self.overlaps:
            return COPY
        if op.kind == COMM and op.collective == "send_recv" and "pp_comm" in self.overlaps:
            return COMM_STREAM
        if op.kind == COMM and op.collective != "send_recv" and "tp_comm" in self.overlaps:
            return COMM_STREAM
        if "tp_bwd" in self.overlaps and is_tp_grad_scatter(op):
            return COMM_STREAM
        return MAIN

    def chunks_for(self, op: Op) -> int:
        """How many pieces a TP collective (and the op consuming it) is cut into."""
        if op.kind == COMM and op.collective != "send_recv" and "tp_comm" in self.overlaps and not op.name.startswith(DP):
            return self.tp_chunks
        if "tp_bwd" in self.overlaps and is_tp_grad_scatter(op):
            return self.tp_chunks
        return 1


_REGISTRY: Registry[OverlapPolicy] = Registry("overlap policy", __name__)


def register(policy: OverlapPolicy) -> OverlapPolicy:
    bad = set(policy.overlaps) - set(OVERLAPS)
    if bad:
        raise ValueError(f"policy {policy.name}: unknown overlaps {sorted(bad)}; known: {OVERLAPS}")
    return _REGISTRY.register(policy.name, policy)


def policy_names() -> list[str]:
    return _REGISTRY.names()


def get_policy(name: str) -> OverlapPolicy:
    return _REGISTRY.get(name)
