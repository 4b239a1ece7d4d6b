"""Overlap policy 'tp_comm': Tensor-parallel collectives are chunked and overlapped with the op that consumes them."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(OverlapPolicy("tp_comm", "Tensor-parallel collectives are chunked and overlapped with the op that consumes them.", frozenset({"tp_comm"})))
