"""One training step: forward, backward, recompute and optimizer of every micro-batch on every rank.

The ops of each (virtual) stage come from simcore.ops.training; the pipeline schedule orders
them per rank (simcore.graph.schedules); the training flattener expands the graph at the mode's
granularity and the same SimPy engine as inference runs it. Memory per GPU (simcore.memory.training) is
checked before simulating: a configuration that does not fit is an error naming its largest component.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.config.experiment import Run
from simcore.config.training import micro_batches
from simcore.engine.des import Event, busiest_rank_idle, critical_path, execute
from simcore.engine.walk import engine_parts
from simcore.graph.schedules import B, F, rank_order, training_graph
from simcore.graph.training_flatten import TrainingFlattener
from simcore.memory.training import TrainingMemory, check_training_fits, training_memory
from simcore.ops.op import COMM
from simcore.ops.training import TrainingStage


@dataclass
class TrainingResult:
    run: Run
    step_time: float
    memory: TrainingMemory
    critical: dict[str, float]
    bubble: float
    model_flops: float  # all GPUs, per step: 3 x forward (backward counted as 2 x forward)
    hardware_flops: float  # all GPUs, per step: what runs, recompute included
    tokens: int  # per step
    micro_batches: int
    ranks: int
    events: list[Event] = field(default_factory=list)
    stages: list[TrainingStage] = field(default_factory=list)

    @property
    def peak(self) -> float:
        """Dense bf16 peak of all GPUs (MFU and HFU are against this, as is customary)."""
        return self.gpus * self.run.system.gpu.peak_flops("bf16")

    @property
    def gpus(self) -> int:
        """tp x pp x dp x context_parallel."""
        return self.run.gpus * self.run.experiment.workload.context_parallel


class TrainingSimulator:
    def __init__(self, run: Run):
        self.run = run
        parts = engine_parts(run)
        self.pricer, self.policy = parts.pricer, parts.policy
        self.mode = run.experiment.engine.mode
        w, p = run.experiment.workload, run.par
        self.w = w
        self.v = w.virtual_stages
        self.m = micro_batches(w, p.dp)
        self.stages = [TrainingStage(run, vs, p.pp * self.v) for vs in range(p.pp * self.v)]

    def unit_ops(self, u, last_b: set) -> list:
        phase, mb, vs = u
        if phase == F:
            return self.stages[vs].forward_ops()
        overlap = "dp_grad" in self.policy.overlaps
        if phase == B:
            s = self.stages[vs]
            return s.with_buckets(s.backward) if overlap and u in last_b else s.backward
        mine = [s for s in self.stages if s.vstage % self.run.par.pp == vs]
        ops = [] if overlap else [op for s in mine for op in s.grad_buckets()]
        return ops + [op for s in mine for op in s.optimizer_ops()]

    def orders(self) -> list[list]:
        p = self.run.par
        return [rank_order(self.w.schedule, r, p.pp, self.v, self.m) for r in range(p.pp)]

    def memory(self) -> TrainingMemory:
        return training_memory(self.run, self.stages, self.orders())

    def simulate(self) -> TrainingResult:
        p = self.run.par
        orders = self.orders()
        mem = training_memory(self.run, self.stages, orders)
        check_training_fits(self.run, mem)
        last_b = {}
        for order in orders:
            for u in order:
                if u[0] == B:
                    last_b[u[2]] = u
        last = set(last_b.values())
        g = training_graph(self.w.schedule, p.pp, self.v, self.m, lambda u: self.unit_ops(u, last))
        plan = TrainingFlattener(self.run, self.mode, self.pricer, self.policy).flatten_training(g)
        step = execute(plan.events, contention=self.mode != "analytical", hbm_gpus=plan.hbm_gpus)
        crit = critical_path(plan.events)
        bubble = busiest_rank_idle(plan.events)
        fwd = sum(s.flops(s.forward) for s in self.stages)
        hw = 0.0
        flops: dict[int, tuple] = {}  # id(ops) -> (ops, FLOPs): units of one chunk share their op list
        for u in g.graph["order"]:
            ops = g.nodes[u]["ops"]
            known = flops.get(id(ops))
            if known is None or known[0] is not ops:
                known = flops[id(ops)] = (ops, sum(op.flops for op in ops if op.kind != COMM))
            hw += known[1]
        scale = p.tp * p.dp * self.w.context_parallel
        return TrainingResult(
            self.run, step, mem, crit, bubble,
            model_flops=3 * fwd * self.m * scale,
            hardware_flops=hw * scale,
            tokens=self.w.global_batch * self.w.sequence_length,
            micro_batches=self.m, ranks=plan.ranks, events=plan.events, stages=self.stages)


def simulate(run: Run) -> TrainingResult:
    return TrainingSimulator(run).simulate()



