"""Overlap policy 'zero_prefetch': ZeRO 3 gathers the next layer's weights while this layer computes."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(OverlapPolicy(
    "zero_prefetch", "ZeRO-3 weight all-gathers run one layer ahead on their own stream (FSDP prefetch).",
    frozenset({"zero_prefetch"})))
