"""Measured serving benchmark rows (aiconfigurator's silicon format) as simcore experiments.

A row (../shared/calibration/serving_*.json, every value a string) names a backend, a model, a
GPU, a parallel layout, ISL / OSL and `batch_size` concurrent clients. `experiment_for_row` turns
it into a serving experiment dict that reproduces the benchmark: the engine profile of the
backend, the clients of the benchmark tool, the layout; a row simcore cannot express raises
`Refused` with a short reason, so validation reports count refusals by reason.
docs/serving.md ("Validating against measured servers") gives every choice.
"""

from __future__ import annotations

from simcore.errors import SimcoreError

# Hugging Face ids in the rows -> catalog names
MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b",
    "meta-llama/Llama-3.3-70B-Instruct": "llama-3.1-70b",  # same architecture
    "Qwen/Qwen3-32B": "qwen3-32b",
    "Qwen/Qwen3-32B-FP8": "qwen3-32b",
    "Qwen/Qwen3-30B-A3B": "qwen3-30b-a3b",
    "Qwen/Qwen3-235B-A22B": "qwen3-235b-a22b",
    "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "deepseek-ai/DeepSeek-R1": "deepseek-r1",
}
GPUS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm", "b200_sxm": "b200", "a100_sxm": "a100-80gb-sxm"}
ENGINES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}

# The benchmark client: aiconfigurator's bench_run.sh.j2 @095f58a5 runs `aiperf profile --concurrency c
# --num-requests 20c --warmup-request-count 2c` with fixed ISL / OSL and ignore_eos. aiperf waits for every
# warm-up response before the profiling phase starts (docs/tutorials/warmup.md, "Grace Period"), so the
# measured phase begins on an idle server with all c clients sending at once: a closed loop from t = 0.
# The warm-up itself leaves nothing behind (prefix caching is off) and is not simulated; fewer rounds
# than the tool's 20 are simulated to keep the validation fast.
MEASURED_ROUNDS = 8


class Refused(SimcoreError):
    """A row simcore cannot express; `reason` is a short key for counting."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _int(row: dict, key: str, default: int | None = None) -> int | None:
    v = row.get(key)
    if v in (None, ""):
        return default
    try:
        return int(float(v))
    except ValueError:
        raise Refused("bad value", f"{key} = {v!r}") from None


def _precision(row: dict, model: str) -> dict:
    """precision / gemm_quant_mode: missing = the checkpoint's own dtype."""
    p = (row.get("precision") or "").lower()
    if p in ("", "none", "bf16", "fp16"):
        return {"precision": {"weights": "bf16" if p != "fp16" else "fp16"}}
    if p == "fp8":
        # fp8 / fp8_block GEMMs: W8A8 with dynamic activation scales
        return {"precision": {"weights": "fp8", "activations": "fp8"}}
    if p in ("fp4", "nvfp4", "mxfp4"):
        if model == "gpt-oss-120b":  # its checkpoint: MXFP4 experts, bf16 elsewhere (H100 has no fp4 math)
            return {"precision": {"weights": "auto"}}
        raise Refused("fp4 weights", f"{p} on a model without an fp4 checkpoint in the catalog")
    raise Refused("precision", p)


# The rows do not record the engine limits they ran with. Per engine, the hypothesis that fits the H100 rows
# better (docs/serving.md, "Validating against measured servers", gives both results): the limits
# aiconfigurator's generator writes for vLLM; the engines' own defaults for SGLang and TensorRT-LLM.
LIMITS = {"vllm": "aiconfigurator", "sglang": "defaults", "trtllm": "defaults"}


def deployment(engine: str, c: int, isl: int) -> dict:
    """The engine limits aiconfigurator's generator writes for an aggregated worker of `c` clients
    (src/aiconfigurator/generator/rule_plugin/{trtllm,vllm,sglang}.rule @095f58a5). The generator also
    passes the KV cache dtype of the configuration it searched (module_bridge.py: kvcache_quant_mode ->
    kv_cache_dtype): fp8 for fp8 deployments, set by experiment_for_row."""
    if engine == "trtllm":  # max_batch_size = batch_size; max_num_tokens = batch + ISL + 500, in 32-token blocks
        return {"max_num_seqs": c, "max_num_batched_tokens": -(-(c + isl + 500) // 32) * 32}
    if engine == "vllm":  # max_num_seqs 512 (2 x batch past 512); max_num_batched_tokens = batch + ISL + 1500
        return {"max_num_seqs": 512 if c < 512 else 2 * c, "max_num_batched_tokens": c + isl + 1500}
    # sglang: --enable-mixed-chunk (decodes ride in prefill batches: the vllm step) and
    # --max-prefill-tokens ISL + 1500 under the default chunked_prefill_size 8192
    return {"scheduler": "vllm", "max_num_seqs": 512 if c < 512 else 2 * c,
            "max_num_batched_tokens": min(8192, isl + 1500)}


def experiment_for_row(row: dict, rounds: int = MEASURED_ROUNDS, limits: str | None = None) -> dict:
    """The serving experiment that reproduces one measured row; raises Refused when it cannot.
    limits: "defaults" (the engine profile's) or "aiconfigurator" (deployment()); None: LIMITS per engine."""
    model = MODELS.get(row.get("model_path", ""))
    if model is None:
        raise Refused("model not in catalog", str(row.get("model_path")))
    gpu = GPUS.get(row.get("system", ""))
    if gpu is None:
        raise Refused("gpu not in catalog", str(row.get("system")))
    engine = ENGINES.get(row.get("backend", ""))
    if engine is None:
        raise Refused("engine", str(row.get("backend")))
    if row.get("mode", "agg") != "agg":
        if not row.get("decode_batch_size"):
            raise Refused("no concurrency", "disaggregated row without batch sizes")
        raise Refused("disagg", "separate prefill/decode pools")
    c = _int(row, "batch_size")
    if c is None:
        raise Refused("no concurrency", "batch_size missing")
    tp = _int(row, "tp_size", 1)
    pp = _int(row, "pp_size", 1)
    adp = _int(row, "attention_dp_size", 1) or 1
    ep = _int(row, "moe_ep_size", 1) or 1
    isl, osl = _int(row, "isl"), _int(row, "osl")
    par: dict = {"tp": tp, "pp": pp}
    if adp > 1:
        par["attention_dp"] = adp
    if ep > 1:
        par["ep"] = ep
    version = row.get("backend_version") or None
    serving: dict = {"engine": engine}
    extra: dict = {}
    if (limits or LIMITS[engine]) == "aiconfigurator":
        serving.update(deployment(engine, c, isl))
        if (row.get("precision") or "").lower() == "fp8":  # the generator passes the searched fp8 KV cache on
            extra["inference"] = {"kvcache_precision": "fp8"}
    if version:
        serving["engine_version"] = version
    n = c * rounds
    return {
        "name": f"{row.get('backend')}-{model}-{gpu}-tp{tp}-c{c}-{isl}x{osl}",
        "model": model,
        "hardware": gpu,
        "parallelism": par,
        **_precision(row, model),
        **extra,
        "workload": {
            "kind": "requests", "requests": n, "seed": 0,
            "arrival": {"process": "closed", "concurrency": c},
            "prompt_tokens": {"dist": "fixed", "value": isl},
            "output_tokens": {"dist": "fixed", "value": osl},
        },
        "serving": serving,
    }
