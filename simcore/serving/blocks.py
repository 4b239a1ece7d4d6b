"""Paged KV block pool of one replica, with vLLM v1's prefix cache.

Without prefix caching the pool is a counter (that is all the scheduler needs, and it keeps
the hot loop cheap). With it, the pool mirrors vLLM v1's BlockPool: one free queue holding
never-used blocks first and freed blocks in the order they were freed (a request's blocks
tail-first); a freed block keeps its hash and stays a cache hit until an allocation pops it
from the head of the queue (the LRU eviction); a hit on a free block takes it out of the queue.
Nothing moves cached blocks anywhere on its own. A block's hash is (namespace, index): the
requests that share a system prompt or a session share the hashes of their full blocks.
Which free block an allocation reuses is the cache policy's choice (simcore/serving/cache_policies/;
`lru` is vLLM's free queue); never-used blocks always go first.
"""

from __future__ import annotations

import itertools


class BlockPool:
    def __init__(self, capacity: int, block_size: int, prefix_caching: bool, policy=None):
        self.capacity = capacity
        self.block_size = block_size
        self.free = capacity  # blocks no request holds (cached ones included)
        self.allocated_total = 0  # blocks handed out over the run
        self.freed_total = 0
        self.peak_used = 0
        self.caching = prefix_caching
        if prefix_caching:
            self.fresh = capacity  # never used: at the head of vLLM's free queue
            if policy is None:
                from simcore.serving.cache_policies.lru import LRU

                policy = LRU()
            self.queue = policy  # the evictable (free) blocks, in the cache policy's order
            self.refs: dict = {}  # hash -> requests holding the cached block
            self.held: dict[int, list] = {}  # request -> its blocks' keys (hash tuple or anonymous int)
            self.anon = itertools.count()
            self.hit_tokens = 0
            self.queried_tokens = 0

    @property
    def used(self) -> int:
        return self.capacity - self.free

    def _take(self, n: int) -> None:
        self.free -= n
        self.allocated_total += n
        used = self.capacity - self.free
        if used > self.peak_used:
            self.peak_used = used

    def _give(self, n: int) -> None:
        self.free += n
        self.freed_total += n

    # -- counting pool (the hot path when prefix caching is off) -----------------------
    def allocate(self, req: int, n: int) -> None:
        """Caller checked `free >= n`."""
        self.free -= n
        self.allocated_total += n
        used = self.capacity - self.free
        if used > self.peak_used:
            self.peak_used = used
        if self.caching and n:
            blocks = self.held.setdefault(req, [])
            for _ in range(n):
                if self.fresh:
                    self.fresh -= 1
                else:
                    key = self.queue.pop()
                    if key in self.refs:  # the LRU cached block is evicted as it is reused
                        del self.refs[key]
                blocks.append(next(self.anon))

    def allocate_each(self, reqs: list, n: int) -> None:
        """`allocate(r, n)` for each request of `reqs` in turn; caller checked `free >= n * len(reqs)`.
        Without prefix caching the pool is a counter, so that is one take (the peak is the same)."""
        if self.caching:
            for r in reqs:
                self.allocate(r, n)
            return
        k = n * len(reqs)
        self.free -= k
        self.allocated_total += k
        used = self.capacity - self.free
        if used > self.peak_used:
            self.peak_used = used

    def release(self, req: int, n: int) -> None:
        if not self.caching:
            self._give(n)
            return
        blocks = self.held.pop(req, [])
        for key in reversed(blocks):  # tail blocks are freed first, so they are evicted first
            if isinstance(key, tuple):
                self.refs[key] -= 1
                if self.refs[key]:
                    continue
            self.queue.push(key)
            self._give(1)

    # -- prefix cache ---------------------------------------------------------------------
    def lookup(self, req: int, hashes: list[tuple], prompt: int, count: bool = True) -> int:
        """Blocks of `hashes` (the request's full namespace blocks, in order) already cached; they are
        taken for `req`. At least the prompt's last token is always computed, as in vLLM."""
        if not self.caching:
            return 0
        limit = (prompt - 1) // self.block_size
        hit = 0
        for h in hashes[:limit]:
            if h not in self.refs:
                break
            hit += 1
        blocks = self.held.setdefault(req, [])
        queue = self.queue
        for h in hashes[:hit]:
            queue.hit(h)
            if self.refs[h] == 0:
                queue.remove(h)
                self._take(1)
            self.refs[h] += 1
            blocks.append(h)
        if count:
            self.queried_tokens += prompt
            self.hit_tokens += hit * self.block_size
        return hit

    def publish(self, req: int, hashes: list[tuple], full_blocks: int) -> None:
        """Give the request's first `full_blocks` blocks their hashes once they hold computed tokens."""
        if not self.caching:
            return
        blocks = self.held.get(req, [])
        for i in range(min(full_blocks, len(hashes), len(blocks))):
            key = blocks[i]
            if isinstance(key, tuple):
                continue
            h = hashes[i]
            if h not in self.refs:  # a duplicate computed by a concurrent request stays uncached, as in vLLM
                self.refs[h] = 1
                blocks[i] = h
