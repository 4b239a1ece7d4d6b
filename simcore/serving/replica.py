"""One engine replica: running sequences as slot arrays, a waiting queue, a block pool, a clock.

`step()` is one engine iteration: the scheduler policy picks decodes and prefill chunks
through the moves below, the iteration is priced, then tokens, blocks and finishes are booked
with numpy over the slots. Requests are plain indices into the workload's arrays.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from simcore.serving.blocks import BlockPool


class Replica:
    def __init__(self, idx: int, cfg, blocks: int, cost, scheduler, reqs, metrics):
        self.idx, self.cfg, self.cost, self.scheduler = idx, cfg, cost, scheduler
        self.reqs, self.metrics = reqs, metrics
        self.bs = cfg.block_size
        self.pool = BlockPool(blocks, cfg.block_size, cfg.prefix_caching)
        n = cfg.max_num_seqs
        self.req = np.full(n, -1, dtype=np.int64)
        self.ctx = np.zeros(n, dtype=np.int64)  # tokens whose K/V are in the cache
        self.plen = np.zeros(n, dtype=np.int64)  # tokens to prefill (prompt, plus output so far after a preemption)
        self.gen = np.zeros(n, dtype=np.int64)  # output tokens produced
        self.out = np.zeros(n, dtype=np.int64)
        self.blocks = np.zeros(n, dtype=np.int64)
        self.order = np.zeros(n, dtype=np.int64)  # admission sequence: the newest is preempted first
        self.last = np.zeros(n)  # time of the last token
        self.free_slots = list(range(n - 1, -1, -1))
        self.gen_saved: dict[int, tuple[int, float]] = {}  # preempted request -> (output so far, last token time)
        self.waiting: deque[int] = deque()
        self.clock = 0.0
        self.admitted = 0
        self.preempted_now = False
        self.outstanding = 0  # tokens still to process, for the least-outstanding router
        self.iterations = 0

    @property
    def running(self) -> int:
        return self.cfg.max_num_seqs - len(self.free_slots)

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or self.running > 0

    def enqueue(self, r: int) -> None:
        self.waiting.append(r)
        self.outstanding += int(self.reqs.prompt[r] + self.reqs.output[r])

    # -- moves a scheduler combines ------------------------------------------------------
    def no_decodes(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def decode_all(self) -> np.ndarray:
        """Every sequence past its prefill gets its next token; the newest are preempted when blocks run out."""
        while True:
            live = np.flatnonzero((self.req >= 0) & (self.ctx >= self.plen))
            need = (self.ctx[live] + self.bs) // self.bs - self.blocks[live]  # ceil((ctx + 1) / bs) - held
            short = int(need.sum()) - self.pool.free
            if short <= 0 or not len(live):
                break
            self.preempt(int(np.flatnonzero(self.req >= 0)[np.argmax(self.order[self.req >= 0])]))
        for s in live[need > 0]:
            self.pool.allocate(int(self.req[s]), 1)
        self.blocks[live] += need
        return live

    def continue_prefills(self, budget: int) -> tuple[list, int]:
        chunks = []
        part = np.flatnonzero((self.req >= 0) & (self.ctx < self.plen))
        for s in part[np.argsort(self.order[part])]:
            if budget <= 0:
                break
            n = int(min(self.plen[s] - self.ctx[s], budget))
            if not self._grow(int(s), n):
                break
            chunks.append((int(s), n))
            budget -= n
        return chunks, budget

    def admit(self, budget: int, chunks: list, whole: bool = False) -> int:
        """Waiting requests in order while the budget, max_num_seqs and free blocks allow."""
        chunked = self.cfg.chunked_prefill and not whole
        reserve = self.cfg.watermark * self.pool.capacity
        while self.waiting and budget > 0 and self.free_slots:
            r = self.waiting[0]
            done, last = self.gen_saved.get(r, (0, 0.0))
            total = int(self.reqs.prompt[r]) + done
            hit = self.pool.lookup(r, self.hashes(r, total), total) if self.pool.caching else 0
            cached = hit * self.bs
            n = min(total - cached, budget) if chunked else total - cached
            need = -(-(cached + n) // self.bs) - hit
            if n > budget or self.pool.free - need < reserve:
                if hit:
                    self.pool.release(r, hit)  # give the cache hits back; retried next step
                break
            self.waiting.popleft()
            s = self.free_slots.pop()
            self.req[s], self.ctx[s], self.plen[s], self.gen[s] = r, cached, total, done
            self.out[s], self.blocks[s], self.order[s] = self.reqs.output[r], hit, self.admitted
            self.last[s] = last
            self.admitted += 1
            self.pool.allocate(r, need)
            self.blocks[s] += need
            chunks.append((s, n))
            budget -= n
        return budget

    def _grow(self, s: int, n: int) -> bool:
        need = -(-(int(self.ctx[s]) + n) // self.bs) - int(self.blocks[s])
        if need > self.pool.free:
            return False
        self.pool.allocate(int(self.req[s]), need)
        self.blocks[s] += need
        return True

    def preempt(self, s: int) -> None:
        """Preemption by recompute: free the blocks, requeue at the front, keep the output so far."""
        r = int(self.req[s])
        self._release(s)
        self.gen_saved[r] = (int(self.gen[s]), float(self.last[s]))
        self.waiting.appendleft(r)
        self.metrics.preemptions += 1
        self.preempted_now = True

    def _release(self, s: int) -> None:
        r = int(self.req[s])
        if self.pool.caching:
            self.pool.publish(r, self.hashes(r, int(self.ctx[s])), int(self.ctx[s]) // self.bs)
        self.pool.release(r, int(self.blocks[s]))
        self.req[s] = -1
        self.blocks[s] = 0
        self.free_slots.append(s)

    def hashes(self, r: int, tokens: int) -> list[tuple]:
        """Hashes of the request's full blocks that other requests can share (docs/serving.md)."""
        q = self.reqs
        full = tokens // self.bs
        pre = min(int(q.prefix_len[r]) // self.bs, full)
        out = [("p", int(q.prefix_group[r]), j) for j in range(pre)]
        if q.session[r] >= 0:
            out += [("s", int(q.session[r]), j) for j in range(pre, full)]
        return out

    # -- one iteration -------------------------------------------------------------------
    def step(self) -> list[int] | None:
        """Run one iteration from self.clock; returns the requests that finished (None: nothing could run)."""
        self.preempted_now = False
        dec, chunks = self.scheduler.schedule(self)
        if not len(dec) and not chunks:
            return None
        pre_tok = sum(n for _, n in chunks)
        pre_past = sum(int(self.ctx[s]) for s, _ in chunks) / len(chunks) if chunks else 0.0
        dec_past = float(self.ctx[dec].mean()) if len(dec) else 0.0
        dt = self.cost.time(len(dec), dec_past, len(chunks), pre_tok, pre_past)
        now = self.clock = self.clock + dt
        self.iterations += 1
        m = self.metrics
        m.sample(self, now, len(dec) + len(chunks))
        emit = dec
        if chunks:
            cs = np.fromiter((s for s, _ in chunks), dtype=np.int64, count=len(chunks))
            self.ctx[cs] += np.fromiter((n for _, n in chunks), dtype=np.int64, count=len(chunks))
            ends = cs[self.ctx[cs] >= self.plen[cs]]
            first = ends[self.gen[ends] == 0]
            m.first_token[self.req[first]] = now
            self.gen[first] = 1
            self.last[first] = now
            emit = np.concatenate([dec, ends[self.gen[ends] > 0]]) if len(ends) > len(first) else dec
            if self.pool.caching:
                for s in cs:
                    self.pool.publish(int(self.req[s]), self.hashes(int(self.req[s]), int(self.ctx[s])),
                                      int(self.ctx[s]) // self.bs)
        if len(dec):
            self.ctx[dec] += 1
        if len(emit):
            m.itl(now - self.last[emit])
            self.gen[emit] += 1
            self.last[emit] = now
        self.outstanding -= pre_tok + len(emit)
        done = np.flatnonzero((self.req >= 0) & (self.gen >= self.out))
        finished = [int(self.req[s]) for s in done]
        for s in done:
            self._release(int(s))
        for r in finished:
            self.gen_saved.pop(r, None)
        return finished
