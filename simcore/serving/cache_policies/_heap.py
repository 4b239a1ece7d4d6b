"""A min-heap of evictable blocks under a score, lazily deleted; ties go to the least recently pushed."""

from __future__ import annotations

import heapq
import itertools


class ScoredHeap:
    """Blocks without a hash (int keys) evict nothing, so they come first; then the smallest `score(key)`."""

    def __init__(self):
        self.heap: list = []
        self.live: dict = {}  # key -> the sequence number of its live heap entry
        self.seq = itertools.count()
        self.hits: dict = {}  # key -> prefix hits since it was (re)computed

    def score(self, key) -> float:
        raise NotImplementedError

    def push(self, key) -> None:
        n = next(self.seq)
        self.live[key] = n
        s = (0, 0.0) if isinstance(key, int) else (1, self.score(key))
        heapq.heappush(self.heap, (s, n, key))

    def remove(self, key) -> None:
        del self.live[key]

    def pop(self):
        heap, live = self.heap, self.live
        while True:
            _, n, key = heapq.heappop(heap)
            if live.get(key) == n:
                del live[key]
                self.hits.pop(key, None)  # evicted: a recomputed block starts again
                return key

    def hit(self, key) -> None:
        self.hits[key] = self.hits.get(key, 0) + 1

    def __len__(self) -> int:
        return len(self.live)

