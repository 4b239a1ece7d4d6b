"""Prefetch policies of the host KV tier: when host-cache hits start loading into HBM. One file each here.

A policy is a class with `name`, `description` and `arrive(replica, request, now)`, called when a
request arrives at a replica whose host tier caches blocks (docs/serving.md, host tier section);
the admission path itself (TierMoves.admit_tiered) loads whatever is not yet in HBM either way.
The module calls `register(Cls)`.
"""

from __future__ import annotations

from simcore.registry import Registry

_REGISTRY: Registry[type] = Registry("prefetch policy (field 'serving.host_tier.prefetch')", __name__)


def register(cls: type) -> type:
    return _REGISTRY.register(cls.name, cls)


def prefetch_policy_names() -> list[str]:
    return _REGISTRY.names()


def get_prefetch_policy(name: str):
    """The policy class; an unknown name is a SimcoreError listing the registered ones."""
    return _REGISTRY.get(name)
