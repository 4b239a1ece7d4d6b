"""Cache (eviction) policies of the prefix cache and the host KV tier. One policy per file here.

A policy orders the evictable blocks of one tier: the HBM pool's free blocks (which keep their
hash, vLLM v1) or the host tier's stored blocks. It is a class with `name`, `description`, built
with a `CacheContext`, offering:

- `push(key)`: the block became evictable (freed in HBM; stored or hit on host);
- `remove(key)`: it is no longer evictable (a prefix hit took it);
- `pop() -> key`: the block to reuse next, evicting its hash;
- `hit(key)`: a prefix hit on the block (frequency-aware policies count it);
- `len(policy)`: evictable blocks.

Keys are hash tuples (namespace, id, block index) or, in HBM, ints for blocks without a hash
(which evict nothing: every policy but `lru` reuses them first). The module calls `register(Cls)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from simcore.registry import Registry

_REGISTRY: Registry[type] = Registry("cache policy (field 'serving.cache_policy')", __name__)


@dataclass(frozen=True)
class CacheContext:
    """What a policy may know about the blocks: the recompute FLOPs of block j (its prefill given
    the j * block_size tokens before it) and the bytes of one block."""

    block_flops: Callable[[int], float] = lambda j: 1.0 + j
    block_bytes: float = 1.0


def register(cls: type) -> type:
    return _REGISTRY.register(cls.name, cls)


def cache_policy_names() -> list[str]:
    return _REGISTRY.names()


def get_cache_policy(name: str, field: str = "serving.cache_policy"):
    """The policy class; an unknown name is a SimcoreError listing the registered ones."""
    return _REGISTRY.get(name, f"cache policy (field '{field}')")
