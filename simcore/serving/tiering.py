"""The replica's moves that involve the host KV tier: host hits, write-through, swap (docs/serving.md).

A mixin of Replica, kept apart so the replica without a tier runs exactly its old code. Host
hits (after the HBM prefix hits) and swap-ins allocate their HBM blocks at once and put the
transfer on the host link; with `host_tier.load: async` the request leaves the waiting queue
until the transfer ends (it holds its blocks, computes nothing, and returns to the front of the
queue at the first admission at or after that time), with `blocking` the step that starts the
transfer waits for it (the transfer time is added to that iteration). With
`host_tier.prefetch: on_arrival` the load of a request's host hits may start when it arrives
(`prefetch_host`): it holds its blocks while it waits in the queue until the load ends, then they
become HBM cache hits; a request that reaches the head of the queue with its load still on the
link waits for it as an admission load does.
"""

from __future__ import annotations


class TierMoves:
    def init_tier(self, tier, prefetch=None) -> None:
        self.tier = tier
        self.all_keys = tier is not None and tier.caching
        self.swap = tier is not None and self.cfg.preemption == "swap"
        self.blocking = self.cfg.host_tier.load == "blocking"
        self.loading: dict[int, float] = {}  # request -> when its transfer to HBM ends
        self.load_keys: dict[int, tuple] = {}  # request loading host hits -> (its keys, blocks it holds)
        self.loaded: set = set()  # loaded requests back in the queue: not looked up (nor counted) again
        self.swapped: dict[int, tuple] = {}  # swapped-out request -> (cached, to_prefill, output so far, last token, blocks)
        self.swapped_in: set = set()  # swapped requests whose blocks are back in HBM
        self.resume_dec: list = []  # resumed decoding slots, to start decoding after this step's booking
        self.stall = 0.0  # blocking transfer time added to the current step
        self.swaps = 0
        self.prefetching: dict[int, float] = {}  # queued request whose host hits are loading -> load end
        self.prefetched: dict[int, tuple] = {}  # request -> (first, end) blocks it loaded on arrival
        self.on_arrive = prefetch.arrive if prefetch is not None and tier is not None and tier.caching else None

    def _stall(self, end: float) -> None:
        d = end - self.clock
        if d > self.stall:
            self.stall = d

    def _finish_loads(self) -> None:
        now = self.clock
        done = sorted((t, r) for r, t in self.loading.items() if t <= now)
        pool = self.pool
        for _, r in reversed(done):  # the earliest ends up first in the queue
            del self.loading[r]
            if r in self.swapped:
                self.swapped_in.add(r)
            else:
                keys, nb = self.load_keys.pop(r)
                pool.publish(r, keys, nb)
                pool.release(r, nb)  # now HBM cache hits; looked up again (uncounted) at admission
                if r not in self.prefetched:  # a prefetched request has not had its counted lookup yet
                    self.loaded.add(r)
            self.waiting.appendleft(r)

    def next_ready(self) -> float:
        if self.prefetching:
            return min(min(self.loading.values(), default=float("inf")), min(self.prefetching.values()))
        return min(self.loading.values())

    def prefetch_host(self, r: int, now: float) -> None:
        """prefetch on_arrival: start loading the host hits of the arrived request `r` (queued) past its HBM
        hits, when HBM has the free blocks (less the watermark) to hold them; otherwise nothing happens
        now and admission loads them (on_admit). The request holds its HBM hits and the loading blocks
        until the load ends."""
        tier, pool, bs = self.tier, self.pool, self.bs
        total = int(self.reqs.prompt[r])
        keys = self.hashes(r, total)
        refs, limit = pool.refs, (total - 1) // bs
        hit = idle = 0  # HBM hits, counted without taking them (that would reorder the HBM cache policy)
        while hit < limit and keys[hit] in refs:
            idle += not refs[keys[hit]]  # a free cached block: taking it leaves one block less free
            hit += 1
        h2 = tier.lookup(keys[hit:limit], now, touch=False)
        if not h2 or pool.free - idle - h2 < self.cfg.watermark * pool.capacity:
            return
        if pool.lookup(r, keys, total, count=False) != hit:
            raise AssertionError("prefetch: HBM hits changed between peek and take")
        tier.lookup(keys[hit:hit + h2], now)
        tier.hit_tokens += h2 * bs
        pool.allocate(r, h2)
        self.prefetching[r] = tier.load(h2, now)
        self.load_keys[r] = (keys, hit + h2)
        self.prefetched[r] = (hit, hit + h2)

    def _finish_prefetches(self) -> None:
        """Prefetches whose load has ended: their blocks become HBM cache hits; the requests stay where they are."""
        now = self.clock
        pool = self.pool
        for r in [r for r, t in self.prefetching.items() if t <= now]:
            del self.prefetching[r]
            keys, nb = self.load_keys.pop(r)
            pool.publish(r, keys, nb)
            pool.release(r, nb)

    def drop_prefetch(self, r: int) -> None:
        """A queued request is dropped: give back the blocks of a prefetch still on the link."""
        self.prefetched.pop(r, None)
        if self.prefetching.pop(r, None) is not None:
            self.pool.release(r, self.load_keys.pop(r)[1])

    def admit_tiered(self, budget: int, chunks: list, whole: bool = False) -> int:
        """Replica.admit with host hits and swap-ins."""
        if self.prefetching:
            self._finish_prefetches()
        if self.loading:
            self._finish_loads()
        if not self.waiting or budget <= 0 or not self.free_slots:
            return budget
        chunked = self.cfg.chunked_prefill and not whole
        reserve = self.cfg.watermark * self.pool.capacity
        pool, bs, tier = self.pool, self.bs, self.tier
        while self.waiting and budget > 0 and self.free_slots:
            r = self.waiting[0]
            if r in self.swapped:
                if r not in self.swapped_in:
                    nb = self.swapped[r][4]
                    if pool.free - nb < reserve:
                        break
                    self.waiting.popleft()
                    pool.allocate(r, nb)
                    end = tier.swap_in(nb, self.clock)
                    if not self.blocking:
                        self.loading[r] = end
                        continue
                    self._stall(end)
                else:
                    self.waiting.popleft()
                budget = self._resume(r, budget, chunks)
                continue
            if r in self.prefetching:  # its prefetch is still on the link: wait for it as for an admission load
                self.waiting.popleft()
                self.loading[r] = self.prefetching.pop(r)
                continue
            done, last = self.gen_saved.get(r, (0, 0.0))
            total = int(self.reqs.prompt[r]) + done
            keys = self.hashes(r, total) if pool.caching else []
            first = r not in self.loaded
            hit = pool.lookup(r, keys, total, count=first) if pool.caching else 0
            if first and self.prefetched:
                pf = self.prefetched.get(r)
                if pf is not None and hit > pf[0]:  # blocks loaded from host count as host hits only
                    pool.hit_tokens -= (min(hit, pf[1]) - pf[0]) * bs
            h2 = tier.lookup(keys[hit:(total - 1) // bs], self.clock, touch=False) if first and tier.caching else 0
            if h2:
                if pool.free - h2 < reserve:
                    if hit:
                        pool.release(r, hit)
                    break
                tier.lookup(keys[hit:hit + h2], self.clock)
                tier.hit_tokens += h2 * bs
                pool.allocate(r, h2)
                end = tier.load(h2, self.clock)
                if not self.blocking:
                    self.waiting.popleft()
                    self.loading[r] = end
                    self.load_keys[r] = (keys, hit + h2)
                    continue
                self._stall(end)
                hit += h2
                pool.publish(r, keys, hit)
            cached = hit * bs
            n = min(total - cached, budget) if chunked else total - cached
            need = -(-(cached + n) // bs) - hit
            if n > budget or pool.free - need < reserve:
                if hit:
                    pool.release(r, hit)
                break
            self.loaded.discard(r)
            if self.prefetched:
                self.prefetched.pop(r, None)
            self.waiting.popleft()
            s = self._seat(r, cached, total, done, hit, last)
            self.slots.written[s] = 0
            self.prefilling[s] = None
            pool.allocate(r, need)
            self.slots.blocks[s] += need
            chunks.append((s, n))
            budget -= n
        return budget

    def _resume(self, r: int, budget: int, chunks: list) -> int:
        """A swapped-in request takes a slot again with its KV and output as they were."""
        cached, to_prefill, done, last, nb = self.swapped.pop(r)
        self.swapped_in.discard(r)
        s = self._seat(r, cached, to_prefill, done, nb, last)
        self.slots.written[s] = min(cached, to_prefill) // self.bs
        if cached < to_prefill:
            self.prefilling[s] = None
            n = min(to_prefill - cached, budget)
            if n > 0 and self._grow(s, n):
                chunks.append((s, n))
                budget -= n
        else:
            self.resume_dec.append((s, last))
        return budget

    def flush_resumes(self) -> None:
        for s, last in self.resume_dec:
            self._start_decoding(s, now=last)
        self.resume_dec = []

    def swap_out(self, s: int) -> bool:
        """Preemption by swap: the slot's blocks go to host over the link (the step waits for the copy
        before it reuses them); False when the host tier has no room (then it is recomputed)."""
        nb = self.slots.blocks[s]
        end = self.tier.swap_out(nb, self.clock)
        if end is None:
            return False
        r = self.slots.request[s]
        done, last = self.progress(s)
        state = (self.context(s), self.slots.to_prefill[s], done, float(last), nb)
        self._release(s)
        self._stall(end)
        self.swapped[r] = state
        self.waiting.appendleft(r)
        self.metrics.preemptions += 1
        self.swaps += 1
        self.preempted_now = True
        return True

    def write_through(self, chunks: list, now: float, keys: dict) -> None:
        """Full prompt blocks computed in this step are written to host (async: the step does not wait).
        keys: slot -> its block hashes, as published this step (a chunk never passes the prompt)."""
        bs, cached, to_prefill, written = self.bs, self.slots.cached, self.slots.to_prefill, self.slots.written
        for s, _ in chunks:
            full = min(cached[s], to_prefill[s]) // bs
            w = written[s]
            if full > w:
                self.tier.store(keys[s][w:full], now)
                written[s] = full
