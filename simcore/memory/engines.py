"""Each engine's start-up memory accounting: what it subtracts from device memory before the KV
cache, and how many KV blocks that leaves. One function, `engine_memory`, answers for every engine;
the planner prints it and the serving simulator takes its block count from it.

Sources, versions and the steps each engine takes are in docs/memory.md.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

from simcore.config.experiment import Run
from simcore.config.hardware import GIB
from simcore.errors import SimcoreError
from simcore.memory.activations import forward_peak, profile_peak
from simcore.memory.weights import stage_weight_bytes
from simcore.ops.kv import kv_bytes, state_bytes
from simcore.ops.op import nbytes
from simcore.ops.passes import stage_layers
from simcore.ops.weight_format import marlin_moe

ENGINES = ("vllm", "sglang", "trtllm")

# -- constants fitted on ../shared/calibration/vllm_memory_h100.json (vLLM v0.11, H100) ---------
# Memory outside PyTorch's allocator that the profile run adds: kernel images loaded on first use
# and cuBLAS/cuBLASLt handles. Mean of the three tp-1 rows (0.13, 0.14, 0.13 GiB).
NON_TORCH_BASE = 0.133 * GIB
# Each NCCL communicator of more than one rank (the tp group, the pp group) allocates its channel
# buffers on first use: the tp-2 row's 0.54 GiB minus the base.
NCCL_GROUP = 0.407 * GIB
# CUDA-graph capture: the graphs' private pool and graph objects, less what the first capture's
# empty_cache() hands back (the cached blocks of the warm-up forward at max_num_batched_tokens).
# The pool term is the mean over the four rows of (logged cudagraph + that forward's live set).
CUDAGRAPH_POOL = 0.48 * GIB
# vLLM's MXFP4 MoE layout on Hopper pads each expert's intermediate dimension to this multiple;
# inferred from the logged weights of gpt-oss-20b (13.47 GiB) and gpt-oss-120b (64.4 GiB).
VLLM_MXFP4_ALIGN = 256
# CUDA context and driver reservations before an engine starts (not visible as free memory).
CUDA_CONTEXT = 0.5 * GIB


@dataclass(frozen=True)
class StageMemory:
    layers: range
    weights: float
    activation: float
    non_torch: float
    cudagraph: float  # taken after the KV cache is sized (vLLM) or reserved inside the budget
    kv: float  # bytes left for the KV cache on one GPU of this stage (negative: does not fit)
    block_bytes: float  # one block of block_size tokens in every layer of the stage
    state: float = 0.0  # linear-attention state pool (Qwen3.5, Qwen3-Next), reserved beside the KV cache


@dataclass(frozen=True)
class EngineMemory:
    """Per-GPU start-up memory of one deployment, in one engine's terms (bytes)."""

    engine: str
    follows: str  # the engine version and source file the accounting follows
    device: float
    budget: float  # what the engine lets itself use: device x utilization (vLLM), ...
    block_size: int
    stages: tuple[StageMemory, ...]
    kv_groups: int  # vLLM KV cache groups (hybrid sliding/full models have more than one)
    flags: dict = field(default_factory=dict)
    log: tuple[str, ...] = ()

    @property
    def binding(self) -> StageMemory:
        return min(self.stages, key=lambda s: (self.stage_blocks(s), s.kv))

    def stage_blocks(self, s: StageMemory) -> int:
        return max(0, math.floor(s.kv / s.block_bytes)) if s.kv > 0 else 0

    @property
    def num_blocks(self) -> int:
        """Blocks of block_size tokens in every layer: the serving simulator's block count."""
        return min(self.stage_blocks(s) for s in self.stages)

    @property
    def kv_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def kv_bytes(self) -> float:
        return max(0.0, self.binding.kv)

    @property
    def weights(self) -> float:
        return self.binding.weights

    @property
    def activation(self) -> float:
        return self.binding.activation

    @property
    def non_torch(self) -> float:
        return self.binding.non_torch

    @property
    def cudagraph(self) -> float:
        return self.binding.cudagraph

    @property
    def state(self) -> float:
        return self.binding.state

    def as_dict(self) -> dict:
        return {"engine": self.engine, "follows": self.follows, "device_bytes": self.device,
                "budget_bytes": self.budget, "weights_bytes": self.weights, "activation_bytes": self.activation,
                "non_torch_bytes": self.non_torch, "cudagraph_bytes": self.cudagraph, "kv_bytes": self.kv_bytes,
                "state_bytes": self.state,
                "num_blocks": self.num_blocks, "kv_tokens": self.kv_tokens, "block_size": self.block_size,
                "kv_cache_groups": self.kv_groups, "flags": dict(self.flags), "log": list(self.log)}


def _block_bytes(run: Run, layers: range, block_size: int, kv_dtype: str) -> float:
    return block_size * kv_bytes(run.model, 1, 1, kv_dtype, run.par.tp, layers)


# Linear-attention (Gated DeltaNet) models keep a fixed-size state per running request beside the KV cache.
# SGLang v0.5 (model_runner.py handle_max_mamba_cache, radix cache on) splits the memory left for caches so
# that state pool / KV pool = mamba_full_memory_ratio (server_args default 0.9); vLLM v1 and TensorRT-LLM give
# every request slot one state (vLLM's hybrid KV cache manager pages it from the same pool; TensorRT-LLM's
# MambaCacheManager holds max_batch_size of them), priced here as max_num_seqs / max_batch_size slots.
SGLANG_MAMBA_FULL_RATIO = 0.9


def state_pool_bytes(run: Run, layers: range, slots: int) -> float:
    """Bytes of `slots` requests' linear-attention state on one GPU of a stage (0 for other models)."""
    return slots * state_bytes(run.model, run.par.tp, layers) if run.model.is_hybrid_linear else 0.0


def non_torch_bytes(run: Run) -> float:
    p = run.par
    return NON_TORCH_BASE + NCCL_GROUP * ((p.tp > 1) + (p.pp > 1))


def kv_cache_groups(run: Run) -> int:
    """vLLM v1 groups attention layers by kind; a hybrid model with full and sliding-window layers of
    one page size gets one group per kind-sized chunk (gpt-oss: 2 groups sharing one block pool)."""
    kinds = [run.model.layer_kinds.count(k) for k in set(run.model.layer_kinds) - {"linear"}]  # no KV: a state
    smallest = min(kinds)
    return sum(n // smallest for n in kinds)


def _gib(b: float) -> str:
    return f"{b / GIB:.2f} GiB"


def vllm_memory(run: Run, gpu_memory_utilization: float = 0.9, max_num_batched_tokens: int = 8192,
                max_num_seqs: int = 1024, block_size: int = 16, kv_cache_dtype: str | None = None,
                enforce_eager: bool = False) -> EngineMemory:
    """vLLM v1 (v0.11) Worker.determine_available_memory: KV = total x gpu_memory_utilization - weights
    - torch peak of the profile run - non-torch increase. CUDA graphs are captured after the KV cache
    is allocated, so their memory comes out of the (1 - utilization) headroom, not the cache."""
    kvd = kv_cache_dtype or run.kv_dtype
    device = run.system.gpu.memory.capacity
    budget = device * gpu_memory_utilization
    stages = []
    for stage, layers in enumerate(stage_layers(run.model.layers, run.par.pp)):
        w = stage_weight_bytes(run, stage, expert_align=VLLM_MXFP4_ALIGN, rope_cache=True, marlin=marlin_moe(run, "vllm"))
        peak = profile_peak(run, stage, max_num_batched_tokens, max_num_seqs)
        nt = non_torch_bytes(run)
        cg = 0.0 if enforce_eager else CUDAGRAPH_POOL - peak.forward
        states = state_pool_bytes(run, layers, max_num_seqs)
        stages.append(StageMemory(layers, w, peak.bytes, nt, cg, budget - w - peak.bytes - nt - states,
                                  _block_bytes(run, layers, block_size, kvd), states))
    groups = kv_cache_groups(run)
    mem = EngineMemory("vllm", "vLLM v0.11 vllm/v1/worker/gpu_worker.py determine_available_memory", device, budget,
                       block_size, tuple(stages), groups,
                       {"gpu_memory_utilization": gpu_memory_utilization,
                        "max_num_batched_tokens": max_num_batched_tokens, "max_num_seqs": max_num_seqs,
                        "block_size": block_size, "kv_cache_dtype": kvd, "enforce_eager": enforce_eager})
    s = mem.binding
    log = (f"Model loading took {_gib(s.weights)} memory",
           f"Free memory on device ({_gib(device)} total) on startup. Desired GPU memory utilization is "
           f"({gpu_memory_utilization:g}, {_gib(budget)}). Actual usage is {_gib(s.weights)} for weight, "
           f"{_gib(s.activation)} for peak activation, {_gib(s.non_torch)} for non-torch memory, and "
           f"{_gib(s.cudagraph)} for CUDAGraph memory",
           f"Available KV cache memory: {_gib(mem.kv_bytes)}",
           f"GPU KV cache size: {mem.kv_tokens:,} tokens")
    return _with_log(mem, log)


def sglang_default_fraction(run: Run, chunked_prefill_size: int, cuda_graph_max_bs: int) -> float:
    """SGLang v0.5 ServerArgs._handle_gpu_memory_settings (0.5.3 to 0.5.8): reserve (in MB) constant metadata,
    1.5 MB per chunked-prefill token, 2 MB per CUDA-graph batch slot and 128 MB per GPU of tp x pp, at least
    10 GiB on a GPU above 60 GiB. (Up to 0.5.2 the reserve was a fixed amount per memory bucket: docs/memory.md.)"""
    gpu_mb = run.system.gpu.memory.capacity / 2**20
    reserved = 512 + max(chunked_prefill_size, 2048) * 1.5 + cuda_graph_max_bs * 2 + run.par.tp * run.par.pp / 8 * 1024
    if gpu_mb > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_mb - reserved) / gpu_mb, 3)


def sglang_memory(run: Run, mem_fraction_static: float | None = None, chunked_prefill_size: int = 8192,
                  cuda_graph_max_bs: int | None = None, page_size: int = 1, kv_cache_dtype: str | None = None,
                  disable_cuda_graph: bool = False) -> EngineMemory:
    """SGLang v0.5 ModelRunner.profile_max_num_token: the static pool (weights + KV) is
    mem_fraction_static of the memory free at start; activations and CUDA graphs live in the rest,
    so they are budgeted, not profiled."""
    kvd = kv_cache_dtype or run.kv_dtype
    if cuda_graph_max_bs is None:
        cuda_graph_max_bs = 256 if run.par.tp < 4 else 512  # H100-class default (< 90 GB bucket)
    frac = mem_fraction_static if mem_fraction_static is not None else sglang_default_fraction(
        run, chunked_prefill_size, cuda_graph_max_bs)
    device = run.system.gpu.memory.capacity
    free = device - CUDA_CONTEXT - non_torch_bytes(run)  # free memory measured before the weights load
    stages = []
    for stage, layers in enumerate(stage_layers(run.model.layers, run.par.pp)):
        w = stage_weight_bytes(run, stage)
        reserve = free * (1 - frac)  # activations, CUDA graphs, metadata
        kv = free - w - reserve
        states = 0.0
        if run.model.is_hybrid_linear and kv > 0:  # the state pool takes ratio / (1 + ratio) of the caches' memory
            states = kv * SGLANG_MAMBA_FULL_RATIO / (1 + SGLANG_MAMBA_FULL_RATIO)
            kv /= 1 + SGLANG_MAMBA_FULL_RATIO
        stages.append(StageMemory(layers, w, reserve, non_torch_bytes(run), 0.0, kv,
                                  _block_bytes(run, layers, page_size, kvd), states))
    mem = EngineMemory("sglang", "SGLang v0.5 python/sglang/srt/model_executor/model_runner.py profile_max_num_token",
                       device, free * frac, page_size, tuple(stages), 1,
                       {"mem_fraction_static": frac, "chunked_prefill_size": chunked_prefill_size,
                        "cuda_graph_max_bs": cuda_graph_max_bs, "page_size": page_size, "kv_cache_dtype": kvd,
                        "disable_cuda_graph": disable_cuda_graph})
    s = mem.binding
    kvb = kv_bytes(run.model, mem.kv_tokens, 1, kvd, run.par.tp, s.layers) / 2
    log = (f"Load weight end. mem usage={_gib(s.weights)}",
           f"KV Cache is allocated. #tokens: {mem.kv_tokens}, K size: {kvb / GIB:.2f} GB, V size: {kvb / GIB:.2f} GB",
           f"mem_fraction_static={frac:g}: static pool {_gib(s.weights + mem.kv_bytes + s.state)}, "
           f"reserved for activations and CUDA graphs {_gib(s.activation)}")
    return _with_log(mem, log)


def trtllm_memory(run: Run, free_gpu_memory_fraction: float = 0.9, max_num_tokens: int = 8192,
                  max_batch_size: int = 2048, tokens_per_block: int = 32, kv_cache_dtype: str | None = None,
                  enforce_eager: bool = False) -> EngineMemory:
    """TensorRT-LLM v1.0 PyTorch backend (KvCacheCreator in tensorrt_llm/_torch/pyexecutor/_util.py): after
    loading weights it runs a forward of max_num_tokens, then gives the KV cache free_gpu_memory_fraction
    of what is still free."""
    kvd = kv_cache_dtype or run.kv_dtype
    device = run.system.gpu.memory.capacity
    stages = []
    for stage, layers in enumerate(stage_layers(run.model.layers, run.par.pp)):
        w = stage_weight_bytes(run, stage)
        act = forward_peak(run, stage, max_num_tokens)
        if stage == run.par.pp - 1:  # fp32 logits of the batch's last tokens
            act += min(max_batch_size, max_num_tokens) * run.model.vocab * nbytes("fp32")
        nt = non_torch_bytes(run)
        free = device - CUDA_CONTEXT - w - act - nt
        states = state_pool_bytes(run, layers, max_batch_size)
        stages.append(StageMemory(layers, w, act, nt, 0.0, free * free_gpu_memory_fraction - states,
                                  _block_bytes(run, layers, tokens_per_block, kvd), states))
    mem = EngineMemory("trtllm", "TensorRT-LLM v1.0 tensorrt_llm/_torch/pyexecutor/_util.py KvCacheCreator", device,
                       device, tokens_per_block, tuple(stages), 1,
                       {"free_gpu_memory_fraction": free_gpu_memory_fraction, "max_num_tokens": max_num_tokens,
                        "max_batch_size": max_batch_size, "tokens_per_block": tokens_per_block,
                        "kv_cache_dtype": kvd})
    s = mem.binding
    log = (f"Memory used after loading model weights: {_gib(s.weights)}",
           f"Peak memory during memory usage profiling (torch + non-torch): {_gib(s.activation + s.non_torch)}",
           f"Allocated {mem.kv_bytes / GIB:.2f} GiB for max tokens in paged KV cache ({mem.kv_tokens:,}).")
    return _with_log(mem, log)


def _with_log(mem: EngineMemory, log: tuple[str, ...]) -> EngineMemory:
    return EngineMemory(mem.engine, mem.follows, mem.device, mem.budget, mem.block_size, mem.stages, mem.kv_groups,
                        mem.flags, log)


_MODELS = {"vllm": vllm_memory, "sglang": sglang_memory, "trtllm": trtllm_memory}


_FRACTIONS = ("gpu_memory_utilization", "mem_fraction_static", "free_gpu_memory_fraction")


def _check_flags(engine: str, flags: dict) -> None:
    allowed = [p for p in inspect.signature(_MODELS[engine]).parameters if p != "run"]
    for name, value in flags.items():
        if name not in allowed:
            raise SimcoreError(f"{name} = {value!r}: not a {engine} flag; allowed {', '.join(allowed)}")
        if value is None or isinstance(value, bool) or name == "kv_cache_dtype":
            continue
        if name in _FRACTIONS:
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise SimcoreError(f"{name} = {value!r}: must be a number in (0, 1], e.g. 0.9")
        elif not isinstance(value, int) or value < 1:
            raise SimcoreError(f"{name} = {value!r}: must be a whole number >= 1")


def engine_memory(run: Run, engine: str = "vllm", **flags) -> EngineMemory:
    """Start-up memory of `run`'s deployment under `engine` (vllm, sglang, trtllm) with its flags
    (the keyword names of vllm_memory, sglang_memory, trtllm_memory). Bad flags raise SimcoreError."""
    if engine not in _MODELS:
        raise SimcoreError(f"engine = {engine!r}: allowed {', '.join(ENGINES)}")
    _check_flags(engine, flags)
    return _MODELS[engine](run, **flags)

