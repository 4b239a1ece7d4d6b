"""KV retention policies for long decode: which cached tokens attention keeps reading. One per file.

A policy keeps at most `retained(cfg)` tokens per sequence and layer (None: all of them); the
experiment resolves that cap into the model's attention window (simcore/config/kv_retention.py),
so kv_cache_fetch bytes, attention work and KV memory all shrink through the one window path in
ops/kv.py, and the policy adds the ops of its own bookkeeping (`bookkeeping`). A new policy is a
new module here with a class (`name`, `description`, `retained`, `bookkeeping`) that calls `register`.
"""

from __future__ import annotations

from simcore.registry import Registry

REGISTRY: Registry = Registry("KV retention policy", __name__)
register = REGISTRY.register


def get_retention(name: str):
    return REGISTRY.get(name, "inference.kv_retention.policy")
