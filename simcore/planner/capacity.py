"""Capacity plan of one deployment (model x GPU x tp x pp): the engine's memory budget and
what it buys in KV blocks, concurrent requests and context length; plus what fp8 KV would buy.

Every planner question goes through a Run built the normal way (resolve(validate(Experiment)))
so dtypes, parallelism checks and catalogs are the same as a simulated run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import get_args

from simcore.config.experiment import Experiment, Run, WeightDtype, allowed_tp, pp_problem, resolve, tp_problem
from simcore.config.hardware import load_gpu, profile_record
from simcore.config.model import ModelSpec, load_model
from simcore.config.validation import validate
from simcore.errors import SimcoreError
from simcore.planner.kv_detail import check_context, kv_dtype_for, positive
from simcore.config.hardware import GIB
from simcore.memory import BLOCK_SIZE, ENGINES, KVBudget, kv_budget, vllm_defaults

WEIGHT_DTYPES = get_args(WeightDtype)  # the experiment schema's list, not a copy
UNBOUNDED_CONTEXT = 1 << 24  # search limit for models whose config gives no max_position_embeddings


def check_gpu_mem_util(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise SimcoreError(f"gpu_mem_util = {value!r}: must be a number in (0, 1], e.g. 0.9")
    return float(value)


def check_weights(value: str) -> str:
    if value not in WEIGHT_DTYPES:
        raise SimcoreError(f"weights = {value!r}: allowed {', '.join(WEIGHT_DTYPES)}")
    return value


def check_tp_pp(spec: ModelSpec, tp: int, pp: int) -> None:
    """tp must shard the heads the way vLLM can (the experiment's own rule); pp at most the layers."""
    positive("tp", tp)
    positive("pp", pp)
    why = tp_problem(spec, tp)
    if why:
        raise SimcoreError(f"tp = {tp}: {why}; allowed tp: {', '.join(map(str, find_possible_tp(spec)))}")
    why = pp_problem(spec, pp)
    if why:
        raise SimcoreError(f"pp = {pp}: {why}")


def find_possible_tp(spec: ModelSpec) -> list[int]:
    """TP degrees vLLM accepts: divide the attention heads; divide the KV heads or replicate them evenly."""
    return allowed_tp(spec)


@cache
def build_run(model: str, gpu: str, tp: int = 1, pp: int = 1, weights: str = "auto", kv_dtype: str = "auto",
              gpu_mem_util: float = 0.9) -> Run:
    """A Run for planning: the workload is a placeholder; planners pass their own batch shapes."""
    data = {
        "model": model,
        "hardware": gpu,
        "parallelism": {"tp": tp, "pp": pp},
        "precision": {"weights": weights},
        "inference": {"kvcache_precision": kv_dtype},
        "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 1, "output_tokens": 1},
        "engine": {"gpu_memory_utilization": gpu_mem_util},  # passes are priced one by one (planner/latency.py)
    }
    return resolve(validate(Experiment, data, "planner"))


@cache
def budget_for(model: str, gpu: str, tp: int, pp: int, weights: str, kv_dtype: str, gpu_mem_util: float,
               max_num_batched_tokens: int | None, max_num_seqs: int | None, block_size: int, engine: str = "vllm",
               enforce_eager: bool = False) -> KVBudget:
    """The engine's start-up budget; token budget and batch size default to what vLLM picks on this GPU."""
    run = build_run(model, gpu, tp, pp, weights, kv_dtype, gpu_mem_util)
    tokens, seqs = vllm_defaults(run.system.gpu)
    flags = {"enforce_eager": enforce_eager} if engine == "vllm" else {}
    return kv_budget(run, max_num_batched_tokens or tokens, max_num_seqs or seqs, block_size, engine, **flags)


@dataclass(frozen=True)
class KVPrecisionAdvice:
    current: str  # the cache dtype the plan uses
    per_token_bytes: dict[str, float]  # per GPU, by dtype
    tokens: dict[str, int]  # cache capacity in tokens, by dtype
    max_concurrent: dict[str, int]  # requests of context_len tokens, by dtype
    context_len: int
    gpu_has_fp8: bool
    advice: str

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def kv_precision_advice(budget: KVBudget, context_len: int) -> KVPrecisionAdvice:
    gpu = budget.run.system.gpu
    current = budget.run.kv_dtype
    dtypes = [current] if current == "fp8" else [current, "fp8"]
    per_token = {d: budget.kv_bytes_per_token(d) for d in dtypes}
    tokens = {d: budget.tokens(d) for d in dtypes}
    conc = {d: budget.max_concurrent(context_len, d) for d in dtypes}
    has = gpu.supports("fp8")
    if current == "fp8":
        advice = "the KV cache is already fp8"
    else:
        speed = (f"{gpu.name} has fp8 tensor cores, so fp8 attention also reads half the bytes per decode step"
                 if has else f"{gpu.name} has no fp8 support: vLLM can store fp8 KV there, but it converts in "
                 f"software and gains no speed (simcore refuses fp8 KV on it)")
        advice = (f"fp8 KV halves bytes per token ({per_token[current]:,.0f} -> {per_token['fp8']:,.0f}): "
                  f"{tokens['fp8']:,} tokens instead of {tokens[current]:,}, {conc['fp8']} concurrent requests of "
                  f"{context_len:,} tokens instead of {conc[current]}; {speed}; expect a small accuracy cost "
                  f"(per-tensor scales)")
    return KVPrecisionAdvice(current, per_token, tokens, conc, context_len, has, advice)


@dataclass(frozen=True)
class CapacityPlan:
    budget: KVBudget
    max_model_len: int  # the context every request may reach (requested, or the model's maximum)

    @property
    def run(self) -> Run:
        return self.budget.run

    @property
    def limit(self) -> int:
        return self.run.model.max_position or UNBOUNDED_CONTEXT

    @property
    def request_bytes(self) -> float:
        return self.budget.request_bytes(self.max_model_len)

    @property
    def max_concurrent(self) -> int:
        return self.budget.max_concurrent(self.max_model_len)

    @property
    def max_model_len_fits(self) -> int:
        return self.budget.max_model_len(self.limit)

    @property
    def verdict(self) -> str:
        b = self.budget
        s = b.binding
        if not b.fits:
            return (f"does not fit: weights, activations and runtime need {b.needed(s) / GIB:.2f} GiB per GPU "
                    f"of {b.capacity / GIB:.2f} GiB usable")
        if not self.max_concurrent:
            return (f"fits, but one request of {self.max_model_len:,} tokens needs {self.request_bytes / GIB:.2f} GiB "
                    f"of KV cache per GPU and {b.kv_capacity / GIB:.2f} GiB is left: lower max_model_len to "
                    f"{self.max_model_len_fits:,} or add GPUs")
        return f"fits: {self.max_concurrent} concurrent requests of {self.max_model_len:,} tokens"

    def kv_precision(self) -> KVPrecisionAdvice:
        return kv_precision_advice(self.budget, self.max_model_len)

    def as_dict(self) -> dict:
        """The `simcore plan --json` document (docs/planner.md lists every key)."""
        b, run = self.budget, self.run
        p = run.par
        return {
            "model": run.model.name,
            "gpu": run.system.gpu.name,
            "efficiency_profile": profile_record(run.system.efficiency, run.system.gpu.name),
            "tp": p.tp,
            "pp": p.pp,
            "gpus": p.tp * p.pp,
            "precision": {"weights": run.weight_dtype, "experts": run.expert_dtype, "kv_cache": run.kv_dtype},
            "gpu_memory_utilization": run.experiment.engine.gpu_memory_utilization,
            "engine": b.memory.engine,
            "max_num_batched_tokens": b.max_num_batched_tokens,
            "max_num_seqs": b.max_num_seqs,
            "block_size": b.block_size,
            "memory_per_gpu_bytes": {
                "device": run.system.gpu.memory.capacity,
                "usable": b.capacity,
                "weights": b.weights,
                "activations": b.activations,
                "runtime_overhead": b.overhead,
                "kv_cache": b.kv_capacity,
            },
            "kv_bytes_per_token_per_gpu": b.kv_bytes_per_token(),
            "kv_blocks": b.blocks(),
            "kv_tokens": b.tokens(),
            "max_model_len": self.max_model_len,
            "kv_bytes_per_request": self.request_bytes,
            "max_concurrent_requests": self.max_concurrent,
            "max_model_len_that_fits": self.max_model_len_fits,
            "fits": b.fits and self.max_concurrent > 0,
            "verdict": self.verdict,
            "kv_precision": self.kv_precision().as_dict(),
            "engine_memory": b.memory.as_dict(),
        }


def _name(model) -> str:
    return getattr(model, "source", model)


def plan(model, gpu: str, tp: int = 1, pp: int = 1, max_model_len: int | None = None, gpu_mem_util: float = 0.9,
         kv_dtype: str = "auto", weights: str = "auto", max_num_batched_tokens: int | None = None,
         max_num_seqs: int | None = None, block_size: int = BLOCK_SIZE, engine: str = "vllm",
         enforce_eager: bool = False) -> CapacityPlan:
    """Memory per GPU and KV capacity of `model` on tp x pp `gpu`s under `engine`'s start-up accounting.
    `model`: catalog name, config.json path or ModelArchitecture. max_num_batched_tokens / max_num_seqs:
    None takes vLLM's default for the GPU (8192 / 1024 on 70 GiB+ GPUs other than the A100, else
    2048 / 256). Bad input raises SimcoreError (one line)."""
    if engine not in ENGINES:
        raise SimcoreError(f"engine = {engine!r}: allowed {', '.join(ENGINES)}")
    if enforce_eager and engine != "vllm":
        raise SimcoreError(f"enforce_eager = True: a vLLM flag; engine {engine!r} does not take it (use engine vllm)")
    name = _name(model)
    spec = load_model(name)
    hw = load_gpu(gpu)
    check_tp_pp(spec, tp, pp)
    gpu_mem_util = check_gpu_mem_util(gpu_mem_util)
    check_weights(weights)
    if kv_dtype_for(kv_dtype) == "fp8" and not hw.supports("fp8"):
        raise SimcoreError(f"kv_dtype = 'fp8': {gpu} has no fp8 support; allowed on {gpu}: auto, bf16, fp16")
    for field, value in (("max_num_batched_tokens", max_num_batched_tokens), ("max_num_seqs", max_num_seqs),
                         ("block_size", block_size)):
        if value is not None or field == "block_size":
            positive(field, value)
    if max_model_len is None:
        if not spec.max_position:
            raise SimcoreError(f"max_model_len = None: {spec.name} has no max_position_embeddings; give a length")
        max_model_len = spec.max_position
    check_context(spec, "max_model_len", max_model_len)
    budget = budget_for(name, gpu, tp, pp, weights, kv_dtype, gpu_mem_util, max_num_batched_tokens, max_num_seqs,
                        block_size, engine, bool(enforce_eager))
    return CapacityPlan(budget, max_model_len)


def recommend_kv_precision(model, gpu: str, context_length: int | None = None, tp: int = 1, pp: int = 1,
                           **kwargs) -> KVPrecisionAdvice:
    """What an fp8 KV cache buys on this deployment: bytes per token, tokens, concurrency, and the hardware caveat."""
    return plan(model, gpu, tp, pp, max_model_len=context_length, **kwargs).kv_precision()
