"""One engine replica: running sequences in slots, a waiting queue, a block pool, a clock.

`step()` is one engine iteration: the scheduler policy picks decodes and prefill chunks
through the moves below, the iteration is priced, then tokens, blocks and finishes are booked.
Requests are plain indices into the workload's arrays.

Decoding sequences are booked incrementally, so a step costs O(1) plus the events in it rather
than O(running sequences). A sequence past its prefill ("decoding", in `dec`) gets exactly one
token in every decode step (`decode_all` takes them all), so its context and output count are
its values on entry plus the decode steps since (`dsteps - ek`); the decode step at which it
next starts a KV block (its context a multiple of block_size) and the one at which it finishes
are known on entry and kept in two calendars keyed by decode step. The running sum of the
decoding contexts gives their mean. Results are exactly those of booking every slot every step.
"""

from __future__ import annotations

from collections import deque

from simcore.serving.blocks import BlockPool
from simcore.serving.tiering import TierMoves


class Replica(TierMoves):
    def __init__(self, idx: int, cfg, blocks: int, cost, scheduler, reqs, metrics, policy=None, tier=None,
                 prefetch=None):
        self.idx, self.cfg, self.cost, self.scheduler = idx, cfg, cost, scheduler
        self.spans = None  # a SpanLog when the run is traced
        self.reqs, self.metrics = reqs, metrics
        self.bs = cfg.block_size
        self.pool = BlockPool(blocks, cfg.block_size, cfg.prefix_caching, policy)
        n = cfg.max_num_seqs
        # per slot; for a decoding slot ctx, gen and last are their values when it started decoding
        self.req = [-1] * n
        self.ctx = [0] * n  # tokens whose K/V are in the cache
        self.plen = [0] * n  # tokens to prefill (prompt, plus output so far after a preemption)
        self.gen = [0] * n  # output tokens produced
        self.out = [0] * n
        self.blocks = [0] * n
        self.order = [-1] * n  # admission sequence (-1: free slot): the newest is preempted first
        self.last = [0.0] * n  # time of the last token
        self.ek = [0] * n  # decoding slot: decode steps done when it started decoding
        self.kf = [0] * n  # decoding slot: the decode step after which it has all its output
        self.free_slots = list(range(n - 1, -1, -1))
        self.running_order: dict[int, None] = {}  # running slots, oldest admission first
        self.prefilling: dict[int, None] = {}  # slots still in their prefill, oldest admission first
        self.dec: dict[int, None] = {}  # slots past their prefill
        self.fresh: list[int] = []  # slots that started decoding since the last decode step
        self.dsteps = 0  # decode steps done
        self.t_dec = 0.0  # time of the last decode step
        self.doff = 0  # sum over decoding slots of ctx - ek: their contexts sum to doff + len(dec) * dsteps
        self.bnd: dict[int, list] = {}  # decode step -> (slot, order) that start a new block in it
        self.fin: dict[int, list] = {}  # decode step -> (slot, order) whose last token it makes
        self.gen_saved: dict[int, tuple[int, float]] = {}  # preempted request -> (output so far, last token time)
        self.waiting: deque[int] = deque()
        self.clock = 0.0
        self.admitted = 0
        self.preempted_now = False
        self.outstanding = 0  # tokens still to process, for the least-outstanding router
        self.iterations = 0
        self.prefill_only = False  # disaggregated prefill replica: hand requests off after their first token
        self.handed: list[int] = []  # requests handed off in the last step (simcore/serving/disagg.py)
        self.init_tier(tier, n, prefetch)

    @property
    def running(self) -> int:
        return self.cfg.max_num_seqs - len(self.free_slots)

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or bool(self.running_order) or bool(self.loading)

    def enqueue(self, r: int, now: float | None = None) -> None:
        """Request `r` arrives (at `now`: the arrival time); the prefetch policy may start its host loads."""
        self.waiting.append(r)
        self.outstanding += int(self.reqs.prompt[r] + self.reqs.output[r])
        if self.on_arrive is not None:
            self.on_arrive(self, r, self.clock if now is None else now)

    def newest(self) -> int:
        """The running slot admitted last."""
        return next(reversed(self.running_order))

    def running_requests(self) -> list[int]:
        """Requests in the slots, in slot order."""
        return [self.req[s] for s in sorted(self.running_order)]

    def _ctx(self, s: int) -> int:
        return self.ctx[s] + self.dsteps - self.ek[s] if s in self.dec else self.ctx[s]

    # -- moves a scheduler combines ------------------------------------------------------
    def no_decodes(self) -> tuple:
        return ()

    def decode_all(self):
        """Every sequence past its prefill gets its next token; the newest are preempted when blocks run out.
        Returns the decoding slots (a live view: the step only takes its length)."""
        k = self.dsteps
        order = self.order
        pool = self.pool
        due = self.bnd.pop(k, None)
        while True:
            if due:
                due = [(s, o) for s, o in due if order[s] == o]  # drop slots released since
            short = (len(due) if due else 0) - pool.free
            if short <= 0 or not self.dec:
                break
            self.preempt(self.newest())
        if due:
            due.sort()
            req, blocks, kf = self.req, self.blocks, self.kf
            pool.allocate_each([req[s] for s, _ in due], 1)
            nxt = k + self.bs
            later = []
            for e in due:
                s = e[0]
                blocks[s] += 1
                if nxt <= kf[s]:
                    later.append(e)
            if later:
                more = self.bnd.get(nxt)
                if more is None:
                    self.bnd[nxt] = later
                else:
                    more.extend(later)
        return self.dec.keys()

    def continue_prefills(self, budget: int) -> tuple[list, int]:
        chunks = []
        plen, ctx = self.plen, self.ctx
        for s in self.prefilling:
            if budget <= 0:
                break
            n = min(plen[s] - ctx[s], budget)
            if not self._grow(s, n):
                break
            chunks.append((s, n))
            budget -= n
        return chunks, budget

    def admit(self, budget: int, chunks: list, whole: bool = False, reserve: float | None = None,
              whole_output: bool = False) -> int:
        """Waiting requests in order while the budget, max_num_seqs and free blocks allow.
        reserve: blocks to keep free (default: the watermark); whole_output: a request needs the blocks of
        its whole prompt + output free (and they stay reserved for it), as TensorRT-LLM's no-evict policy."""
        if self.tier is not None:
            return self.admit_tiered(budget, chunks, whole)
        if not self.waiting or budget <= 0 or not self.free_slots:
            return budget
        chunked = self.cfg.chunked_prefill and not whole
        if reserve is None:
            reserve = self.cfg.watermark * self.pool.capacity
        pool, bs = self.pool, self.bs
        while self.waiting and budget > 0 and self.free_slots:
            r = self.waiting[0]
            done, last = self.gen_saved.get(r, (0, 0.0))
            total = int(self.reqs.prompt[r]) + done
            hit = pool.lookup(r, self.hashes(r, total), total) if pool.caching else 0
            cached = hit * bs
            n = min(total - cached, budget) if chunked else total - cached
            need = -(-(cached + n) // bs) - hit
            later = -(-(int(self.reqs.prompt[r]) + int(self.reqs.output[r])) // bs) - hit - need if whole_output else 0
            if n > budget or pool.free - need - later < reserve:
                if hit:
                    pool.release(r, hit)  # give the cache hits back; retried next step
                break
            reserve += later
            self.waiting.popleft()
            s = self._seat(r, cached, total, done, hit, last)
            self.prefilling[s] = None
            pool.allocate(r, need)
            self.blocks[s] += need
            chunks.append((s, n))
            budget -= n
        return budget

    def remaining_output(self) -> int:
        """Output tokens the running requests have still to produce."""
        return sum(self.out[s] - self.progress(s)[0] for s in self.running_order)

    def future_blocks(self) -> int:
        """KV blocks the running requests will still take before they finish (prompt + output)."""
        q, bs = self.reqs, self.bs
        return sum(max(0, -(-(int(q.prompt[self.req[s]]) + self.out[s]) // bs) - self.blocks[s])
                   for s in self.running_order)

    def _seat(self, r: int, ctx: int, plen: int, gen: int, blocks: int, last: float) -> int:
        """Give request r a running slot: `ctx` of its `plen` prompt tokens cached, `gen` tokens emitted,
        holding `blocks` blocks, its last token at `last`. Returns the slot."""
        s = self.free_slots.pop()
        self.req[s], self.ctx[s], self.plen[s], self.gen[s] = r, ctx, plen, gen
        self.out[s], self.blocks[s], self.order[s] = int(self.reqs.output[r]), blocks, self.admitted
        self.last[s] = last
        self.admitted += 1
        self.running_order[s] = None
        return s

    def _grow(self, s: int, n: int) -> bool:
        need = -(-(self.ctx[s] + n) // self.bs) - self.blocks[s]
        if need > self.pool.free:
            return False
        self.pool.allocate(self.req[s], need)
        self.blocks[s] += need
        return True

    def preempt(self, s: int) -> None:
        """Preemption by recompute: free the blocks, requeue at the front, keep the output so far.
        (With preemption: swap, the blocks go to host instead, when they fit: TierMoves.swap_out.)"""
        if self.swap and self.swap_out(s):
            return
        r = self.req[s]
        done, last = self.progress(s)
        self._release(s)
        self.gen_saved[r] = (done, float(last))
        self.waiting.appendleft(r)
        self.metrics.preemptions += 1
        self.preempted_now = True

    def progress(self, s: int) -> tuple[int, float]:
        """Output tokens the slot has produced, and the time of its last one."""
        if s in self.dec:
            return self.gen[s] + self.dsteps - self.ek[s], (self.t_dec if self.ek[s] < self.dsteps else self.last[s])
        return self.gen[s], self.last[s]

    def _release(self, s: int) -> None:
        r = self.req[s]
        if self.pool.caching:
            c = self._ctx(s)
            self.pool.publish(r, self.hashes(r, c), c // self.bs)
        self.pool.release(r, self.blocks[s])
        if s in self.dec:
            del self.dec[s]
            self.doff -= self.ctx[s] - self.ek[s]
        else:
            self.prefilling.pop(s, None)
        del self.running_order[s]
        self.req[s] = -1
        self.order[s] = -1
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
        if self.all_keys:  # with a host tier every full block has a hash, as in vLLM (the request's own)
            out += [("u", r, j) for j in range(len(out), full)]
        return out

    def _start_decoding(self, s: int, now: float) -> None:
        """Slot s ended its prefill at `now` (its last token) and has output still to produce."""
        k = self.dsteps
        c = self.ctx[s]
        self.ek[s] = k
        self.last[s] = now
        self.dec[s] = None
        self.doff += c - k
        self.fresh.append(s)
        o = self.order[s]
        kf = self.kf[s] = k + self.out[s] - self.gen[s] - 1  # its last token comes from decode step kf
        kb = k + (-c) % self.bs  # ctx is a multiple of block_size: that decode step opens a block
        if kb <= kf:
            self.bnd.setdefault(kb, []).append((s, o))
        self.fin.setdefault(kf, []).append((s, o))

    # -- one iteration -------------------------------------------------------------------
    def step(self) -> list[int] | None:
        """Run one iteration from self.clock; returns the requests that finished (None: nothing could run)."""
        self.preempted_now = False
        dec, chunks = self.scheduler.schedule(self)
        nd = len(dec)
        if not nd and not chunks:
            if self.resume_dec:  # a swapped-in decode resumed: it runs next step
                self.flush_resumes()
                return []
            return None
        ctx = self.ctx
        if chunks:
            pre_tok = 0
            past = 0
            for s, n in chunks:
                pre_tok += n
                past += ctx[s]
            pre_past = past / len(chunks)
        else:
            pre_tok = 0
            pre_past = 0.0
        k = self.dsteps
        dec_past = (self.doff + nd * k) / nd if nd else 0.0
        start = self.clock
        now = self.clock = start + self.cost.time(nd, dec_past, len(chunks), pre_tok, pre_past)
        if self.spans is not None:
            self.spans.iteration(self.idx, start, now, nd, len(chunks), pre_tok)
        if self.stall:  # blocking host-link transfers (loads, swaps) of this step
            now = self.clock = now + self.stall
            self.stall = 0.0
        self.iterations += 1
        m = self.metrics
        if m.series is not None:
            m.sample(self, now, nd + len(chunks))
        ends: list = []
        emit_ends: list = []
        if chunks:
            plen, gen, last, req = self.plen, self.gen, self.last, self.req
            for s, n in chunks:
                c = ctx[s] = ctx[s] + n
                if c >= plen[s]:
                    ends.append(s)
            for s in ends:
                if gen[s] == 0:
                    m.first_token[req[s]] = now
                    gen[s] = 1
                    last[s] = now
                else:  # a preempted request finished its re-prefill: it emits its next token
                    emit_ends.append(s)
            if self.pool.caching:
                keys = {s: self.hashes(req[s], ctx[s]) for s, _ in chunks}
                for s, _ in chunks:
                    self.pool.publish(req[s], keys[s], ctx[s] // self.bs)
                if self.all_keys:
                    self.write_through(chunks, now, keys)
        if nd:
            g = now - self.t_dec  # the gap of every slot that was decoded in the last decode step
            uniform = not emit_ends
            if uniform and self.fresh:  # slots that started decoding since: their own last token
                last, dset = self.last, self.dec
                fresh = {s for s in self.fresh if s in dset}
                if len(fresh) == nd:
                    g = now - last[next(iter(fresh))]
                for s in fresh:
                    if now - last[s] != g:
                        uniform = False
                        break
            if uniform:
                m.itl_run(g, nd)
            else:
                last, ek, told = self.last, self.ek, self.t_dec
                gaps = [now - (told if ek[s] < k else last[s]) for s in sorted(self.dec)]
                gaps += [now - self.last[s] for s in emit_ends]
                m.itl_list(gaps)
            self.fresh = []
            self.dsteps = k + 1
            self.t_dec = now
        elif emit_ends:
            m.itl_list([now - self.last[s] for s in emit_ends])
        for s in emit_ends:
            self.gen[s] += 1
            self.last[s] = now
        self.outstanding -= pre_tok + nd + len(emit_ends)
        done = []
        if nd:
            due = self.fin.pop(k, None)
            if due:
                order = self.order
                done = [s for s, o in due if order[s] == o]
        if ends:
            gen, out = self.gen, self.out
            for s in ends:
                del self.prefilling[s]
                if gen[s] >= out[s]:
                    done.append(s)
                elif self.prefill_only:
                    self.handed.append(s)
                else:
                    self._start_decoding(s, now)
        if self.resume_dec:
            self.flush_resumes()
        if not done:
            return []
        done.sort()
        req = self.req
        finished = [req[s] for s in done]
        for s in done:
            self._release(s)
        for r in finished:
            self.gen_saved.pop(r, None)
        return finished
