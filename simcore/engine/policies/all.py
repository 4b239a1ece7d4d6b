"""Overlap policy 'all': every overlap simcore models (kv_fetch, tp_comm, tp_bwd, pp_comm, dp_grad, zero_prefetch) at once."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(
    OverlapPolicy("all", "Every overlap simcore models at once.", frozenset({"kv_fetch", "tp_comm", "tp_bwd", "pp_comm", "dp_grad", "zero_prefetch"}))
)
