"""Cost-aware: evict the cached block whose expected recompute cost per byte is smallest.

score(block j) = (1 + hits) x F(j) / B, where B is the block's KV bytes and F(j) the prefill
FLOPs to recompute block j given the j x block_size tokens before it:

    F(j) = sum over its tokens t = j*bs .. j*bs + bs - 1 of (2 x active params + 4 x layers x heads x head_dim x (t + 1))

(the linear layers, plus QK^T and PV over the t + 1 causal keys). A block deep in a long prefix
costs more to recompute than one near the start; `hits` (prefix hits since it was computed)
weights it by how often it saved that work. Ties LRU; blocks without a hash are reused first.
Limitation: the score is the block's own cost, not its chain's; evicting a shallow block makes
the deeper blocks of its prefix unreachable until they are evicted in turn.
"""

from __future__ import annotations

from simcore.serving.cache_policies import register
from simcore.serving.cache_policies._heap import ScoredHeap


@register
class CostAware(ScoredHeap):
    name = "cost_aware"
    description = "smallest (1 + hits) x recompute FLOPs per byte first, ties least recently used"

    def __init__(self, ctx=None):
        super().__init__()
        from simcore.serving.cache_policies import CacheContext

        self.ctx = ctx or CacheContext()

    def score(self, key) -> float:
        return (1 + self.hits.get(key, 0)) * self.ctx.block_flops(key[2]) / self.ctx.block_bytes
