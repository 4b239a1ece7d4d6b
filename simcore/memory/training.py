"""Memory per GPU of a training step: weights, gradients and optimizer state sharded by the
ZeRO stage, and the activations a pipeline schedule keeps in flight (docs/training.md, "Memory").

The training driver (simcore.run.training) checks a step with `check_training_fits` before
simulating it; `simcore plan --training` and `recommend --training` read the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simcore.config.experiment import Run
from simcore.errors import SimcoreError
from simcore.ops.backward import is_attention_core
from simcore.ops.op import ATTN_PREFILL, COMM, GEMM, MEMORY, nbytes
from simcore.ops.training import B, F, OPTIMIZER_STATE_BYTES, TrainingStage

GIB = 1024**3


def peak_in_flight(order: list, act: Callable[[int], float]) -> float:
    """Most activation bytes a rank holds at once, walking its schedule `order` of (phase,
    micro-batch, virtual stage) units: forwards whose backward has not run yet."""
    held = peak = 0.0
    for phase, _, vs in order:
        if phase == F:
            held += act(vs)
            peak = max(peak, held)
        elif phase == B:
            held -= act(vs)
    return peak


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

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    @property
    def largest(self) -> tuple[str, float]:
        """The biggest of weights, gradients, optimizer_state and activations, with its bytes."""
        return max(self.parts().items(), key=lambda kv: kv[1])

    def as_dict(self) -> dict:
        """The `memory_per_gpu_bytes` object of training results and `simcore plan --training`."""
        return {**self.parts(), "runtime_overhead": self.runtime, "total": self.total, "capacity": self.capacity,
                "free": self.capacity - self.total, "pipeline_rank": self.rank}

    def parts(self) -> dict[str, float]:
        return {"weights": self.weights, "gradients": self.gradients, "optimizer_state": self.optimizer_state,
                "activations": self.activations}


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
            # an fp8 GEMM keeps only the fp8 transpose of its input for the weight gradient (Transformer
            # Engine's _Linear.forward saves `inputmat_t` in place of the 16-bit input)
            width = nbytes("fp8") / stage.a if op.dtype == "fp8" else 1.0
            return op.act_bytes * k / (k + n) * width
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


def training_memory_by_rank(run: Run, stages: list[TrainingStage], orders: list[list]) -> list[TrainingMemory]:
    """Bytes per GPU of each pipeline rank: its chunks' weights, gradients and optimizer state
    (sharded over dp x cp by the ZeRO stage), and the peak of the activations its schedule
    `orders[rank]` keeps in flight."""
    p, w = run.par, run.experiment.workload
    dp = p.dp * w.context_parallel  # context-parallel ranks hold the same weights: ZeRO shards over both
    weight_b = nbytes(run.weight_dtype)
    # Megatron-core's DDP grad buffer: fp32 when gradients are reduced in fp32, else the 16-bit weight dtype
    grad_b = nbytes(w.grad_reduce_dtype)
    state_b = OPTIMIZER_STATE_BYTES[w.optimizer]
    saved = {s.vstage: saved_bytes(s) for s in stages}
    held = {vs: v[0] for vs, v in saved.items()}
    out = []
    for rank in range(p.pp):
        mine = [s for s in stages if s.vstage % p.pp == rank]
        full = sum(s.params for s in mine)
        rep = sum(s.replicated_params for s in mine)
        unique = full - rep

        def shard(flag: bool) -> float:
            return unique + rep / dp if flag else full

        out.append(TrainingMemory(
            rank,
            weights=shard(w.zero_stage >= 3) * weight_b,
            gradients=shard(w.zero_stage >= 2) * grad_b,
            optimizer_state=shard(w.zero_stage >= 1) * state_b,
            activations=peak_in_flight(orders[rank], held.get) + max(saved[s.vstage][1] for s in mine),
            runtime=run.experiment.engine.runtime_overhead_gib * GIB,
            capacity=run.system.gpu.memory.capacity,
        ))
    return out


def training_memory(run: Run, stages: list[TrainingStage], orders: list[list]) -> TrainingMemory:
    """The fullest pipeline rank's memory."""
    return fullest(training_memory_by_rank(run, stages, orders))


def fullest(ranks: list[TrainingMemory]) -> TrainingMemory:
    """The rank that decides whether a layout fits (the first of equals)."""
    return max(ranks, key=lambda m: (m.total, -m.rank))


def check_training_fits(run: Run, mem: TrainingMemory) -> None:
    """A SimcoreError naming every component and the largest when `mem` exceeds the GPU."""
    if mem.fits:
        return
    name, largest = mem.largest
    parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in mem.parts().items())
    raise SimcoreError(
        f"training does not fit: {mem.total / GIB:.1f} GiB per GPU on pipeline rank {mem.rank} ({parts}, runtime "
        f"{mem.runtime / GIB:.1f} GiB) exceeds the {mem.capacity / GIB:.1f} GiB of {run.system.gpu.name}; largest: "
        f"{name} {largest / GIB:.1f} GiB; allowed: a configuration that fits (raise zero_stage, tp or pp, use "
        f"recompute, or lower micro_batch)")
