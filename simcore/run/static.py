"""Static-batch inference: prefill, then decode steps with a growing context.

Every pass is simulated by the engine: the pipeline graph of the pass (micro-batches x
stages x ops) is flattened at the mode's granularity into per-rank event streams that
SimPy runs. With pipeline parallelism a decode step is simulated as two consecutive
steps and timed between their ends, so the pipeline is full as in steady state.
Decode may be priced at sampled steps: step time, KV traffic and critical-path times are
piecewise linear in the context length, so sampling evenly spaced steps plus the
sliding-window knees and interpolating linearly reproduces the full run closely (tested).
The sampled steps share one flattened plan per pass shape, re-timed for each (docs/engine.md).
"""

from __future__ import annotations

from collections.abc import Callable
from copy import copy
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from simcore.config.experiment import Run
from simcore.config.kv_placement import KVPlacement
from simcore.errors import SimcoreError
from simcore.engine.speculative import StaticSpeculation, static_speculation
from simcore.engine.des import Event, busiest_rank_idle, critical_path, execute
from simcore.engine.walk import Walk, engine_parts, exposes_whole, layer_segments, walk
from simcore.graph.build import pass_streams
from simcore.graph.flatten import Flattener, flatten, shape
from simcore.ops.op import KV_FETCH, KV_STORE, Op
from simcore.ops.passes import Pass, as_batch, decode, prefill, window_knee
from simcore.memory import MemoryPerGPU, static_memory


@dataclass
class PassResult:
    breakdown: Callable[[], list[Walk]]  # per-op breakdown of the whole batch, one TP rank per stage
    ops: Callable[[], list[list[Op]]]  # the whole batch's ops per stage (memoized by the builders)
    time: float  # simulated time of the pass
    critical: dict[str, float]  # critical-path time by kind
    bubble: float  # time the busiest rank sits idle
    events: list[Event] = field(default_factory=list)
    kv: Callable[[str], float] | None = None  # kv_bytes without building every layer (one per class)

    @cached_property
    def stages(self) -> list[Walk]:
        """Built on first use: callers that only need times (the recommender) skip it."""
        return self.breakdown()

    def kv_bytes(self, kind: str) -> float:
        """Cache bytes of one TP rank per stage; needs the ops, not their priced walk."""
        if self.kv is not None:
            return self.kv(kind)
        return sum(op.kv_bytes for stage in self.ops() for op in stage if op.kind == kind)




@dataclass
class StaticResult:
    run: Run
    memory: MemoryPerGPU
    prefill: PassResult
    decode_first: PassResult | None
    decode_last: PassResult | None
    step_times: np.ndarray  # every decode step (interpolated where not sampled)
    sampled_steps: list[int]
    kv_read_per_rank: float  # summed over stages of one TP rank, whole run
    kv_written_per_rank: float
    critical_path: dict[str, float]  # whole run, by kind
    events_simulated: int
    ranks: int
    speculation: StaticSpeculation | None = None  # with speculative.k > 0 (docs/serving.md)
    without_retention: "StaticResult | str | None" = None  # the run keeping every token, or why it cannot run
    placement: object = None  # inference.kv_placement over stage 0's layers (a memory.kv_placement.Placement)
    all_in_hbm: "StaticResult | str | None" = None  # the same run with the whole cache in HBM, or why it cannot run

    @property
    def ttft(self) -> float:
        return self.prefill.time

    @property
    def e2e(self) -> float:
        return self.ttft + float(self.step_times.sum())


class StaticSimulator:
    def __init__(self, run: Run):
        self.run = run
        engine = run.experiment.engine
        self.mode = engine.mode
        parts = engine_parts(run)
        self.pricer, self.policy, self.launch_s, self.builders = parts.pricer, parts.policy, parts.launch_s, parts.builders
        self.micro_batches = engine.micro_batches or run.par.pp
        self.events_simulated = 0
        self.ranks = 0
        self._plans: dict[tuple, Flattener] = {}  # pass shape -> its flattened plan, re-timed for each pass of it

    def _plan(self, streams):
        """The event plan of a pass: flattened once per pass shape (hybrid, flattened) and re-timed for the
        passes that only differ in durations (the sampled decode steps), so no event is built twice."""
        run, mode = self.run, self.mode
        if mode == "analytical":  # a handful of stage-level events: nothing to reuse
            return flatten(streams, run, mode, self.pricer, self.policy, self.launch_s, builders=self.builders)
        key = shape(streams)
        flat = self._plans.get(key)
        if flat is None or not flat.retime(streams):
            flat = self._plans[key] = Flattener(run, mode, self.pricer, self.policy, self.launch_s,
                                                run.experiment.engine.all_ranks)
            flat.flatten(streams)
        return flat.plan

    def pass_(self, ps: Pass, keep_events: bool = True) -> PassResult:
        """keep_events: the result keeps its own copy of the simulated events (for traces); False leaves
        them out (a later pass of the same shape re-times the plan's events)."""
        pp = self.run.par.pp
        steps = 2 if ps.phase == "decode" and pp > 1 and min(self.micro_batches, ps.batch) > 1 else 1
        # the flattener reads the pipeline graph as streams: build those directly (no networkx graph)
        # analytical and nothing overlaps: stages are priced one layer per class, without building each layer
        lazy = self.mode == "analytical" and exposes_whole(self.policy)
        streams = pass_streams(self.run, ps, self.micro_batches, steps, self.builders, build_ops=not lazy)
        plan = self._plan(streams)
        makespan = execute(plan.events, contention=self.mode != "analytical", hbm_gpus=plan.hbm_gpus)
        self.events_simulated += len(plan.events)
        self.ranks = plan.ranks
        crit = critical_path(plan.events)
        bubble = busiest_rank_idle(plan.events)
        time = makespan
        if steps == 2:  # steady state: from the end of one step to the end of the next
            time = makespan - max(e.end for e in plan.events if e.step == 0)
            scale = time / makespan
            crit = {k: v * scale for k, v in crit.items()}
            bubble *= scale

        def ops() -> list[list[Op]]:
            return [b.ops(ps) for b in self.builders]

        def breakdown() -> list[Walk]:
            return [walk(stage, self.pricer, self.policy, self.launch_s) for stage in ops()]

        def kv(kind: str) -> float:  # each class of identical layers counted, not built layer by layer
            return sum(count * sum(op.kv_bytes for op in seg if op.kind == kind)
                       for b in self.builders for seg, count in layer_segments(b, as_batch(ps)))

        events = plan.events if self.mode == "analytical" else [copy(e) for e in plan.events] if keep_events else []
        return PassResult(breakdown, ops, time, crit, bubble, events, kv)

    def sample_points(self, steps: int, prompt: int) -> list[int]:
        """Decode steps (1-based) to price: evenly spaced, plus where a sliding window fills."""
        k = self.run.experiment.engine.decode_sample_steps
        if k == 0 or steps <= k:
            return list(range(1, steps + 1))
        points = set(np.linspace(1, steps, k).round().astype(int).tolist())
        knee = window_knee(prompt, self.run.model.sliding_window)
        if knee is not None:
            points.update(i for i in (knee - 1, knee, knee + 1) if 1 <= i <= steps)
        return sorted(points)

    def simulate(self, progress: Callable[[int, int], None] | None = None) -> StaticResult:
        """progress(done, total): called after each simulated pass (the prefill, then each priced step)."""
        wl = self.run.experiment.workload
        b, s, n = wl.batch_size, wl.prompt_tokens, wl.output_tokens
        mem = static_memory(self.run)
        steps = n - 1  # the prefill produces the first output token
        sampled: list[int] = self.sample_points(steps, s) if steps else []
        total = 1 + len(sampled)
        pre = self.pass_(prefill(b, s))
        if progress:
            progress(1, total)
        read = pre.kv_bytes(KV_FETCH)
        written = pre.kv_bytes(KV_STORE)
        crit = dict(pre.critical)
        first = last = None
        times = np.zeros(0)
        if steps:
            results = {}
            for i in sampled:
                results[i] = self.pass_(decode(b, s + i - 1), keep_events=i in (sampled[0], sampled[-1]))
                if progress:
                    progress(1 + len(results), total)
            first, last = results[sampled[0]], results[sampled[-1]]
            xs = np.array(sampled, dtype=float)
            every = np.arange(1, steps + 1, dtype=float)

            def total(values) -> float:
                return float(np.interp(every, xs, values).sum())

            times = np.interp(every, xs, [results[i].time for i in sampled])
            read += total([results[i].kv_bytes(KV_FETCH) for i in sampled])
            written += total([results[i].kv_bytes(KV_STORE) for i in sampled])
            for kind in {k for r in results.values() for k in r.critical}:
                crit[kind] = crit.get(kind, 0.0) + total([results[i].critical.get(kind, 0.0) for i in sampled])
        spec = static_speculation(self.run, b, s, n) if self.run.experiment.speculative.enabled else None
        full = None
        if self.run.experiment.inference.kv_retention.policy != "full":  # what the policy saves or costs
            try:
                full = StaticSimulator(without_retention(self.run)).simulate()
            except SimcoreError as exc:  # keeping every token may not fit: say so in the result
                full = str(exc)
        placed = hbm = None
        if self.run.experiment.inference.kv_placement.policy != "hbm":
            from simcore.memory.budget import stage_placement
            placed = stage_placement(self.run, 0, b, s, s + n)
            try:
                hbm = StaticSimulator(with_field(self.run, "kv_placement", KVPlacement())).simulate()
            except SimcoreError as exc:
                hbm = str(exc)
        return StaticResult(self.run, mem, pre, first, last, times, sampled, read, written, crit,
                            self.events_simulated, self.ranks, spec, full, placed, hbm)


def with_field(run: Run, name: str, value) -> Run:
    """The run with inference.<name> replaced (its baseline for a comparison)."""
    from simcore.config.experiment import resolve

    e = run.experiment
    return resolve(e.model_copy(update={"inference": e.inference.model_copy(update={name: value})}))


def without_retention(run: Run) -> Run:
    from simcore.config.kv_retention import KVRetention

    return with_field(run, "kv_retention", KVRetention())


def simulate(run: Run, progress: Callable[[int, int], None] | None = None) -> StaticResult:
    return StaticSimulator(run).simulate(progress)
