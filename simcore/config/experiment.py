"""Experiment files: schema, loading, --set overrides, and cross-field checks.

An Experiment is plain validated data; `resolve` joins it with the catalogs into a Run
(model spec + system + checked parallelism) that the rest of simcore consumes.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PlainSerializer, PlainValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from simcore.config.hardware import System, load_cluster, load_gpu, load_system
from simcore.config.model import ModelSpec, load_model
from simcore.config.training import TrainingWorkload, training_problem
from simcore.config.validation import Refused, Strict, clip, load_yaml_text, read_yaml, validate, yaml_kind
from simcore.errors import SimcoreError
from simcore.registry import lookup
from simcore.config.serving import MAX_TOKENS, MAX_US, RequestsWorkload, Serving
from simcore.config.speculative import Speculative, draft_run
from simcore.config.kv_retention import KVRetention, with_retention
from simcore.config.kv_placement import KVPlacement

WeightDtype = Literal["auto", "bf16", "fp16", "fp8", "int8", "int4", "mxfp4", "nvfp4"]
ActDtype = Literal["bf16", "fp16", "fp8"]
KVDtype = Literal["auto", "bf16", "fp16", "fp8"]


MAX_DEGREE = 1024  # any one parallel degree (docs/experiments.md, "Bounds")
Degree = Annotated[int, Field(gt=0, le=MAX_DEGREE)]


class Parallelism(Strict):
    tp: Degree = 1
    pp: Degree = 1
    dp: Degree = 1
    ep: Degree = 1
    attention_dp: int = Field(default=1, gt=0)  # attention data-parallel ranks inside one replica (MoE; experts shared)


class Precision(Strict):
    weights: WeightDtype = "auto"  # auto: the checkpoint's quantization_config, else bf16
    activations: ActDtype = "bf16"


class Inference(Strict):
    kvcache_precision: KVDtype = "auto"  # auto: same as activations
    kvcache_type: Literal["hbm", "host"] = "hbm"  # the tier the cache lives in
    kvcache_fetch_overlap: bool = False
    kv_retention: KVRetention = KVRetention()  # long-decode KV eviction (docs/serving.md)
    kv_placement: KVPlacement = KVPlacement()  # KV over HBM, host and a third tier (docs/serving.md)
    # MoE expert popularity, lognormal of this spread: how many distinct experts a step's tokens touch
    # (simcore.ops.routing); None: the spread fitted on the H100 MoE rows (routing_fit.py); 0: a uniform router
    expert_popularity_sigma: float | None = Field(default=None, ge=0, le=4)


class StaticWorkload(Strict):
    kind: Literal["static"] = "static"
    batch_size: int = Field(gt=0, le=2**20)  # sequences per data-parallel replica
    prompt_tokens: int = Field(gt=0, le=MAX_TOKENS)
    output_tokens: int = Field(gt=0, le=MAX_TOKENS)


def _workload(data: Any) -> StaticWorkload | RequestsWorkload:
    """`kind` picks the schema; a workload without one is a static batch (the original schema).
    Dispatched here, not as a tagged union, so error paths stay 'workload.<field>'."""
    if isinstance(data, (StaticWorkload, RequestsWorkload, TrainingWorkload)):
        return data
    kind = data.get("kind", "static") if isinstance(data, dict) else "static"
    if not isinstance(kind, str) or kind not in WORKLOADS:
        expected = ", ".join(repr(k) for k in WORKLOADS)
        raise ValidationError.from_exception_data("workload", [InitErrorDetails(
            type="literal_error", loc=("kind",), input=kind, ctx={"expected": expected})])
    cls = WORKLOADS[kind]
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        if cls is StaticWorkload:
            raise
        # The error reader lists allowed fields from the annotation (StaticWorkload): say them here.
        errs = [InitErrorDetails(type=PydanticCustomError(
                    "unknown_field", "unknown field; allowed: {allowed}",
                    {"allowed": ", ".join(sorted(cls.model_fields))}), loc=e["loc"], input=e["input"])
                if e["type"] == "extra_forbidden" and len(e["loc"]) == 1
                else InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"], ctx=e.get("ctx", {}))
                for e in exc.errors()]
        raise ValidationError.from_exception_data("workload", errs) from None


WORKLOADS = {"static": StaticWorkload, "requests": RequestsWorkload, "training": TrainingWorkload}
# Annotated as StaticWorkload so error messages find its fields; the validator returns either kind.
Workload = Annotated[StaticWorkload, PlainValidator(_workload), PlainSerializer(lambda w: w.model_dump())]


class Engine(Strict):
    mode: Literal["analytical", "hybrid", "flattened"] = "analytical"
    overlap_policy: str = "none"  # a policy in simcore/engine/policies/
    micro_batches: int = Field(default=0, ge=0, le=MAX_DEGREE)  # 0: one per pipeline stage
    decode_sample_steps: int = Field(default=32, ge=0, le=MAX_TOKENS)  # 0: price every decode step
    all_ranks: bool = False  # flattened: simulate every TP rank, not one per stage (same times; docs/engine.md)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    runtime_overhead_gib: float = Field(default=1.5, ge=0, le=2**20)  # CUDA context, graphs, comm buffers
    all_reduce: Literal["custom", "nccl"] = "custom"  # custom: the engine's own in-node all-reduce kernel
    # how tokens reach experts on other attention-DP / DP ranks: all_to_all (DeepEP, TensorRT-LLM, SGLang
    # with EP) or all_gather (vLLM's default allgather_reducescatter backend: gather every rank's tokens)
    moe_dispatch: Literal["all_to_all", "all_gather"] = "all_to_all"
    # rows an EP rank's fused-MoE kernels run their per-row work over when its tokens were not dispatched
    # (ep > 1 without all-to-all): local (its own experts' rows; TensorRT-LLM) or all (every held token's
    # top-k rows, zeros for other ranks' experts: vLLM's Triton fused_moe with an expert_map); None: all
    # for serving.engine vllm, local otherwise (docs/cost-model.md)
    moe_ep_rows: Literal["local", "all"] | None = None
    # the kernel routed MXFP4 experts run in: marlin (vLLM's Marlin MoE, VLLM_MXFP4_USE_MARLIN=1: weight-only, in its
    # padded layout) or default (the engine's own MXFP4 path); None: marlin for vLLM on NVIDIA GPUs before Hopper,
    # else default (docs/serving.md "Engine profiles")
    moe_kernel: Literal["default", "marlin"] | None = None
    cuda_graphs: bool = True  # False: the host launches every kernel and can become the bottleneck
    kernel_launch_us: float = Field(default=5.0, ge=0, le=MAX_US)  # host time per kernel launch without CUDA graphs


class Experiment(Strict):
    name: str | None = None
    description: str | None = None
    model: str
    hardware: str
    cluster: str | None = None
    parallelism: Parallelism = Parallelism()
    precision: Precision = Precision()
    inference: Inference = Inference()
    workload: Workload
    engine: Engine = Engine()
    serving: Serving = Serving()  # request-level runs only (docs/serving.md)
    speculative: Speculative = Speculative()  # speculative decoding, static and serving runs (docs/serving.md)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise SimcoreError(f"--set {clip(repr(text))}: expected path.to.field=value")
    path, _, value = text.partition("=")
    keys = path.strip().split(".")
    if not all(keys):
        raise SimcoreError(f"--set {clip(repr(text))}: empty field name in '{clip(path)}'")
    try:
        parsed = load_yaml_text(value) if value.strip() else ""
    except Refused as exc:
        raise SimcoreError(f"--set {clip(repr(text))}: {exc.problem}") from None
    except yaml.YAMLError:
        parsed = value
    return keys, parsed


def set_path(data: dict, keys: list[str], value: Any, label: str) -> None:
    """Set data[k1][k2]... = value, creating sections; `label` names the override in errors."""
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise SimcoreError(f"{label}: '{clip(k)}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        set_path(data, keys, value, f"--set {clip(repr(text))}")
    return data


def apply_values(raw: dict, values: dict[str, Any]) -> dict:
    """raw with dotted path -> value set, values kept as they are (sweeps: no round trip through text)."""
    data = copy.deepcopy(raw)
    for path, value in values.items():
        set_path(data, path.split("."), value, f"--set {clip(repr(path + '=' + json.dumps(value)))}")
    return data


def relative_to(raw: dict, folder: Path) -> dict:
    """raw with the file paths it names (model, hardware, cluster, workload.trace, the empirical lengths) read
    relative to `folder`, the experiment file's folder (docs/experiments.md, "Paths")."""
    raw = copy.deepcopy(raw)

    def join(value: str) -> str:
        return value if os.path.isabs(value) or str(folder) in ("", ".") else os.path.join(str(folder), value)

    for key, suffix in (("model", ".json"), ("hardware", ".yaml"), ("cluster", ".yaml")):
        value = raw.get(key)  # a catalog name stays a name; a path that exists beside the file is read there
        if isinstance(value, str) and (value.endswith(suffix) or "/" in value) and os.path.exists(join(value)):
            raw[key] = join(value)
    w = raw.get("workload")
    if isinstance(w, dict):
        if isinstance(w.get("trace"), str):
            w["trace"] = join(w["trace"])
        for key in ("prompt_tokens", "output_tokens"):
            d = w.get(key)
            if isinstance(d, dict) and isinstance(d.get("path"), str):
                d["path"] = join(d["path"])
    return raw


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    path = Path(path)
    if path.is_dir():
        raise SimcoreError(f"{path}: is a folder; give an experiment YAML file (e.g. {path}/<name>.yaml)")
    if not path.is_file():
        raise SimcoreError(f"experiment file not found: {path}")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SimcoreError(
            f"{path}: expected a mapping of experiment fields (model, hardware, workload, ...), got {yaml_kind(raw)}"
        )
    return experiment_from_dict(relative_to(raw, path.parent), overrides, str(path))


def experiment_from_dict(raw: dict, overrides: list[str] | None = None, source: str = "experiment") -> Experiment:
    """Validate an experiment given as plain data (sweeps build them this way)."""
    exp = validate(Experiment, apply_overrides(raw, overrides or []), source)
    if exp.workload.kind == "static" and exp.serving != Serving():  # a full model_dump repeats the defaults
        raise SimcoreError(f"{source}: field 'serving' is given but workload.kind is static; serving settings apply "
                           f"to request-level runs only (workload: {{kind: requests}}); drop serving")
    return exp


@dataclass(frozen=True)
class Run:
    """An experiment joined with its catalog entries and checked for consistency."""

    experiment: Experiment
    model: ModelSpec
    system: System
    weight_dtype: str  # dense (non-expert) weights
    expert_dtype: str  # routed-expert weights
    act_dtype: str
    kv_dtype: str

    @property
    def par(self) -> Parallelism:
        return self.experiment.parallelism

    @property
    def gpus(self) -> int:
        p = self.par
        return p.tp * p.pp * p.dp * p.attention_dp


MAX_ATTENTION_DP = 1024  # attention ranks of one replica; well above any deployment (DeepSeek's is 320 GPUs)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _listed(values) -> str:
    return ", ".join(str(v) for v in values)


def allowed_tp(m: ModelSpec) -> list[int]:
    """TP degrees that split the attention heads evenly (and the KV heads, or replicate them evenly)."""

    def kv_ok(t: int) -> bool:
        if m.is_mla:
            return True
        return m.kv_heads % t == 0 if t <= m.kv_heads else t % m.kv_heads == 0

    return [t for t in _divisors(m.heads) if kv_ok(t)]


def tp_problem(m: ModelSpec, tp: int) -> str | None:
    """Why `tp` cannot shard m's attention (None when it can); the capacity planner shares it."""
    if tp in allowed_tp(m):
        return None
    if m.heads % tp:
        return f"does not divide num_attention_heads = {m.heads} of {m.name}"
    if tp > m.kv_heads:
        return (f"exceeds num_key_value_heads = {m.kv_heads} of {m.name} and is not a multiple of it, "
                f"so KV heads cannot be replicated evenly")
    return f"does not divide num_key_value_heads = {m.kv_heads} of {m.name}"


def pp_problem(m: ModelSpec, pp: int) -> str | None:
    """Why `pp` cannot split the model's layers into stages, or None."""
    if pp > m.layers:
        return f"exceeds num_hidden_layers = {m.layers} of {m.name}; allowed pp: 1 to {m.layers}"
    return None


def _check_parallelism(m: ModelSpec, p: Parallelism) -> None:
    why = tp_problem(m, p.tp)
    if why:
        raise SimcoreError(f"field 'parallelism.tp' = {p.tp}: {why}; allowed tp: {_listed(allowed_tp(m))}")
    why = pp_problem(m, p.pp)
    if why:
        raise SimcoreError(f"field 'parallelism.pp' = {p.pp}: {why}")
    if p.attention_dp > 1 and not m.is_moe:
        raise SimcoreError(
            f"field 'parallelism.attention_dp' = {p.attention_dp}: {m.name} is a dense model with no experts to "
            f"share; allowed attention_dp: 1 (use parallelism.dp for independent replicas)"
        )
    if p.attention_dp > MAX_ATTENTION_DP:
        raise SimcoreError(
            f"field 'parallelism.attention_dp' = {p.attention_dp}: allowed attention_dp: 1 to {MAX_ATTENTION_DP}"
        )
    if p.ep > 1:
        if not m.is_moe:
            raise SimcoreError(
                f"field 'parallelism.ep' = {p.ep}: {m.name} is a dense model with no experts; allowed ep: 1"
            )
        group = p.tp * p.dp * p.attention_dp
        label = "tp x dp x attention_dp" if p.attention_dp > 1 else "tp x dp"
        eps = [d for d in _divisors(m.num_experts) if group % d == 0]
        if m.num_experts % p.ep:
            raise SimcoreError(
                f"field 'parallelism.ep' = {p.ep}: does not divide the {m.num_experts} experts of {m.name}; "
                f"allowed ep (divides {m.num_experts} experts and {label} = {group}): {_listed(eps)}"
            )
        if group % p.ep:
            raise SimcoreError(
                f"field 'parallelism.ep' = {p.ep}: must divide {label} = {group} (experts are spread over the "
                f"GPUs of one pipeline stage); allowed ep: {_listed(eps)}"
            )


def _dtypes(e: Experiment, m: ModelSpec, system: System) -> tuple[str, str, str, str]:
    act = e.precision.activations
    w = e.precision.weights
    q = m.quantization
    if w == "auto":
        if q is None:
            dense = experts = "bf16" if "bfloat" in m.torch_dtype or m.torch_dtype == "auto" else "fp16"
        elif q.experts_only:
            dense, experts = "bf16", q.weight_dtype
        else:
            dense = experts = q.weight_dtype
    else:
        dense = experts = w
    kv = act if e.inference.kvcache_precision == "auto" else e.inference.kvcache_precision
    gpu = system.gpu
    for field, dtype in (("precision.activations", act), ("inference.kvcache_precision", kv)):
        if not gpu.supports(dtype):
            ok = [d for d in ("bf16", "fp16", "fp8") if gpu.supports(d)]
            raise SimcoreError(
                f"field '{field}' = {dtype!r}: {gpu.name} has no {dtype} support; allowed on {gpu.name}: "
                f"{_listed(ok)}"
            )
    return dense, experts, act, kv


def _field(name: str, load, *args):
    """Call a catalog loader; its error names the experiment field that asked for it."""
    try:
        return load(*args)
    except SimcoreError as exc:
        raise SimcoreError(f"field '{name}': {exc}") from None


def _check_lengths(w: RequestsWorkload, model: ModelSpec) -> None:
    """A length distribution whose every sample exceeds the model's context is an error, not a run
    in which each request is dropped (longer samples of a wide distribution are dropped one by one)."""
    for name in ("prompt_tokens", "output_tokens"):
        d = getattr(w, name)
        least = max(d.min, d.value or 0, d.low or 0)
        if least > model.max_position:
            raise SimcoreError(
                f"field 'workload.{name}': every length is at least {least}, past max_position_embeddings = "
                f"{model.max_position} of {model.name}; allowed: lengths up to {model.max_position}")
    sp = w.shared_prefix
    if sp is not None and sp.tokens >= model.max_position:
        raise SimcoreError(f"field 'workload.shared_prefix.tokens' = {sp.tokens}: leaves no room under "
                           f"max_position_embeddings = {model.max_position} of {model.name}")


def resolve(e: Experiment) -> Run:
    model = with_retention(_field("model", load_model, e.model), e.inference.kv_retention)
    _field("hardware", load_gpu, e.hardware)
    if e.cluster is not None:
        _field("cluster", load_cluster, e.cluster)
    system = _field("cluster" if e.cluster is not None else "hardware", load_system, e.hardware, e.cluster)
    _check_parallelism(model, e.parallelism)
    _field("engine.overlap_policy", lookup, "simcore.engine.policies", e.engine.overlap_policy)
    if e.engine.all_ranks and e.engine.mode != "flattened":
        raise SimcoreError(f"field 'engine.all_ranks' = true: only flattened mode simulates GPUs one by one, and "
                           f"engine.mode is {e.engine.mode!r}; allowed: all_ranks with engine.mode flattened "
                           f"(--mode flattened)")
    _field("inference.kv_placement.policy", lookup, "simcore.memory.kv_placement", e.inference.kv_placement.policy)
    if e.inference.kv_placement.policy != "hbm" and e.inference.kvcache_type != "hbm":
        raise SimcoreError(f"field 'inference.kv_placement.policy' = {e.inference.kv_placement.policy!r}: places the "
                           "cache itself; leave inference.kvcache_type at hbm")
    w = e.workload
    total = w.prompt_tokens + w.output_tokens if w.kind == "static" else 0  # request streams check per request
    if model.max_position and total > model.max_position:
        raise SimcoreError(
            f"fields 'workload.prompt_tokens' + 'workload.output_tokens' = {w.prompt_tokens} + {w.output_tokens} "
            f"= {total}: exceeds max_position_embeddings = {model.max_position} of {model.name}; "
            f"allowed: a total of at most {model.max_position}"
        )
    if w.kind == "requests" and model.max_position:
        _check_lengths(w, model)
    dense, experts, act, kv = _dtypes(e, model, system)
    if w.kind == "training":
        return _training_run(Run(e, model, system, dense, experts, act, kv))
    run = Run(e, model, system, dense, experts, act, kv)
    draft_run(run)  # a bad drafter is reported before anything runs
    return run


def _training_run(run: Run) -> Run:
    """Training keeps bf16/fp16 weights (fp32 master copies live in the optimizer state)."""
    e, p = run.experiment, run.par
    if e.precision.weights not in ("auto", "bf16", "fp16"):
        raise SimcoreError(f"field 'precision.weights' = {e.precision.weights!r}: training keeps 16-bit weights "
                           f"with fp32 master copies; allowed: auto, bf16, fp16 (fp8 GEMMs: workload.gemm_precision)")
    if run.act_dtype not in ("bf16", "fp16"):
        raise SimcoreError(f"field 'precision.activations' = {run.act_dtype!r}: training computes in 16 bits; "
                           f"allowed: bf16, fp16 (fp8 GEMMs: workload.gemm_precision)")
    why = training_problem(e.workload, p.dp, p.pp, p.tp, run.model.layers, run.model.max_position,
                           run.system.gpu.supports("fp8"))
    if why:
        raise SimcoreError(why)
    dense = "fp16" if e.precision.weights == "fp16" else run.act_dtype
    return Run(e, run.model, run.system, dense, dense, run.act_dtype, run.act_dtype)
