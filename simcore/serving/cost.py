"""Time of one engine iteration, priced from its batch through the static run's op lists and roofline.

An iteration is summarized by five numbers: decoding sequences and their mean context,
prefill sequences, prefill tokens (the sum of this step's chunks) and their mean past. Each
continuous one is placed on a grid (exact for small values, then geometric) and the time is
interpolated linearly between the grid corners, every corner priced as a Batch through
StageBuilder.ops + walk for every pipeline stage and memoized. This is the static run's
decode-step sampling applied to batch shapes; docs/serving.md states the error.
"""

from __future__ import annotations

import dataclasses
import math

from simcore.config.experiment import Run
from simcore.engine.walk import engine_parts, stage_time
from simcore.ops.passes import Batch, Group
from simcore.serving.engines import padded

EXACT = 16  # counts up to here are priced exactly
PAST_LINEAR = 256  # a context below this is interpolated between 0 and 256 (KV traffic is linear in it)
STEPS = {"seqs": 4, "past": 2, "tokens": 4}  # grid points per octave above EXACT (PAST_LINEAR for contexts)


def past_grid(x: float) -> tuple[int, int, float]:
    if x <= 0:
        return 0, 0, 0.0
    if x < PAST_LINEAR:
        return 0, PAST_LINEAR, x / PAST_LINEAR
    return grid(x, STEPS["past"], PAST_LINEAR)


def grid(x: float, per_octave: int, exact: int = EXACT) -> tuple[int, int, float]:
    """(lo, hi, weight of hi): grid neighbours of x; exact integers up to `exact`, then geometric."""
    if x <= exact:
        lo = math.floor(x)
        return (lo, lo, 0.0) if lo == x else (lo, lo + 1, x - lo)
    k = math.log2(x / exact) * per_octave
    i = math.floor(k)
    lo = round(exact * 2 ** (i / per_octave))
    hi = round(exact * 2 ** ((i + 1) / per_octave))
    if x <= lo:
        return lo, lo, 0.0
    return lo, hi, (x - lo) / (hi - lo)


_PAST_POINTS = [round(PAST_LINEAR * 2 ** (i / STEPS["past"])) for i in range(256)]  # grid()'s lo/hi per index


def _past_grid(x: float) -> tuple[int, int, float]:
    """past_grid(x), the same operations with the grid points tabulated."""
    if x <= 0:
        return 0, 0, 0.0
    if x < PAST_LINEAR:
        return 0, PAST_LINEAR, x / PAST_LINEAR
    if x <= PAST_LINEAR:
        return PAST_LINEAR, PAST_LINEAR, 0.0
    i = math.floor(math.log2(x / PAST_LINEAR) * STEPS["past"])
    if i + 1 >= len(_PAST_POINTS):
        return past_grid(x)
    lo = _PAST_POINTS[i]
    if x <= lo:
        return lo, lo, 0.0
    hi = _PAST_POINTS[i + 1]
    return lo, hi, (x - lo) / (hi - lo)


class IterationCost:
    def __init__(self, run: Run, profile=None):
        """profile: an engine profile (simcore/serving/engines/): its host model replaces the flat
        iteration_overhead_us (which, when set explicitly, replaces the profile's constant term) and
        decode-only steps are priced at their CUDA-graph padded batch size."""
        parts = engine_parts(run)
        self.pricer, self.policy, self.launch_s, self.builders = parts.pricer, parts.policy, parts.launch_s, parts.builders
        cfg = run.experiment.serving
        self.overhead = cfg.iteration_overhead_us * 1e-6
        self.host = None
        self.eager_floor = 0.0  # seconds: host floor of a step with prefill tokens (no CUDA graph)
        self.max_graph = 0  # the largest decode batch with a CUDA graph: a larger one launches eagerly
        self.exact = None  # the captured sizes when batches are not padded to them (None: padded)
        self.ranks = 1  # attention-DP ranks whose graphs are captured per rank
        self.moe_prompt = 0.0  # seconds added once to a step with prefill tokens (the engine's MoE prompt-step stall)
        if profile is not None:
            host = profile.host
            if "iteration_overhead_us" in cfg.model_fields_set:
                host = dataclasses.replace(host, const_s=self.overhead)
            self.host = host
            self.sizes = profile.capture_sizes
            # a step with prefill tokens runs without a CUDA graph: its kernels are launched one by one from the
            # host, layer after layer, and the GPU waits when that takes longer than the kernels
            self.eager_floor = profile.eager_layer_s * run.model.layers
            # a decode-only step above the largest captured batch has no graph to replay (TensorRT-LLM
            # _maybe_get_cuda_graph returns none; engine.cuda_graphs false captures none), so it takes the same floor
            self.max_graph = max(self.sizes, default=0)
            # under attention DP each rank replays its own graphs, all at the size of the busiest rank's batch: the
            # ranks allgather their batch sizes and pad to the largest (TensorRT-LLM model_engine.py
            # _get_padded_batch and cuda_graph_runner.py; vLLM pads its DP ranks to one size too)
            self.ranks = run.par.attention_dp
            # without padding (TensorRT-LLM enable_padding false) only a batch of a captured size replays a graph
            self.exact = None if profile.padding else frozenset(self.sizes)
            # a fitted stall per MoE layer (dense layers of a mixed model do not count), once per prompt step: the
            # prompts in the step share it and its decodes wait for it
            self.moe_prompt = profile.moe_prompt_layer_s * sum(run.model.moe_layers)
        self.priced: dict[tuple, float] = {}  # grid corner -> seconds
        self._seq_grid: dict[int, tuple] = {}  # memoized grid() of sequence counts
        self._tok_grid: dict[int, tuple] = {}  # ... and of prefill token counts
        # grid cell -> its corners' seconds, priced on first use: (a0, a1, b0, b1) for decode only (4 corners),
        # (a0, a1, b0, b1, prefills, tokens lo, tokens hi, past lo, past hi) with prefill chunks (16)
        self._cells: dict[tuple, list] = {}
        self._decode: dict[int, tuple] = {}  # decode batch size -> _decode_shape()

    def batch_time(self, batch: Batch) -> float:
        """One pass of `batch` through every pipeline stage in turn (no micro-batch pipelining)."""
        return sum(stage_time(b, batch, self.pricer, self.policy, self.launch_s) for b in self.builders)

    def corner(self, dec: int, dec_past: int, pre: int, pre_tokens: int, pre_past: int) -> float:
        key = (dec, dec_past, pre, pre_tokens, pre_past)
        t = self.priced.get(key)
        if t is None:
            groups = []
            if pre:
                per = max(1, round(pre_tokens / pre))
                groups.append(Group("prefill", pre, per, pre_past))
            if dec:
                groups.append(Group("decode", dec, 1, dec_past))
            # every decode emits a token; a prefill chunk emits when it ends its prompt (bounded by pre)
            t = self.priced[key] = self.batch_time(Batch(tuple(groups), emitting=max(1, dec + pre)))
        return t

    def time(self, dec: int, dec_past: float, pre: int, pre_tokens: int, pre_past: float) -> float:
        """Seconds of one iteration, host time included; dec_past/pre_past are means."""
        if dec and not pre:
            return self.decode_time(dec, dec_past)
        if self.host is None:
            return self.gpu_time(dec, dec_past, pre, pre_tokens, pre_past) + self.overhead
        gpu = self.gpu_time(dec, dec_past, pre, pre_tokens, pre_past)
        if pre:
            gpu = max(gpu + self.moe_prompt, self.eager_floor)
        return self.host.step(gpu, dec + pre, dec + pre_tokens)

    def decode_time(self, dec: int, dec_past: float) -> float:
        """time(dec, dec_past, 0, 0, 0.0): a decode-only step, from its batch size's coefficients (CUDA-graph
        padding, grid neighbours and weight of the count), computed once per batch size."""
        shape = self._decode.get(dec)
        if shape is None:
            shape = self._decode[dec] = self._decode_shape(dec)
        n, eager, a0, a1, wa1 = shape
        if n != dec:  # padding rows hold no context: the same KV traffic over more GEMM rows
            dec_past = dec_past * dec / n
        b0, b1, wb1 = _past_grid(dec_past)
        gpu = self._decode_gpu(a0, a1, wa1, b0, b1, wb1)
        if self.host is None:
            return gpu + self.overhead
        return self.host.step(max(gpu, self.eager_floor) if eager else gpu, n, n)

    def _decode_shape(self, dec: int) -> tuple:
        """(batch size run: the next CUDA-graph capture size with an engine profile, else dec; whether it launches
        without a graph; its grid)."""
        if self.host is None:
            return (dec, False, *grid(dec, STEPS["seqs"]))
        rank = -(-dec // self.ranks)  # the busiest attention-DP rank's decodes (the replica's with one rank)
        if self.exact is not None:  # no padding: a size without a graph of its own runs op by op, as it is; under
            # attention DP a graph replays only where every rank holds the same captured size
            return (dec, rank not in self.exact or dec % self.ranks != 0, *grid(dec, STEPS["seqs"]))
        # a decode-only step replays the CUDA graph of the next captured batch size; above the largest, none
        graph = padded(rank, self.sizes)
        n = max(dec, graph * self.ranks)  # every rank runs the busiest rank's padded batch
        return (n, graph > self.max_graph, *grid(n, STEPS["seqs"]))

    def gpu_time(self, dec: int, dec_past: float, pre: int, pre_tokens: int, pre_past: float) -> float:
        """Seconds of one iteration's forward pass; dec_past/pre_past are means.

        The same corners, weights and floating-point operations, in the same order, as interpolating
        over every corner with a non-zero weight; grid lookups of counts are memoized and the corner
        times of a cell kept with it, since consecutive iterations mostly fall in one cell (a cell's
        corners are priced when first given a non-zero weight, so the same corners are priced)."""
        if dec:
            d = self._seq_grid.get(dec)
            if d is None:
                d = self._seq_grid[dec] = grid(dec, STEPS["seqs"])
            a0, a1, wa1 = d
            b0, b1, wb1 = _past_grid(dec_past)
        else:
            a0 = a1 = b0 = b1 = 0
            wa1 = wb1 = 0.0
        if not pre:  # decode only: the prefill weights are 1 - 0.0 and x * 1.0 == x
            return self._decode_gpu(a0, a1, wa1, b0, b1, wb1)
        pt = self._tok_grid.get(pre_tokens)
        if pt is None:
            pt = self._tok_grid[pre_tokens] = grid(pre_tokens, STEPS["tokens"])
        pp = _past_grid(pre_past)
        c0, c1 = max(pt[0], pre), max(pt[1], pre)
        key = (a0, a1, b0, b1, pre, c0, c1, pp[0], pp[1])
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = [None] * 16
        total = 0.0
        for a, wa, i in ((a0, 1 - wa1, 0), (a1, wa1, 8)):
            if not wa:
                continue
            for b, wb, j in ((b0, 1 - wb1, i), (b1, wb1, i + 4)):
                if not wb:
                    continue
                for c, wc, l in ((c0, 1 - pt[2], j), (c1, pt[2], j + 2)):
                    if not wc:
                        continue
                    for e, we, m in ((pp[0], 1 - pp[2], l), (pp[1], pp[2], l + 1)):
                        if we:
                            t = cell[m]
                            if t is None:
                                t = cell[m] = self.corner(a, b, pre, c, e)
                            total += wa * wb * wc * we * t
        return total

    def _decode_gpu(self, a0: int, a1: int, wa1: float, b0: int, b1: int, wb1: float) -> float:
        """gpu_time of a decode-only step from its grid neighbours: count a0/a1 (weight of a1: wa1), mean
        past b0/b1 (weight of b1: wb1)."""
        wa0 = 1 - wa1
        wb0 = 1 - wb1
        key = (a0, a1, b0, b1)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = [None, None, None, None]
        total = 0.0
        if wa0:
            if wb0:
                c = cell[0]
                if c is None:
                    c = cell[0] = self.corner(a0, b0, 0, 0, 0)
                total += wa0 * wb0 * c
            if wb1:
                c = cell[1]
                if c is None:
                    c = cell[1] = self.corner(a0, b1, 0, 0, 0)
                total += wa0 * wb1 * c
        if wa1:
            if wb0:
                c = cell[2]
                if c is None:
                    c = cell[2] = self.corner(a1, b0, 0, 0, 0)
                total += wa1 * wb0 * c
            if wb1:
                c = cell[3]
                if c is None:
                    c = cell[3] = self.corner(a1, b1, 0, 0, 0)
                total += wa1 * wb1 * c
        return total
