"""LFU: evict the cached block with the fewest prefix hits (since it was computed); ties LRU.

Blocks without a hash are reused first (they evict nothing). A block's hit count is kept while it
is cached (held or free) and forgotten when its hash is evicted.
"""

from __future__ import annotations

from simcore.serving.cache_policies import register
from simcore.serving.cache_policies._heap import ScoredHeap


@register
class LFU(ScoredHeap):
    name = "lfu"
    description = "least frequently hit first, ties least recently used"

    def __init__(self, ctx=None):
        super().__init__()

    def score(self, key) -> float:
        return self.hits.get(key, 0)
