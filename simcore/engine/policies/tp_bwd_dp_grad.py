"""Overlap policy 'tp_bwd_dp_grad': only the gradient reduce-scatters (TE's async dgrad one, the DP buckets) overlap."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(OverlapPolicy(
    "tp_bwd_dp_grad",
    "Megatron-core without userbuffers and without overlap_p2p_comm: only Transformer Engine's backward "
    "reduce-scatter of a data gradient (tp_bwd) and the data-parallel gradient buckets (dp_grad) overlap; "
    "TP collectives and pipeline sends block the compute stream.",
    frozenset({"tp_bwd", "dp_grad"})))
