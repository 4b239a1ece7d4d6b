"""One training step: forward, backward, recompute and optimizer of every micro-batch on every rank.

The ops of each (virtual) stage come from simcore.ops.training; the pipeline schedule orders
them per rank (simcore.graph.schedules); the training flattener expands the graph at the mode's
granularity and the same SimPy engine as inference runs it. Memory per GPU is checked before
simulating: a configuration that does not fit is an error naming its largest component.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.config.experiment import Run
from simcore.config.training import micro_batches
from simcore.engine.des import Event, busiest_rank_idle, critical_path, execute
from simcore.engine.walk import engine_parts
from simcore.errors import SimcoreError
from simcore.graph.schedules import B, F, peak_in_flight, rank_order, training_graph
from simcore.graph.training_flatten import TrainingFlattener
from simcore.ops.backward import is_attention_core
from simcore.ops.op import ATTN_PREFILL, COMM, GEMM, MEMORY, nbytes
from simcore.ops.training import OPTIMIZER_STATE_BYTES, TrainingStage

GIB = 1024**3


@dataclass
class TrainingMemory:
    """Bytes per GPU on the fullest pipeline rank."""

    rank: int
    weights: float
    gradients: float
    optimizer_state: float
    activations: float
    runtime: float  # CUDA context, NCCL buffers (engine.runtime_overhead_gib)
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer_state + self.activations + self.runtime

    def parts(self) -> dict[str, float]:
        return {"weights": self.weights, "gradients": self.gradients, "optimizer_state": self.optimizer_state,
                "activations": self.activations}


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


def saved_bytes(stage: TrainingStage) -> tuple[float, float]:
    """(held, transient): activation bytes one micro-batch leaves on this chunk until its backward,
    and the working set its backward adds once. Each op keeps its input (a GEMM its input rows,
    sharded over TP after a sequence-parallel all-gather as in Megatron-LM; attention Q, K, V and O;
    elementwise ops their input); recompute 'selective' drops what the
    attention core keeps, 'full' keeps each layer's input, and one layer's activations exist again
    while that layer is recomputed."""
    w, tp = stage.w, stage.run.par.tp
    layer_in = stage.batch.tokens * stage.m.hidden * stage.a / (tp if stage.sp else 1)

    def kept(op) -> float:
        if op.kind == COMM:
            return 0.0
        if w.recompute == "selective" and is_attention_core(op):
            return 0.0
        if op.family == GEMM:
            n, k = op.shape[1], op.shape[2]  # grouped expert GEMMs carry a fourth field (active experts)
            return op.act_bytes * k / (k + n)
        if op.family == ATTN_PREFILL:
            return op.act_bytes
        return op.act_bytes / 2 if op.family == MEMORY else 0.0

    per_layer: dict[int, float] = {}
    prev = None
    for op in stage.forward:
        # under sequence parallelism a GEMM keeps its input sharded and gathers it again in backward
        regathered = prev is not None and prev.kind == COMM and prev.collective == "all_gather" and stage.sp
        per_layer[op.layer] = per_layer.get(op.layer, 0.0) + kept(op) / (tp if regathered else 1)
        prev = op
    if w.recompute != "full":
        return sum(per_layer.values()), 0.0
    body = [v for layer, v in per_layer.items() if layer in stage.layers]
    edges = sum(v for layer, v in per_layer.items() if layer not in stage.layers)
    return len(body) * layer_in + edges, max(body, default=0.0)


def training_memory(run: Run, stages: list[TrainingStage], orders: list[list]) -> TrainingMemory:
    p, w = run.par, run.experiment.workload
    dp = p.dp * w.context_parallel  # context-parallel ranks hold the same weights: ZeRO shards over both
    weight_b = nbytes(run.weight_dtype)
    grad_b = 4.0  # fp32 main grads (Megatron-LM's main_grad buffer)
    state_b = OPTIMIZER_STATE_BYTES[w.optimizer]
    saved = {s.vstage: saved_bytes(s) for s in stages}
    held = {vs: v[0] for vs, v in saved.items()}
    best = None
    for rank in range(p.pp):
        mine = [s for s in stages if s.vstage % p.pp == rank]
        full = sum(s.params for s in mine)
        rep = sum(s.replicated_params for s in mine)
        unique = full - rep

        def shard(flag: bool) -> float:
            return unique + rep / dp if flag else full

        mem = TrainingMemory(
            rank,
            weights=shard(w.zero_stage >= 3) * weight_b,
            gradients=shard(w.zero_stage >= 2) * grad_b,
            optimizer_state=shard(w.zero_stage >= 1) * state_b,
            activations=peak_in_flight(orders[rank], held.get) + max(saved[s.vstage][1] for s in mine),
            runtime=run.experiment.engine.runtime_overhead_gib * GIB,
            capacity=run.system.gpu.memory.capacity,
        )
        if best is None or mem.total > best.total:
            best = mem
    return best


def check_fits(run: Run, mem: TrainingMemory) -> None:
    if mem.total <= mem.capacity:
        return
    name, largest = max(mem.parts().items(), key=lambda kv: kv[1])
    parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in mem.parts().items())
    raise SimcoreError(
        f"training does not fit: {mem.total / GIB:.1f} GiB per GPU on pipeline rank {mem.rank} ({parts}, runtime "
        f"{mem.runtime / GIB:.1f} GiB) exceeds the {mem.capacity / GIB:.1f} GiB of {run.system.gpu.name}; largest: "
        f"{name} {largest / GIB:.1f} GiB; allowed: a configuration that fits (raise zero_stage, tp or pp, use "
        f"recompute, or lower micro_batch)")


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
        check_fits(self.run, mem)
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
        for u in g.graph["order"]:
            ops = g.nodes[u]["ops"]
            hw += sum(op.flops for op in ops if op.kind != COMM)
        scale = p.tp * p.dp * self.w.context_parallel
        return TrainingResult(
            self.run, step, mem, crit, bubble,
            model_flops=3 * fwd * self.m * scale,
            hardware_flops=hw * scale,
            tokens=self.w.global_batch * self.w.sequence_length,
            micro_batches=self.m, ranks=plan.ranks, events=plan.events, stages=self.stages)


def simulate(run: Run) -> TrainingResult:
    return TrainingSimulator(run).simulate()



