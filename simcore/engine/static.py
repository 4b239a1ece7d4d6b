"""Static-batch inference: prefill, then decode steps with a growing context.

Each pass walks every pipeline stage's op list (a batch moves through the stages one
after another). Decode may be priced at sampled steps: the step time and KV traffic are
piecewise linear in the context length, so sampling at evenly spaced steps plus the
sliding-window knees and interpolating linearly reproduces the full run closely; the
error is measured in tests and in benchmarks/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simcore.config.experiment import Run
from simcore.cost.roofline import Pricer
from simcore.engine.walk import Walk, walk
from simcore.ops.builder import StageBuilder
from simcore.ops.op import KV_FETCH, KV_STORE
from simcore.ops.passes import Pass, decode, prefill
from simcore.planner.memory import MemoryPerGPU, check_fits, memory_per_gpu


@dataclass
class PassResult:
    stages: list[Walk]

    @property
    def time(self) -> float:
        return sum(w.time for w in self.stages)

    def kv_bytes(self, kind: str) -> float:
        return sum(w.kv_bytes(kind) for w in self.stages)

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for w in self.stages:
            for k, v in w.by_kind().items():
                out[k] = out.get(k, 0.0) + v
        return out


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
        self.pricer = Pricer(run.system, custom_all_reduce=engine.all_reduce == "custom")
        self.builders = [StageBuilder(run, s) for s in range(run.par.pp)]
        self.overlap = run.experiment.inference.kvcache_fetch_overlap
        self.launch_s = 0.0 if engine.cuda_graphs else engine.kernel_launch_us * 1e-6

    def pass_(self, ps: Pass) -> PassResult:
        return PassResult([walk(b.ops(ps), self.pricer, self.overlap, self.launch_s) for b in self.builders])

    def sample_points(self, steps: int, prompt: int) -> list[int]:
        """Decode steps (1-based) to price: evenly spaced, plus where a sliding window fills."""
        k = self.run.experiment.engine.decode_sample_steps
        if k == 0 or steps <= k:
            return list(range(1, steps + 1))
        points = set(np.linspace(1, steps, k).round().astype(int).tolist())
        w = self.run.model.sliding_window
        if w:
            for past in (w - 1, w, w + 1):  # the step whose context first reaches the window
                i = past - prompt + 1
                if 1 <= i <= steps:
                    points.add(i)
        return sorted(points)

    def simulate(self) -> StaticResult:
        e = self.run.experiment
        wl = e.workload
        b, s, n = wl.batch_size, wl.prompt_tokens, wl.output_tokens
        mem = memory_per_gpu(self.run, b, s, s + n)
        check_fits(self.run, mem)
        pre = self.pass_(prefill(b, s))
        steps = n - 1  # the prefill produces the first output token
        read = pre.kv_bytes(KV_FETCH)
        written = pre.kv_bytes(KV_STORE)
        first = last = None
        times = np.zeros(0)
        sampled: list[int] = []
        if steps:
            sampled = self.sample_points(steps, s)
            results = {i: self.pass_(decode(b, s + i - 1)) for i in sampled}
            first, last = results[sampled[0]], results[sampled[-1]]
            xs = np.array(sampled, dtype=float)
            every = np.arange(1, steps + 1, dtype=float)
            times = np.interp(every, xs, [results[i].time for i in sampled])
            read += float(np.interp(every, xs, [results[i].kv_bytes(KV_FETCH) for i in sampled]).sum())
            written += float(np.interp(every, xs, [results[i].kv_bytes(KV_STORE) for i in sampled]).sum())
        return StaticResult(self.run, mem, pre, first, last, times, sampled, read, written)


def simulate(run: Run) -> StaticResult:
    return StaticSimulator(run).simulate()
