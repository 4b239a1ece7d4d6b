"""Overlap policy 'no_userbuffers': every overlap but userbuffers' TP overlap (Transformer Engine's default path)."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(OverlapPolicy(
    "no_userbuffers",
    "Every overlap but userbuffers' TP overlap: TP collectives block the compute stream, except the backward "
    "reduce-scatter of a data gradient, which runs beside the weight-gradient GEMM (tp_bwd).",
    frozenset({"kv_fetch", "tp_bwd", "pp_comm", "dp_grad", "zero_prefetch"})))
