"""Memory per GPU the way an inference engine accounts it: weights, KV cache, activations, overhead.

Two questions share these parts. A static run asks "does this batch fit?" (`memory_per_gpu`,
`check_fits`). The capacity planner and the serving simulator ask what the engine asks at
start-up (`kv_budget`, built on `simcore.memory.engines.engine_memory`): after the weights, the
profiled activation peak and the memory outside PyTorch, how much is left for the KV cache, how
many blocks is that, how many requests fit. docs/memory.md gives the sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simcore.config.experiment import Run
from simcore.errors import SimcoreError
from simcore.memory.engines import EngineMemory, engine_memory
from simcore.memory.kv_placement import Placement, place
from simcore.memory.speculative import blocks_with_draft, draft_kv_bytes, draft_weight_bytes
from simcore.memory.weights import stage_weight_bytes
from simcore.ops.builder import stage_ops
from simcore.ops.kv import kv_bytes
from simcore.ops.op import nbytes
from simcore.ops.passes import Pass, stage_layers
from simcore.config.hardware import GIB

MAX_NUM_BATCHED_TOKENS = 8192  # vLLM's default token budget of one forward pass (its profile run)
MAX_NUM_SEQS = 256  # vLLM's default sequences per step below 70 GiB (1024 above: vllm_defaults)
BLOCK_SIZE = 16  # vLLM's default KV block, in tokens
SAMPLER_FP32_COPIES = 3  # static runs: logits, probabilities and log-probabilities, fp32, one row per sequence


def vllm_defaults(gpu) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) `vllm serve` picks (v0.11 vllm/engine/arg_utils.py): larger
    defaults on GPUs of at least 70 GiB other than the A100."""
    big = gpu.memory.capacity >= 70 * GIB and "a100" not in gpu.name.lower()
    return (8192, 1024) if big else (2048, 256)


@dataclass(frozen=True)
class MemoryPerGPU:
    """Bytes on the busiest GPU (the stage that needs the most)."""

    weights: float
    kv_cache: float
    activations: float
    overhead: float
    capacity: float  # usable: device memory x gpu_memory_utilization
    host_kv_cache: float = 0.0  # per GPU, when inference.kvcache_type is host

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead

    def as_dict(self) -> dict[str, float]:
        return {"weights": self.weights, "kv_cache": self.kv_cache, "activations": self.activations}


def activation_peak(ops) -> float:
    """Largest transient: the biggest op's inputs + outputs plus the residual stream it sits on."""
    return max((op.act_bytes for op in ops), default=0.0)


def stage_activation_bytes(run: Run, stage: int, ps: Pass, seqs: int) -> float:
    """Peak transient of a forward pass on one stage: the largest op, the residual stream, and on
    the last stage the sampler's fp32 logits for `seqs` sequences."""
    m = run.model
    acts = activation_peak(stage_ops(run, stage, ps)) + 2 * ps.tokens * m.hidden * nbytes(run.act_dtype)
    if stage == run.par.pp - 1:
        acts += seqs * m.vocab * 4 * SAMPLER_FP32_COPIES
    return acts


def memory_per_gpu(run: Run, batch: int, prompt: int, context: int) -> MemoryPerGPU:
    """Per-GPU memory for `batch` sequences whose cache grows to `context` tokens."""
    m, p, e = run.model, run.par, run.experiment.engine
    worst = None
    on_host = run.experiment.inference.kvcache_type == "host"
    host_cache = 0.0
    placed = run.experiment.inference.kv_placement.policy != "hbm"
    for stage, layers in enumerate(stage_layers(m.layers, p.pp)):
        weights = stage_weight_bytes(run, stage)
        cache = kv_bytes(m, -(-batch // p.attention_dp), context, run.kv_dtype, p.tp, layers)  # per attention rank
        if on_host:  # the cache lives in host memory
            host_cache, cache = max(host_cache, cache), 0.0
        acts = stage_activation_bytes(run, stage, Pass("prefill", batch, prompt), batch)
        if stage == p.pp - 1 and run.experiment.speculative.enabled:  # a drafter sits with the last stage
            weights += draft_weight_bytes(run)
            cache += draft_kv_bytes(run, -(-batch // p.attention_dp), context)
        if placed:  # spread over tiers by the placement policy: HBM holds its share, host its own
            res = stage_placement(run, stage, batch, prompt, context, weights, acts).resident()
            cache, host_cache = res["hbm"], max(host_cache, res["host"])
        here = (weights, cache, acts)
        if worst is None or sum(here) > sum(worst):
            worst = here
    return MemoryPerGPU(
        *worst,
        overhead=e.runtime_overhead_gib * GIB,
        capacity=run.system.gpu.memory.capacity * e.gpu_memory_utilization,
        host_kv_cache=host_cache,
    )


def stage_placement(run: Run, stage: int, batch: int, prompt: int, context: int, weights: float | None = None,
                    acts: float | None = None) -> Placement:
    """The KV placement policy over one stage's layers: HBM has what weights, the activation peak and the
    runtime overhead leave of its usable capacity (inference.kv_placement, docs/serving.md)."""
    m, p, e = run.model, run.par, run.experiment.engine
    layers = stage_layers(m.layers, p.pp)[stage]
    weights = stage_weight_bytes(run, stage) if weights is None else weights
    if acts is None:
        acts = stage_activation_bytes(run, stage, Pass("prefill", batch, prompt), batch)
    free = run.system.gpu.memory.capacity * e.gpu_memory_utilization - e.runtime_overhead_gib * GIB - weights - acts
    per = [kv_bytes(m, -(-batch // p.attention_dp), context, run.kv_dtype, p.tp, range(i, i + 1)) for i in layers]
    return place(run, per, free)


def static_memory(run: Run) -> MemoryPerGPU:
    """Memory per GPU of a static-batch experiment (its whole batch at its final length), checked."""
    w = run.experiment.workload
    mem = memory_per_gpu(run, w.batch_size, w.prompt_tokens, w.prompt_tokens + w.output_tokens)
    check_fits(run, mem)
    return mem


def check_fits(run: Run, mem: MemoryPerGPU) -> None:
    p = run.par
    g = lambda b: f"{b / GIB:.1f} GiB"  # noqa: E731
    node = run.system.cluster
    gpus_here = min(run.gpus, node.gpus_per_node)
    host = node.host.memory_gib * GIB
    if mem.host_kv_cache * gpus_here > host:
        raise SimcoreError(
            f"inference.kvcache_type = host: the KV cache needs {g(mem.host_kv_cache * gpus_here)} of host memory "
            f"on a node ({gpus_here} GPUs x {g(mem.host_kv_cache)}) but {node.name} has {node.host.memory_gib:g} GiB; "
            f"lower the batch or context, or keep the cache in hbm"
        )
    if mem.total <= mem.capacity:
        return
    raise SimcoreError(
        f"{run.model.name} does not fit on {run.system.gpu.name} at tp {p.tp} pp {p.pp} ep {p.ep}: needs "
        f"{g(mem.total)} per GPU (weights {g(mem.weights)}, KV cache {g(mem.kv_cache)}, activations "
        f"{g(mem.activations)}, runtime {g(mem.overhead)}) but {g(mem.capacity)} is available "
        f"({run.system.gpu.memory.capacity_gib:g} GiB x gpu_memory_utilization "
        f"{run.experiment.engine.gpu_memory_utilization:g}); raise tp or pp, lower the batch, or quantize"
    )


# -- the engine's KV cache budget (capacity planner) ---------------------------------------


@dataclass(frozen=True)
class StageBudget:
    """One pipeline stage as each of its GPUs sees it."""

    layers: range
    weights: float
    activations: float
    kv_capacity: float  # bytes left for the cache (negative: the stage does not fit at all)


@dataclass(frozen=True)
class KVBudget:
    """What is left for the KV cache once weights, activations and overhead are placed.

    Every figure is per GPU. With pipeline stages each stage has its own budget; like vLLM
    (which takes the smallest block count over its workers) the stage with the fewest blocks binds.
    """

    run: Run
    capacity: float  # what the engine lets itself use (vLLM: device memory x gpu_memory_utilization)
    overhead: float  # memory outside PyTorch's allocator (NCCL buffers, kernel images, cuBLAS handles)
    stages: tuple[StageBudget, ...]
    block_size: int
    max_num_batched_tokens: int
    max_num_seqs: int
    memory: EngineMemory | None = None  # the engine's own breakdown the budget came from

    def bytes_per_token(self, stage: StageBudget, dtype: str | None = None) -> float:
        """Cache bytes one token takes on a GPU of `stage` (no window cap: a block holds whole tokens)."""
        return kv_bytes(self.run.model, 1, 1, dtype or self.run.kv_dtype, self.run.par.tp, stage.layers)

    def stage_blocks(self, stage: StageBudget, dtype: str | None = None) -> int:
        if stage.kv_capacity <= 0:
            return 0
        return math.floor(stage.kv_capacity / (self.block_size * self.bytes_per_token(stage, dtype)))

    @property
    def binding(self) -> StageBudget:
        return min(self.stages, key=lambda s: (self.stage_blocks(s), s.kv_capacity))

    @property
    def weights(self) -> float:
        return self.binding.weights

    @property
    def activations(self) -> float:
        return self.binding.activations

    @property
    def kv_capacity(self) -> float:
        return max(0.0, self.binding.kv_capacity)

    @property
    def fits(self) -> bool:
        """The model itself fits: every stage has room for at least one cache block."""
        return self.blocks() > 0

    def blocks(self, dtype: str | None = None) -> int:
        return min(self.stage_blocks(s, dtype) for s in self.stages)

    def tokens(self, dtype: str | None = None) -> int:
        return self.blocks(dtype) * self.block_size

    def kv_bytes_per_token(self, dtype: str | None = None) -> float:
        return self.bytes_per_token(self.binding, dtype)

    def request_bytes(self, context: int, dtype: str | None = None, stage: StageBudget | None = None) -> float:
        """Cache bytes of one request of `context` tokens on a GPU of `stage` (sliding layers capped)."""
        s = stage or self.binding
        return kv_bytes(self.run.model, 1, context, dtype or self.run.kv_dtype, self.run.par.tp, s.layers)

    def max_concurrent(self, context: int, dtype: str | None = None) -> int:
        """Requests of `context` tokens whose caches fit together: floor(capacity / per-request bytes)."""
        return min(
            max(0, math.floor(s.kv_capacity / self.request_bytes(context, dtype, s))) for s in self.stages
        )

    def max_model_len(self, limit: int, dtype: str | None = None) -> int:
        """Longest context (at most `limit`) one request can hold alone; 0 when nothing fits."""
        def fits(n: int) -> bool:
            return all(self.request_bytes(n, dtype, s) <= s.kv_capacity for s in self.stages)

        if not fits(1):
            return 0
        lo, hi = 1, limit
        if fits(hi):
            return hi
        while hi - lo > 1:  # request bytes only grow with the context
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    def needed(self, stage: StageBudget) -> float:
        """Bytes a GPU of `stage` needs before any cache."""
        return self.capacity - stage.kv_capacity


def kv_budget(run: Run, max_num_batched_tokens: int = MAX_NUM_BATCHED_TOKENS, max_num_seqs: int = MAX_NUM_SEQS,
              block_size: int = BLOCK_SIZE, engine: str = "vllm", **flags) -> KVBudget:
    """The engine's start-up accounting (`engine_memory`) as a KV budget per stage: what is left for
    the cache after weights, the profiled activation peak and non-torch memory. flags: the engine's
    own (e.g. kv_cache_dtype, enforce_eager); vLLM's gpu_memory_utilization is the experiment's."""
    if engine == "vllm":
        flags = {"gpu_memory_utilization": run.experiment.engine.gpu_memory_utilization,
                 "max_num_batched_tokens": max_num_batched_tokens, "max_num_seqs": max_num_seqs,
                 "block_size": block_size, **flags}
    elif engine == "sglang":
        flags = {"chunked_prefill_size": max_num_batched_tokens, "page_size": block_size, **flags}
    else:
        flags = {"max_num_tokens": max_num_batched_tokens, "max_batch_size": max_num_seqs,
                 "tokens_per_block": block_size, **flags}
    mem = engine_memory(run, engine, **flags)
    stages = tuple(StageBudget(s.layers, s.weights, s.activation, s.kv) for s in mem.stages)
    return KVBudget(run, mem.budget, mem.non_torch, stages, block_size, max_num_batched_tokens, max_num_seqs, mem)


FRACTION_FLAG = {"sglang": "mem_fraction_static", "trtllm": "free_gpu_memory_fraction"}  # vLLM: kv_budget reads it


def replica_kv(run: Run, max_num_batched_tokens: int, max_num_seqs: int, block_size: int,
               engine: str) -> tuple[int, KVBudget]:
    """(KV blocks of one serving replica, the budget of one of its attention-DP ranks). The engine's start-up
    profile runs per attention-DP rank with its share of the replica's limits; a drafter's weights and cache
    share the budget (blocks_with_draft); each rank caches its own sequences. engine.gpu_memory_utilization, where
    the experiment sets it, is the engine's memory fraction: vLLM's flag of that name, SGLang's mem_fraction_static,
    TensorRT-LLM's free_gpu_memory_fraction (unset, SGLang and TensorRT-LLM keep their own defaults)."""
    adp = run.par.attention_dp
    flags = {}
    if "gpu_memory_utilization" in run.experiment.engine.model_fields_set and engine in FRACTION_FLAG:
        flags[FRACTION_FLAG[engine]] = run.experiment.engine.gpu_memory_utilization
    budget = kv_budget(run, -(-max_num_batched_tokens // adp), -(-max_num_seqs // adp), block_size, engine, **flags)
    return blocks_with_draft(budget) * adp, budget
