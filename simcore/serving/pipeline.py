"""Pipelined replicas: with pp > 1 a replica keeps several batches in flight, one per stage.

As vLLM v0 does with pipeline parallelism (vllm/engine/llm_engine.py: one Scheduler per "virtual
engine", pipeline_parallel_size of them; vllm/core/scheduler.py: each gets num_gpu_blocks // pp
blocks; a new request goes to the virtual engine with the fewest unfinished requests), a replica
is `batches` virtual engines, each a Replica with its share of the blocks and its own scheduler
and max_num_seqs, sharing the replica's pipeline stages. A virtual engine's step spends its host
overhead, then enters stage 0 when that stage is free, stage s + 1 when it has left stage s and
stage s + 1 is free (FIFO in step start order, which the event loop guarantees: it always runs
the earliest clock). One batch alone leaves (pp - 1) / pp of the stages idle (the bubble); pp
balanced batches keep every stage busy.
"""

from __future__ import annotations

from simcore.engine.walk import stage_time
from simcore.ops.passes import Batch, Group

SHARE_SEQS, SHARE_PAST = 32, 1024  # the decode batch whose per-stage times split every step's GPU time


def stage_shares(cost) -> list[float]:
    """Each stage's fraction of a step's GPU time, from a representative decode batch."""
    b = Batch((Group("decode", SHARE_SEQS, 1, SHARE_PAST),), emitting=SHARE_SEQS)
    t = [stage_time(s, b, cost.pricer, cost.policy, cost.launch_s) for s in cost.builders]
    total = sum(t)
    return [x / total for x in t]


class StagePipeline:
    """The stages of one replica: when each is next free, and how long each was busy."""

    def __init__(self, shares: list[float]):
        self.shares = shares
        self.free = [0.0] * len(shares)
        self.busy = [0.0] * len(shares)

    def run(self, start: float, host: float, gpu: float) -> float:
        """A step that starts at `start`, spends `host` seconds on the host and `gpu` seconds in the
        stages (split by the shares); returns when it leaves the last stage."""
        t = start + host
        for s, f in enumerate(self.shares):
            d = gpu * f
            t = max(t, self.free[s]) + d
            self.free[s] = t
            self.busy[s] += d
        return t


class PipelinedCost:
    """A virtual engine's iteration pricer: the replica's pricer, timed through the shared stages."""

    def __init__(self, cost, pipe: StagePipeline):
        self.cost, self.pipe = cost, pipe
        self.replica = None  # set once the virtual engine exists: its clock is the step's start

    @property
    def priced(self) -> dict:
        return self.cost.priced

    def time(self, *shape) -> float:
        dt = self.cost.time(*shape)
        host = min(dt, self.cost.overhead)
        start = self.replica.clock
        return self.pipe.run(start, host, dt - host) - start


def pipeline_batches(run) -> int:
    """Virtual engines per replica: serving.pipeline_batches; by default pp (one batch per stage), or 1
    with the host tier or swap preemption, which are not pipelined yet (docs/serving.md)."""
    cfg = run.experiment.serving
    if cfg.pipeline_batches is not None:
        return cfg.pipeline_batches
    return 1 if cfg.host_tier.enabled or cfg.preemption == "swap" else run.par.pp


def pipeline_summary(pipes: list[StagePipeline], duration: float, batches: int) -> dict:
    """Stage utilisation over the run: busy time / (stages x duration), and the bubble = 1 - that."""
    stages = sum(len(p.shares) for p in pipes)
    busy = sum(sum(p.busy) for p in pipes)
    util = busy / (stages * duration) if duration > 0 and stages else 0.0
    return {"batches_in_flight": batches, "stage_utilization": util, "bubble": 1 - util}


def virtual_engines(run, cfg, cost, blocks: int, make_replica) -> tuple[list, list[StagePipeline], int]:
    """(virtual engines of every replica, replica by replica; their pipelines; blocks per virtual engine).
    make_replica(index, blocks, cost) builds one virtual engine."""
    from simcore.errors import SimcoreError

    n, pp = pipeline_batches(run), run.par.pp
    if n > pp:
        raise SimcoreError(f"serving.pipeline_batches: {n}: at most one batch per pipeline stage; allowed: 1 to "
                           f"parallelism.pp = {pp}")
    each = blocks // n
    shares = stage_shares(cost)
    reps, pipes = [], []
    for _ in range(run.par.dp):
        pipe = StagePipeline(shares)
        pipes.append(pipe)
        for _ in range(n):
            c = PipelinedCost(cost, pipe)
            c.replica = make_replica(len(reps), each, c)
            reps.append(c.replica)
    return reps, pipes, each
