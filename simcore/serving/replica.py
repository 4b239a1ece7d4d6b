"""One engine replica: running sequences in slots, a waiting queue, a block pool, a clock.

`step()` is one engine iteration: the scheduler policy picks decodes and prefill chunks
through the moves below, the iteration is priced, then tokens, blocks and finishes are booked.
`coast()` runs the same iterations one after another for as long as each is a plain decode
step and the replica stays the earliest thing to do in the event loop. Requests are plain
indices into the workload's arrays; per-slot state is a structure of arrays (`Slots`).

Decoding sequences are booked incrementally, so a step costs O(1) plus the events in it rather
than O(running sequences). A sequence past its prefill ("decoding", in `decoding`) gets exactly
one token in every decode step (`decode_all` takes them all), so its context and output count
are its values on entry plus the decode steps since (`decode_steps - slots.decode_start`); the
decode step at which it next starts a KV block (its context a multiple of block_size) and the
one at which it finishes are known on entry and kept in two calendars keyed by decode step
(`block_due`, `finish_due`). The running sum of the decoding contexts gives their mean.
Results are exactly those of booking every slot every step.
"""

from __future__ import annotations

from collections import deque

from simcore.serving.blocks import BlockPool
from simcore.serving.tiering import TierMoves


class Slots:
    """Per-slot state of a replica: one list per field, indexed by slot (a structure of arrays, so the
    step's loops bind the field they read). For a decoding slot, `cached`, `emitted` and `last_token`
    are its values when it started decoding (Replica.context and Replica.progress give the current ones)."""

    __slots__ = ("request", "cached", "to_prefill", "emitted", "output", "blocks", "admission", "last_token",
                 "decode_start", "last_step", "written")

    def __init__(self, n: int):
        self.request = [-1] * n  # the request in the slot (-1: free)
        self.cached = [0] * n  # tokens whose K/V are in the cache
        self.to_prefill = [0] * n  # tokens to prefill (prompt, plus output so far after a preemption)
        self.emitted = [0] * n  # output tokens produced
        self.output = [0] * n  # output tokens the request asks for
        self.blocks = [0] * n  # KV blocks held
        self.admission = [-1] * n  # admission sequence number (-1: free slot): the newest is preempted first
        self.last_token = [0.0] * n  # time of the last token
        self.decode_start = [0] * n  # decoding slot: decode steps done when it started decoding
        self.last_step = [0] * n  # decoding slot: the decode step that makes its last token
        self.written = [0] * n  # blocks written through to the host tier (simcore/serving/tiering.py)


class Replica(TierMoves):
    def __init__(self, idx: int, cfg, blocks: int, cost, scheduler, reqs, metrics, policy=None, tier=None,
                 prefetch=None):
        self.idx, self.cfg, self.cost, self.scheduler = idx, cfg, cost, scheduler
        self.spans = None  # a SpanLog when the run is traced
        self.reqs, self.metrics = reqs, metrics
        self.bs = cfg.block_size
        self.pool = BlockPool(blocks, cfg.block_size, cfg.prefix_caching, policy)
        n = cfg.max_num_seqs
        self.slots = Slots(n)
        self.free_slots = list(range(n - 1, -1, -1))
        self.running_order: dict[int, None] = {}  # running slots, oldest admission first
        self.prefilling: dict[int, None] = {}  # slots still in their prefill, oldest admission first
        self.decoding: dict[int, None] = {}  # slots past their prefill
        self.new_decoders: list[int] = []  # slots that started decoding since the last decode step
        self.decode_steps = 0  # decode steps done
        self.last_decode_at = 0.0  # time of the last decode step
        # sum over decoding slots of cached - decode_start: their contexts sum to
        # context_offset + len(decoding) * decode_steps
        self.context_offset = 0
        self.block_due: dict[int, list] = {}  # decode step -> (slot, admission) that start a new block in it
        self.finish_due: dict[int, list] = {}  # decode step -> (slot, admission) whose last token it makes
        # calendar entries of released slots are dropped when met; none exist until a decoding slot is
        # released before its last step (preempted or swapped out), so until then nothing is filtered
        self.stale_entries = False
        self.gen_saved: dict[int, tuple[int, float]] = {}  # preempted request -> (output so far, last token time)
        self.waiting: deque[int] = deque()
        self.clock = 0.0
        self.admitted = 0
        self.preempted_now = False
        self.outstanding = 0  # tokens still to process, for the least-outstanding router
        self.iterations = 0
        self.tokens_out = 0  # tokens streamed so far (first and later output tokens): the frontend loop's work
        self.prefill_only = False  # disaggregated prefill replica: hand requests off after their first token
        self.handed: list[int] = []  # requests handed off in the last step (simcore/serving/disagg.py)
        # the engine forms step n+1's batch as step n starts (vLLM async scheduling: Profile.admit_lag), so a
        # request that arrives while a step runs can join the step after next; set by simulate.run
        self.admit_lag = False
        # a prefill step's first tokens are sent only once the next step is launched, and an eager prefill step
        # launches as slowly as it runs (SGLang's overlap loop: Profile.first_token_waits_launch); set by simulate.run
        self.first_token_waits = False
        self.unsent: list = []  # (slot, admission) whose first token the last step made, not sent yet
        self.unsent_at = -1  # the iteration that made them
        self.step_prefill = False  # the last iteration ran prefill chunks
        self.step_start = self.step_end = -1.0  # the last iteration's start and end
        self.init_tier(tier, prefetch)

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

    def queued(self) -> bool:
        """Requests wait for a slot."""
        return bool(self.waiting)

    def newest(self) -> int:
        """The running slot admitted last."""
        return next(reversed(self.running_order))

    def running_requests(self) -> list[int]:
        """Requests in the slots, in slot order."""
        return [self.slots.request[s] for s in sorted(self.running_order)]

    def context(self, s: int) -> int:
        """Tokens of slot s whose K/V are in the cache now."""
        sl = self.slots
        if s in self.decoding:
            return sl.cached[s] + self.decode_steps - sl.decode_start[s]
        return sl.cached[s]

    # -- moves a scheduler combines ------------------------------------------------------
    def no_decodes(self) -> tuple:
        return ()

    def decode_all(self):
        """Every sequence past its prefill gets its next token; the newest are preempted when blocks run out.
        Returns the decoding slots (a live view: the step only takes its length)."""
        k = self.decode_steps
        due = self.block_due.pop(k, None)
        if not due:  # no sequence starts a block: nothing to allocate, nobody preempted
            return self.decoding.keys()
        admission = self.slots.admission
        pool = self.pool
        while True:
            if self.stale_entries:
                due = [(s, a) for s, a in due if admission[s] == a]  # drop slots released since
            if len(due) <= pool.free or not self.decoding:
                break
            self.preempt(self.newest())
        if due:
            sl = self.slots
            request, blocks, last_step = sl.request, sl.blocks, sl.last_step
            if pool.caching:  # blocks go to the requests in slot order (which cached block each evicts)
                due.sort()
                pool.allocate_each([request[s] for s, _ in due], 1)
            else:  # a counting pool: only how many
                pool.allocate_each(due, 1)
            nxt = k + self.bs
            later = []
            for e in due:
                s = e[0]
                blocks[s] += 1
                if nxt <= last_step[s]:
                    later.append(e)
            if later:
                more = self.block_due.get(nxt)
                if more is None:
                    self.block_due[nxt] = later
                else:
                    more.extend(later)
        return self.decoding.keys()

    def continue_prefills(self, budget: int) -> tuple[list, int]:
        chunks = []
        to_prefill, cached = self.slots.to_prefill, self.slots.cached
        for s in self.prefilling:
            if budget <= 0:
                break
            n = min(to_prefill[s] - cached[s], budget)
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
        # a busy lagging engine scheduled this step when the last one started: only requests there by then
        # (an engine whose prefill step launches as long as it runs schedules the next one only as it ends)
        lag = self.admit_lag and not (self.first_token_waits and self.step_prefill)
        cut = self.step_start if lag and self.running_order and self.step_end == self.clock else None
        arrival = self.metrics.arrival
        while self.waiting and budget > 0 and self.free_slots:
            r = self.waiting[0]
            if cut is not None and arrival[r] > cut:
                break
            done, last = self.gen_saved.get(r, (0, 0.0))
            total = int(self.reqs.prompt[r]) + done
            hit = pool.lookup(r, self.hashes(r, total), total) if pool.caching else 0
            cached = hit * bs
            n = min(total - cached, budget) if chunked else total - cached
            need = -(-(cached + n) // bs) - hit
            later = self.output_blocks(r, hit + need) if whole_output else 0
            if n > budget or pool.free - need - later < reserve:
                if hit:
                    pool.release(r, hit)  # give the cache hits back; retried next step
                break
            reserve += later
            self.waiting.popleft()
            s = self._seat(r, cached, total, done, hit, last)
            self.prefilling[s] = None
            pool.allocate(r, need)
            self.slots.blocks[s] += need
            chunks.append((s, n))
            budget -= n
        return budget

    def waiting_context_tokens(self, budget: int) -> int:
        """Prompt tokens of the waiting requests an admission of whole prompts would take in order within `budget`
        tokens and the free slots (KV blocks not checked): what TensorRT-LLM's batch waiting weighs."""
        total, slots = 0, len(self.free_slots)
        for r in self.waiting:
            n = int(self.reqs.prompt[r]) + self.gen_saved.get(r, (0, 0.0))[0]
            if not slots or total + n > budget:
                break
            total += n
            slots -= 1
        return total

    def remaining_output(self) -> int:
        """Output tokens the running requests have still to produce."""
        return sum(self.slots.output[s] - self.progress(s)[0] for s in self.running_order)

    def future_blocks(self) -> int:
        """KV blocks the running requests will still take before they finish (prompt + output)."""
        q, bs, sl = self.reqs, self.bs, self.slots
        return sum(max(0, -(-(int(q.prompt[sl.request[s]]) + sl.output[s]) // bs) - sl.blocks[s])
                   for s in self.running_order)

    def _seat(self, r: int, cached: int, to_prefill: int, emitted: int, blocks: int, last: float) -> int:
        """Give request r a running slot: `cached` of its `to_prefill` prompt tokens cached, `emitted` tokens
        out, holding `blocks` blocks, its last token at `last`. Returns the slot."""
        s = self.free_slots.pop()
        sl = self.slots
        sl.request[s], sl.cached[s], sl.to_prefill[s], sl.emitted[s] = r, cached, to_prefill, emitted
        sl.output[s], sl.blocks[s], sl.admission[s] = int(self.reqs.output[r]), blocks, self.admitted
        sl.last_token[s] = last
        self.admitted += 1
        self.running_order[s] = None
        return s

    def _grow(self, s: int, n: int) -> bool:
        sl = self.slots
        need = -(-(sl.cached[s] + n) // self.bs) - sl.blocks[s]
        if need > self.pool.free:
            return False
        self.pool.allocate(sl.request[s], need)
        sl.blocks[s] += need
        return True

    def preempt(self, s: int) -> None:
        """Preemption by recompute: free the blocks, requeue at the front, keep the output so far.
        (With preemption: swap, the blocks go to host instead, when they fit: TierMoves.swap_out.)"""
        if self.swap and self.swap_out(s):
            return
        r = self.slots.request[s]
        done, last = self.progress(s)
        self._release(s)
        self.gen_saved[r] = (done, float(last))
        self.waiting.appendleft(r)
        self.metrics.preemptions += 1
        self.preempted_now = True

    def progress(self, s: int) -> tuple[int, float]:
        """Output tokens the slot has produced, and the time of its last one."""
        sl = self.slots
        if s in self.decoding:
            start = sl.decode_start[s]
            return (sl.emitted[s] + self.decode_steps - start,
                    self.last_decode_at if start < self.decode_steps else sl.last_token[s])
        return sl.emitted[s], sl.last_token[s]

    def _release(self, s: int) -> None:
        sl = self.slots
        r = sl.request[s]
        if self.pool.caching:
            c = self.context(s)
            self.pool.publish(r, self.hashes(r, c), c // self.bs)
        self.pool.release(r, sl.blocks[s])
        if s in self.decoding:
            del self.decoding[s]
            self.context_offset -= sl.cached[s] - sl.decode_start[s]
            if sl.last_step[s] >= self.decode_steps:  # released before its last token: its entries stay behind
                self.stale_entries = True
        else:
            self.prefilling.pop(s, None)
        del self.running_order[s]
        sl.request[s] = -1
        sl.admission[s] = -1
        sl.blocks[s] = 0
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
        sl = self.slots
        k = self.decode_steps
        c = sl.cached[s]
        sl.decode_start[s] = k
        sl.last_token[s] = now
        self.decoding[s] = None
        self.context_offset += c - k
        self.new_decoders.append(s)
        a = sl.admission[s]
        last = sl.last_step[s] = k + sl.output[s] - sl.emitted[s] - 1  # its last token comes from decode step `last`
        kb = k + (-c) % self.bs  # ctx is a multiple of block_size: that decode step opens a block
        if kb <= last:
            self.block_due.setdefault(kb, []).append((s, a))
        self.finish_due.setdefault(last, []).append((s, a))

    # -- iterations ----------------------------------------------------------------------
    def step(self) -> list[int] | None:
        """Run one iteration from self.clock; returns the requests that finished (None: nothing could run)."""
        self.preempted_now = False
        dec, chunks = self.scheduler.schedule(self)
        return self._book(dec, chunks)

    def coast(self, until: float, limit: float, other: tuple) -> list[int] | None:
        """Iterations one after another, each exactly as step() runs it, while each is a plain decode step
        (no prefill chunk; every sequence's gap the same: a sequence new to decoding had its first token in
        the last decode step), nothing finishes and the replica stays the earliest thing to do: the event
        loop's own test after every step (clock before `until`, the next arrival, and `limit`, and
        (clock, index) not after `other`, the next busy replica's). Returns as step() does for the last
        iteration run: the requests that finished in it, or [].

        A plain decode step books only counters: the price of the batch at its mean context, one run of
        equal inter-token gaps, the decode step count, then the slots whose last token it made.
        The replica's pricer must have decode_time()."""
        schedule = self.scheduler.schedule
        idle_decodes = getattr(self.scheduler, "idle_decodes", False)
        decode_time = self.cost.decode_time
        m = self.metrics
        itl_run, series = m.itl_run, m.series
        finish_due = self.finish_due
        idx = self.idx
        while True:
            self.preempted_now = False
            if idle_decodes and not self.prefilling and not self.queued():
                dec, chunks = self.decode_all(), ()
            else:
                dec, chunks = schedule(self)
            nd = len(dec)
            k = self.decode_steps
            if chunks or not nd or self.resume_dec or self.stall:
                return self._book(dec, chunks)
            if self.new_decoders:  # plain when each emitted its last token in the last decode step (mixed)
                told, last_token, decoding = self.last_decode_at, self.slots.last_token, self.decoding
                for s in self.new_decoders:
                    if s in decoding and last_token[s] != told:
                        return self._book(dec, chunks)
                self.new_decoders = []
            self.step_start = self.clock
            now = self.clock = self.step_end = self.clock + decode_time(nd, (self.context_offset + nd * k) / nd)
            self.step_prefill = False
            self.iterations += 1
            if series is not None:
                m.sample(self, now, nd)
            itl_run(now - self.last_decode_at, nd)  # every slot was decoded in the last decode step
            self.decode_steps = k + 1
            self.last_decode_at = now
            self.outstanding -= nd
            self.tokens_out += nd
            due = finish_due.pop(k, None)
            if due:
                admission = self.slots.admission
                done = [s for s, a in due if admission[s] == a]
                if done:
                    return self._finish(done)
            if now >= until or now >= limit or (now, idx) > other:
                return []

    def _book(self, dec, chunks: list) -> list[int] | None:
        """Price and book one iteration: the decoding slots `dec` (decode_all()'s or none) and prefill
        `chunks` ((slot, tokens)) the scheduler picked."""
        nd = len(dec)
        if not nd and not chunks:
            if self.resume_dec:  # a swapped-in decode resumed: it runs next step
                self.flush_resumes()
                return []
            return None
        sl = self.slots
        cached = sl.cached
        if chunks:
            pre_tok = 0
            past = 0
            for s, n in chunks:
                pre_tok += n
                past += cached[s]
            pre_past = past / len(chunks)
        else:
            pre_tok = 0
            pre_past = 0.0
        k = self.decode_steps
        dec_past = (self.context_offset + nd * k) / nd if nd else 0.0
        start = self.clock
        now = self.clock = start + self.cost.time(nd, dec_past, len(chunks), pre_tok, pre_past)
        if self.spans is not None:
            self.spans.iteration(self.idx, start, now, nd, len(chunks), pre_tok)
        if self.stall:  # blocking host-link transfers (loads, swaps) of this step
            now = self.clock = now + self.stall
            self.stall = 0.0
        if self.unsent:
            self._send_unsent(start, nd, chunks, now)
        self.step_start, self.step_end = start, now
        self.step_prefill = bool(chunks)
        self.iterations += 1
        m = self.metrics
        if m.series is not None:
            m.sample(self, now, nd + len(chunks))
        ends: list = []  # slots whose prefill ends in this step
        emit_ends: list = []  # ... that were preempted before: their re-prefill emits their next token
        if chunks:
            to_prefill, emitted, last_token, request = sl.to_prefill, sl.emitted, sl.last_token, sl.request
            for s, n in chunks:
                c = cached[s] = cached[s] + n
                if c >= to_prefill[s]:
                    ends.append(s)
            wait = self.first_token_waits
            for s in ends:
                if emitted[s] == 0:
                    m.first_token[request[s]] = now
                    emitted[s] = 1
                    last_token[s] = now
                    if wait and sl.output[s] > 1:
                        self.unsent.append((s, sl.admission[s]))
                else:
                    emit_ends.append(s)
            if self.unsent:
                self.unsent_at = self.iterations
            if self.pool.caching:
                keys = {s: self.hashes(request[s], cached[s]) for s, _ in chunks}
                for s, _ in chunks:
                    self.pool.publish(request[s], keys[s], cached[s] // self.bs)
                if self.all_keys:
                    self.write_through(chunks, now, keys)
        if nd:
            g = now - self.last_decode_at  # the gap of every slot that was decoded in the last decode step
            uniform = not emit_ends
            if uniform and self.new_decoders:  # slots that started decoding since: their own last token
                last_token, decoding = sl.last_token, self.decoding
                new = {s for s in self.new_decoders if s in decoding}
                if len(new) == nd:
                    g = now - last_token[next(iter(new))]
                for s in new:
                    if now - last_token[s] != g:
                        uniform = False
                        break
            if uniform:
                m.itl_run(g, nd)
            else:
                last_token, decode_start, told = sl.last_token, sl.decode_start, self.last_decode_at
                gaps = [now - (told if decode_start[s] < k else last_token[s]) for s in sorted(self.decoding)]
                gaps += [now - last_token[s] for s in emit_ends]
                m.itl_list(gaps)
            self.new_decoders = []
            self.decode_steps = k + 1
            self.last_decode_at = now
        elif emit_ends:
            m.itl_list([now - sl.last_token[s] for s in emit_ends])
        for s in emit_ends:
            sl.emitted[s] += 1
            sl.last_token[s] = now
        self.outstanding -= pre_tok + nd + len(emit_ends)
        self.tokens_out += nd + len(ends) + len(emit_ends)
        done = []
        if nd:
            due = self.finish_due.pop(k, None)
            if due:
                admission = sl.admission
                done = [s for s, a in due if admission[s] == a]
        if ends:
            emitted, output = sl.emitted, sl.output
            for s in ends:
                del self.prefilling[s]
                if emitted[s] >= output[s]:
                    done.append(s)
                elif self.prefill_only:
                    self.handed.append(s)
                else:
                    self._start_decoding(s, now)
        if self.resume_dec:
            self.flush_resumes()
        if not done:
            return []
        return self._finish(done)

    def output_blocks(self, r: int, held: int) -> int:
        """Blocks request r's whole prompt + output needs beyond the `held` it takes now (what TensorRT-LLM's
        no-evict admission keeps free for it)."""
        return -(-(int(self.reqs.prompt[r]) + int(self.reqs.output[r])) // self.bs) - held

    def _send_unsent(self, start: float, nd: int, chunks: list, now: float) -> None:
        """The step after the one that made first tokens starts at `start` and ends at `now`: when it runs prefill
        chunks (an eager launch) and followed at once, those first tokens were sent only once it was launched, i.e.
        at its end (Profile.first_token_waits_launch); otherwise they went out when they were made. A request that
        also decodes in this step (engines that mix decodes into prefill steps) sends its first two tokens together."""
        unsent, self.unsent = self.unsent, []
        if not chunks or start != self.step_end or self.iterations != self.unsent_at:
            return
        sl, first = self.slots, self.metrics.first_token
        for s, a in unsent:
            if sl.admission[s] == a and s in self.decoding and sl.decode_start[s] == self.decode_steps:
                first[sl.request[s]] = now
                sl.last_token[s] = now

    def _finish(self, done: list) -> list[int]:
        """Release the slots whose requests made their last token; returns those requests, in slot order."""
        done.sort()
        request = self.slots.request
        finished = [request[s] for s in done]
        for s in done:
            self._release(s)
        for r in finished:
            self.gen_saved.pop(r, None)
        return finished
