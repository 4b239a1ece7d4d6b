"""LRU, vLLM v1's free queue: blocks are reused in the order they became evictable (oldest first).

In HBM this is exactly vLLM v1's BlockPool free queue: never-used blocks first (the pool keeps
those apart), then freed blocks in the order they were freed (a request's blocks tail first),
hashed or not; a cached block's hash is evicted when an allocation pops it.
"""

from __future__ import annotations

from collections import OrderedDict

from simcore.serving.cache_policies import register


@register
class LRU:
    name = "lru"
    description = "least recently used first (vLLM v1's free queue)"

    def __init__(self, ctx=None):
        self.q: OrderedDict = OrderedDict()

    def push(self, key) -> None:
        self.q[key] = None

    def remove(self, key) -> None:
        del self.q[key]

    def pop(self):
        return self.q.popitem(last=False)[0]

    def hit(self, key) -> None:
        pass

    def __len__(self) -> int:
        return len(self.q)

