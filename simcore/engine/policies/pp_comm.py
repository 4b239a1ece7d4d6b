"""Overlap policy 'pp_comm': Pipeline sends run beside compute; a stage starts its next micro-batch while activations travel."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(OverlapPolicy("pp_comm", "Pipeline sends run beside compute; a stage starts its next micro-batch while activations travel.", frozenset({"pp_comm"})))
