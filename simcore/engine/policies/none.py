"""Overlap policy 'none': Nothing overlaps; every op of a rank runs in order on one stream."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(OverlapPolicy("none", "Nothing overlaps; every op of a rank runs in order on one stream.", frozenset()))
