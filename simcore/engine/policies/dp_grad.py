"""Overlap policy 'dp_grad': data-parallel gradient buckets are reduced while backward goes on."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(OverlapPolicy(
    "dp_grad", "Data-parallel gradient buckets are reduced on their own stream while backward goes on.",
    frozenset({"dp_grad"})))
