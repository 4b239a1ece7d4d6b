"""Closed-form walk over one rank's ordered op list: the analytical mode's stage time.

Ops run back to back on the rank's stream, except what the overlap policy lets overlap:
- kv_fetch: a layer's KV fetch runs under the ops since the previous fetch, but only in
  bandwidth they leave idle: for a cache in HBM, the time they are not memory-bound; for a
  cache in host memory (its own link), their whole duration;
- tp_comm: a collective cut into k chunks overlaps the ops that consume it, up to and
  including the next GEMM: collective a and consumers b take max(a, b) + min(a, b) / k;
- pp_comm: the pipeline send leaves the stage's stream (the engine puts it on the comm
  stream between stages), so it adds nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.cost.roofline import Pricer
from simcore.engine.policies import COMM_STREAM, COPY, PREFETCH, OverlapPolicy
from simcore.ops.op import COMM, GEMM, Op


@dataclass
class Timed:
    op: Op
    duration: float  # the op's own time
    exposed: float  # the part that adds to the rank's time (less than duration when overlapped)
    bound: str
    memory_s: float = 0.0  # the HBM (or link) part of the duration


@dataclass
class Walk:
    ops: list[Timed] = field(default_factory=list)
    host_stall: float = 0.0  # time the GPU waits for the host to launch kernels (no CUDA graphs)

    @property
    def time(self) -> float:
        return sum(t.exposed for t in self.ops) + self.host_stall

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self.ops:
            out[t.op.kind] = out.get(t.op.kind, 0.0) + t.exposed
        if self.host_stall:
            out["host_launch"] = self.host_stall
        return out

    def kv_bytes(self, kind: str) -> float:
        return sum(t.op.kv_bytes for t in self.ops if t.op.kind == kind)


@dataclass
class EngineParts:
    """What prices a run's passes, set up from its experiment in one place (static runs and serving)."""

    pricer: Pricer
    policy: OverlapPolicy
    launch_s: float  # host time per kernel launch; 0 with CUDA graphs
    builders: list  # one StageBuilder per pipeline stage


def engine_parts(run) -> EngineParts:
    from simcore.engine.policies import get_policy
    from simcore.ops.builder import StageBuilder

    engine = run.experiment.engine
    policy = get_policy(engine.overlap_policy)
    if run.experiment.inference.kvcache_fetch_overlap:
        policy = policy.with_overlap("kv_fetch")
    builders = [StageBuilder(run, s) for s in range(run.par.pp)]
    if run.experiment.inference.kv_placement.policy != "hbm":
        place_kv(run, builders)
    return EngineParts(
        Pricer(run.system, custom_all_reduce=engine.all_reduce == "custom"),
        policy,
        0.0 if engine.cuda_graphs else engine.kernel_launch_us * 1e-6,
        builders,
    )


def place_kv(run, builders) -> None:
    """Tell each stage's builder where its layers' KV lives (inference.kv_placement; static batches)."""
    from simcore.errors import SimcoreError
    from simcore.memory.budget import stage_placement

    w = run.experiment.workload
    if w.kind != "static":
        raise SimcoreError(f"field 'inference.kv_placement.policy' = {run.experiment.inference.kv_placement.policy!r}: "
                           "static workloads only for now; serving runs keep the cache in HBM (and serving.host_tier)")
    for b in builders:
        pl = stage_placement(run, b.stage, w.batch_size, w.prompt_tokens, w.prompt_tokens + w.output_tokens)
        b.kv_split = {layer: pl.split(k) for k, layer in enumerate(b.layers)}
        b.kv_parallel = pl.parallel


def consumer_end(ops: list[Op], i: int) -> int:
    """Index of the last op that consumes collective i in chunks: through the next GEMM."""
    for j in range(i + 1, len(ops)):
        if ops[j].family == GEMM or ops[j].kind == COMM:
            return j if ops[j].family == GEMM else j - 1
    return len(ops) - 1


def walk(ops: list[Op], pricer: Pricer, policy: OverlapPolicy, launch_s: float = 0.0) -> Walk:
    """launch_s: host time per kernel launch when kernels are not replayed from a CUDA graph;
    the host runs ahead of the GPU, so it only adds time when launching outlasts the work."""
    out = Walk()
    hbm_slack = link_slack = 0.0  # time since the last fetch that HBM / the host link sat idle
    gather_slack = None  # main-stream time since the previous ZeRO-3 weight gather (None before the first)
    for op in ops:
        cost = pricer.cost(op)
        out.ops.append(Timed(op, cost.total, cost.total, cost.bound, cost.memory_s))
    timed = out.ops
    for i, t in enumerate(timed):
        stream = policy.stream_for(t.op)
        if stream == PREFETCH:  # hidden under the compute since the previous gather was issued
            t.exposed = max(0.0, t.duration - (gather_slack or 0.0))
            gather_slack = 0.0
            continue
        if stream == COPY:
            t.exposed = max(0.0, t.duration - (link_slack if t.op.tier == "host" else hbm_slack))
            hbm_slack = link_slack = 0.0
            continue
        if stream == COMM_STREAM:
            k = policy.chunks_for(t.op)
            if k == 1:  # a pipeline send: it travels between stages, off this stream
                t.exposed = 0.0
            else:
                a, b = t.duration, sum(c.duration for c in timed[i + 1 : consumer_end(ops, i) + 1])
                t.exposed = max(a, b) + min(a, b) / k - b
        hbm_slack += t.duration - t.memory_s
        link_slack += t.duration
        if gather_slack is not None:
            gather_slack += t.exposed
    if launch_s:
        kernels = sum(1 for op in ops if op.kernel)
        out.host_stall = max(0.0, kernels * launch_s - out.time)
    return out


def exposes_whole(policy: OverlapPolicy) -> bool:
    """Whether every op is exposed whole under `policy` (nothing overlaps), so a stage's time is a plain sum."""
    return not policy.overlaps and type(policy) is OverlapPolicy


def layer_segments(builder, batch) -> list[tuple[list[Op], int]]:
    """A stage's ops as (ops, how many times they recur): the prologue, one layer per class of identical
    layers (StageBuilder.layer_classes) with the class's layer count, the epilogue."""
    return [(builder.prologue(batch), 1),
            *((builder.layer_ops(layer, batch), count) for layer, count in builder.layer_classes()),
            (builder.epilogue(batch), 1)]


def class_totals(builder, batch, pricer: Pricer, launch_s: float = 0.0) -> tuple[tuple[float, dict[str, float]], Op | None]:
    """(walk_totals of a stage's ops but its trailing pipeline send, that send) where nothing overlaps
    (exposes_whole), without building every layer: one layer per class (StageBuilder.layer_classes) is
    priced and counted as many times as the class has layers. Equal to walk_totals but for the order of
    the sums (within 1e-15 relative, tested)."""
    segments = layer_segments(builder, batch)
    tail = segments[-1][0]
    send = tail[-1] if tail and tail[-1].collective == "send_recv" else None
    if send is not None:
        segments[-1] = (tail[:-1], 1)
    cost = pricer.cost
    time, kernels = 0.0, 0
    kinds: dict[str, float] = {}
    for ops, count in segments:
        part: dict[str, float] = {}
        for op in ops:
            part[op.kind] = part.get(op.kind, 0.0) + cost(op).total
        for kind, t in part.items():
            kinds[kind] = kinds.get(kind, 0.0) + count * t
            time += count * t
        kernels += count * sum(1 for op in ops if op.kernel)
    if launch_s:
        stall = max(0.0, kernels * launch_s - time)
        time += stall
        if stall:
            kinds["host_launch"] = stall
    return (time, kinds), send


def walk_totals(ops: list[Op], pricer: Pricer, policy: OverlapPolicy, launch_s: float = 0.0
                ) -> tuple[float, dict[str, float]]:
    """walk(...).time and .by_kind(), without keeping a per-op walk: what a stage-level event needs.
    Without overlaps every op is exposed whole, so it is one pass over the prices (same sums, same order)."""
    if not exposes_whole(policy):  # overlaps (or a policy's own streams) need the walk
        w = walk(ops, pricer, policy, launch_s)
        return w.time, w.by_kind()
    cost = pricer.cost
    time = 0
    kinds: dict[str, float] = {}
    for op in ops:
        t = cost(op).total
        time += t
        kinds[op.kind] = kinds.get(op.kind, 0.0) + t
    if launch_s:
        stall = max(0.0, sum(1 for op in ops if op.kernel) * launch_s - time)
        time += stall
        if stall:
            kinds["host_launch"] = stall
    else:
        time += 0.0
    return time, kinds


def stage_time(builder, batch, pricer: Pricer, policy: OverlapPolicy, launch_s: float = 0.0) -> float:
    """A stage's walk time for `batch` without building every layer: one layer per class
    (StageBuilder.layer_classes) is walked twice and its second walk, whose overlap slack comes
    from a layer like it, stands for the class's other layers. Equal to walk(builder.ops(batch))
    when nothing overlaps (tested); for long request streams, where each new batch shape would
    otherwise build and price every layer."""
    seq: list[Op] = builder.prologue(batch)
    repeats: list[tuple[int, int, int]] = []  # (start of the second copy, its length, extra copies)
    for layer, count in builder.layer_classes():
        ops = builder.layer_ops(layer, batch)
        copies = min(count, 2)
        seq += ops * copies
        if count > 2:
            repeats.append((len(seq) - len(ops), len(ops), count - 2))
    seq += builder.epilogue(batch)
    w = walk(seq, pricer, policy)
    time = w.time
    kernels = sum(1 for op in seq if op.kernel)
    for start, length, extra in repeats:
        second = w.ops[start : start + length]
        time += extra * sum(t.exposed for t in second)
        kernels += extra * sum(1 for t in second if t.op.kernel)
    return max(time, kernels * launch_s)
