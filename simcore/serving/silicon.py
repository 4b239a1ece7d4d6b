"""Measured serving benchmarks as simcore experiments: one plain record, one builder.

`Measurement` is one benchmark run, whatever tool wrote it: the deployment (model, GPU, layout,
engine and version), the offered load (closed-loop clients or an open-loop request rate), the
request lengths and the measured latencies and throughput. `measurement_from_row` reads a row of
aiconfigurator's silicon format (../shared/calibration/serving_*.json, every value a string);
simcore/validate/readers.py reads vLLM's and SGLang's benchmark files into the same record.
`experiment_for_record` turns a record into the serving experiment dict that reproduces the
benchmark: the engine profile of the backend, the clients of the benchmark tool, the layout; a
record simcore cannot express raises `Refused` with a short reason, so validation reports count
refusals by reason. docs/validation.md ("Validating against measured servers") gives every choice.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from simcore.errors import SimcoreError, clip, close_matches
from simcore.serving import recipes
from simcore.serving.generator import deployment, graphs, pool_limits
from simcore.serving.layouts import export_layout, vllm_dp_layout
from simcore.serving.sources import campaign, generator_day, measured_days

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
    "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b-fp8",  # block-scaled fp8 (its quantization_config)
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "deepseek-ai/DeepSeek-R1": "deepseek-r1",
    # NVIDIA's quantized republications: the same architectures (the row's precision gives the format)
    "nvidia/Llama-3.1-8B-Instruct-FP8": "llama-3.1-8b",
    "nvidia/Qwen3-32B-NVFP4": "qwen3-32b",
    "nvidia/DeepSeek-R1-NVFP4": "deepseek-r1",
    "nvidia/DeepSeek-V3.1-NVFP4": "deepseek-v3",  # V3.1: the V3 architecture
    "moonshotai/Kimi-K2.5": "kimi-k2.5",
    "nvidia/Kimi-K2.5-NVFP4": "kimi-k2.5-nvfp4",
    "nvidia/GLM-5-NVFP4": "glm-5-nvfp4",
    "Qwen/Qwen3.5-397B-A17B": "qwen3.5-397b-a17b",
    "zai-org/GLM-5": "glm-5",
    "zhipuai/GLM-5": "glm-5",  # the rows' spelling of zai-org/GLM-5 (Zhipu AI's earlier organisation name)
}
# A row names the base model and a precision; where the publisher's own quantized checkpoint is in the catalog,
# that checkpoint is what ran (its quantization_config says which layers are quantized)
PUBLISHED = {(base, p): f"{base}-nvfp4" for base in ("kimi-k2.5", "glm-5") for p in ("fp4", "nvfp4")}
# aiconfigurator's system names (src/aiconfigurator/systems/*.yaml @095f58a5) -> catalog GPUs
GPUS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm", "b200_sxm": "b200", "a100_sxm": "a100-80gb-sxm",
        "h100_pcie": "h100-pcie", "l40s": "l40s", "l4": "l4"}
ENGINES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}

# The benchmark client: aiconfigurator's bench_run.sh.j2 @095f58a5 runs `aiperf profile --concurrency c
# --num-requests 20c --warmup-request-count 2c` with fixed ISL / OSL and ignore_eos. aiperf waits for every
# warm-up response before the profiling phase starts (docs/tutorials/warmup.md, "Grace Period"), so the
# measured phase begins on an idle server with all c clients sending at once: a closed loop from t = 0.
# The warm-up itself leaves nothing behind (prefix caching is off) and is not simulated. The measured phase
# is simulated in full, 20 rounds: the first round is a lock-step wave whose prompts queue behind each other,
# and it must weigh 1/20 of the mean TTFT as in the benchmark (with 8 rounds it weighed 1/8, which raised the
# mean TTFT by about half the steady-state gap and flattered the comparison: docs/validation.md).
MEASURED_ROUNDS = 20
# aiperf's way from one response to the client's next request (aiperf/workers/worker.py @db4f6397: the worker
# pushes the whole record, parses every streamed response, returns its credit over ZMQ; the timing manager's
# concurrency semaphore then drops a new credit to a worker, which fetches the prompt from the dataset manager
# (a ZMQ round trip), formats it and sends it; the server then parses and tokenizes it): seconds from a
# request's last token to the next request reaching the engine, exponential draws of this mean (the hops are
# Python services on their own event loops, not a fixed latency). Fitted by benchmarks/fit_reissue.py on the
# H100 rows (docs/validation-log.md, "Round 5": with the delay a re-issued prompt misses the step that starts
# as its predecessor ends and queues behind the prefill steps it lands in, so fixed-length clients stay clumped
# as the rows show; without it every client gets a prefill step to itself). The draws are lognormal with a
# coefficient of variation of 2: queueing in those services leaves most re-issues quick and a few long, and a few
# long ones break up the waves of fixed-length clients; mean and spread fitted together (`fit_reissue.py --client
# aiperf --dist lognormal --cv ... --seeds 3`: 16.9% TTFT on the 674 aiperf rows against 17.3% exponential;
# docs/validation-log.md "Round 16").
AIPERF_CLIENT = {"reissue_delay_s": 0.04, "reissue_delay_dist": "lognormal", "reissue_delay_cv": 2.0}
# InferenceX's client, for the rows its database exports hold (sources.campaign; docs/validation-log.md, "Round 7"):
# utils/bench_serving/benchmark_serving.py (SemiAnalysisAI/InferenceX; run by benchmarks/benchmark_lib.sh
# run_benchmark_serving, and by the 2025 recipes such as benchmarks/70b_fp8_h100_slurm.sh @9596d23d7) with
# --dataset-name random --random-range-ratio 0.8 --num-prompts 10c --max-concurrency c --request-rate inf
# --ignore-eos: input and output lengths uniform in [int(0.8 L), L] (sample_random_requests), 10 requests per
# client, each sent by a task of the same asyncio process as a semaphore slot frees; the warm-up requests are
# awaited before the measured phase starts. The re-issue delay (the server's input processing, the HTTP round
# and the event loop) is fitted: exponential, mean 10 ms (flat from 5 to 20 ms; none leaves each re-issued
# prompt landing exactly on a step boundary).
INFERENCEX_CLIENT = {"reissue_delay_s": 0.01, "reissue_delay_dist": "exponential"}
# The server behind aiperf in aiconfigurator's sweep is a Dynamo deployment: its Python engine worker forwards every
# streamed token from the same asyncio loop that takes in new requests (docs/serving.md "The frontend loop";
# docs/validation-log.md "Round 15"). Seconds of that loop per streamed token, fitted by benchmarks/fit_reissue.py
# --frontend-us on the aiperf rows; InferenceX's rows ran the engine's own server and get none.
DYNAMO_TOKEN_US = 100.0
INFERENCEX_RANGE_RATIO = 0.8
INFERENCEX_ROUNDS = 10
OPEN_LOOP_REQUESTS = 500  # open loop: at most this many simulated requests unless asked for more


class Refused(SimcoreError):
    """A row simcore cannot express; `reason` is a short key for counting."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


TEXT_KEYS = ("system", "backend", "backend_version", "model_path", "precision", "mode", "gemm_quant_mode",
             "moe_quant_mode", "silicon_data_source", "kv_cache_dtype")
# engine limits a row may record (a column of a user's file): they replace the engine profile's default and what a
# recipe set (simcore.serving.recipes), and the engine's start-up memory profile reads them too
ROW_LIMITS = ("max_num_seqs",)
MODES = ("agg", "disagg")  # aggregated serving, or disaggregated prefill / decode workers


def _int(row: dict, key: str, default: int | None = None) -> int | None:
    v = row.get(key)
    if v in (None, ""):
        return default
    x = _finite(row, key)
    if x < 0:
        raise Refused("bad value", f"{key} = {v!r}")
    return int(x)


def _finite(row: dict, key: str) -> float:
    """row[key] as a finite number (rows hold numbers as strings); anything else refuses the row."""
    v = row[key]
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise Refused("bad value", f"{key} = {v!r:.80}") from None
    if not math.isfinite(x):
        raise Refused("bad value", f"{key} = {v!r:.80}")
    return x


def _precision(row: dict, model: str) -> dict:
    """precision / gemm_quant_mode: missing = the checkpoint's own dtype."""
    p = (row.get("precision") or "").lower()
    if p in ("", "none", "bf16", "fp16"):
        return {"precision": {"weights": "bf16" if p != "fp16" else "fp16"}}
    if p in ("fp8", "fp4", "nvfp4", "mxfp4") and _checkpoint_dtype(model) == "mxfp4":
        # an MXFP4 checkpoint (gpt-oss: MXFP4 experts, bf16 elsewhere; H100 has no fp4 math) loads as published
        # whatever a quantized row's labels say: TensorRT-LLM reads its quant_method (model_config.py
        # get_mxfp4_quant_algo: W4A16_MXFP4 below SM100) and has no fp8 path for it (docs/validation-log.md, round 12)
        return {"precision": {"weights": "auto"}}
    if p == "fp8":
        # fp8 / fp8_block GEMMs: W8A8 with dynamic activation scales
        return {"precision": {"weights": "fp8", "activations": "fp8"}}
    if p in ("fp4", "nvfp4", "mxfp4"):
        if p != "mxfp4" and _checkpoint_dtype(model) == "nvfp4":  # an NVFP4 checkpoint runs as published
            return {"precision": {"weights": "auto"}}
        # NVIDIA's NVFP4 checkpoints (ModelOpt; TensorRT-LLM, vLLM and SGLang on Blackwell): every linear
        # layer in nvfp4 on the fp4 tensor cores; a GPU without fp4 math dequantizes (ops/builder.py)
        return {"precision": {"weights": "mxfp4" if p == "mxfp4" else "nvfp4"}}
    if p in ("int4", "int4_wo", "w4a16"):  # weight-only int4 (AWQ/GPTQ-style): dequantized into 16-bit GEMMs
        # a checkpoint published in int4 (Kimi-K2.5: int4 routed experts, 16-bit attention) runs as published
        return {"precision": {"weights": "auto" if _checkpoint_dtype(model) == "int4" else "int4"}}
    raise Refused("precision", p)


def _checkpoint_dtype(model: str) -> str | None:
    from simcore.config.model import load_model

    q = load_model(model).quantization
    return q.weight_dtype if q else None


# The rows do not record the engine limits they ran with. Per engine, the hypothesis that fits the H100 rows
# better (docs/validation.md, "Validating against measured servers", gives both results): the limits
# aiconfigurator's generator writes for vLLM and TensorRT-LLM; the engine's own defaults for SGLang.
LIMITS = {"vllm": "aiconfigurator", "sglang": "defaults", "trtllm": "aiconfigurator"}


@dataclass
class Pool:
    """One pool of a disaggregated deployment as a row records it: workers (None: not recorded), each
    worker's max batch (None: not recorded) and layout (aiconfigurator's tp, pp, attention_dp and moe_ep)."""

    workers: int | None
    batch: int | None
    tp: int
    pp: int = 1
    attention_dp: int = 1
    ep: int = 1
    layout: bool = True  # False: the row records only the pool's tp_size (not its pp, attention DP or experts)


POOL_FIELDS = ("batch_size", "num_workers", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size")


def _pool(row: dict, which: str) -> Pool:
    """The row's prefill_* or decode_* fields; a missing tp_size refuses the row, a bad value too."""
    tp = _int(row, f"{which}_tp_size")
    if tp is None:
        raise Refused("disagg layout", f"no {which}_tp_size: a disagg row needs each pool's tp_size")
    if tp == 0:
        raise Refused("bad value", f"{which}_tp_size = {row[f'{which}_tp_size']!r:.80}: must be >= 1")
    got = {}
    for key in ("batch_size", "num_workers"):
        v = _int(row, f"{which}_{key}")
        if v == 0:
            raise Refused("bad value", f"{which}_{key} = {row[f'{which}_{key}']!r:.80}: must be >= 1 when given")
        got[key] = v
    # upstream writes 0 for a MoE degree it did not set (vLLM rows): the default, 1
    recorded = any(row.get(f"{which}_{k}") not in (None, "") for k in POOL_FIELDS[3:])
    return Pool(workers=got["num_workers"], batch=got["batch_size"], tp=tp, pp=_int(row, f"{which}_pp_size", 1) or 1,
                attention_dp=_int(row, f"{which}_attention_dp_size", 1) or 1,
                ep=_int(row, f"{which}_moe_ep_size", 1) or 1, layout=recorded)


@dataclass
class Measurement:
    """One measured benchmark run. Latencies are in ms: metric -> {stat: value}, metric one of ttft,
    tpot, itl, e2e and stat one of mean, p50, p90, p95, p99 (what the file has); throughput:
    requests_per_s and output_tokens_per_s. Deployment fields hold the file's own spelling (a
    Hugging Face id or a catalog name; h100_sxm or h100-sxm) until experiment_for_record maps them."""

    source: str  # file (and line or row) it came from
    model: str | None = None
    gpu: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    tp: int | None = None
    pp: int = 1
    ep: int = 1
    attention_dp: int = 1
    precision: str | None = None  # None: the checkpoint's own dtype
    mode: str = "agg"  # agg: one pool; disagg: separate prefill / decode pools (`pools`)
    concurrency: int | None = None  # closed loop: clients, each sending its next request when one ends
    rate: float | None = None  # open loop: requests per second
    burstiness: float = 1.0  # open loop: gamma shape of the gaps (1: Poisson)
    isl: int | None = None  # input tokens per request (a file's mean when lengths vary)
    osl: int | None = None  # output tokens per request
    requests: int | None = None  # requests the benchmark measured
    warmup: int = 0  # closed loop: requests sent before measuring (aiperf's warm-up)
    latency: dict = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)
    refused: str | None = None  # set by a reader for a run simcore cannot express (e.g. a ramp-up)
    range_ratio: float = 1.0  # < 1: lengths uniform in [int(ratio x isl), isl] and the same for osl (random data)
    serving: dict = field(default_factory=dict)  # serving fields the deployment set (rows: the generator's limits)
    kv_cache_dtype: str | None = None  # the deployment's KV cache dtype when it set one (None: the engine default)
    kv_named: bool = False  # the row or its recipe names the KV dtype (not inferred from the precision)
    memory_fraction: float | None = None  # the engine's memory fraction its recipe set (None: the engine's default)
    pools: dict | None = None  # mode disagg: {"prefill": Pool, "decode": Pool}
    client: dict = field(default_factory=dict)  # closed loop: the measuring tool's re-issue (workload.arrival keys)
    assumed: str | None = None  # what the builder had to assume because the record lacks it (reported apart)


def _row_ms(row: dict, key: str) -> float | None:
    if row.get(key) in (None, ""):
        return None
    x = _finite(row, key)
    if x <= 0:
        raise Refused("bad value", f"{key} = {row[key]!r:.80}")
    return x


@functools.lru_cache(maxsize=None)
def _node(gpu: str) -> int | None:
    """GPUs per node of a GPU (a row's system or a catalog name: its default cluster); None when it is not known."""
    from simcore.config.hardware import load_system

    try:
        return load_system(GPUS.get(gpu, gpu)).cluster.gpus_per_node
    except (SimcoreError, OSError, ValueError, TypeError):
        return None


def measurement_from_row(row: dict, source: str = "row", limits: str | None = None) -> Measurement:
    """A row of the silicon format; bad values raise Refused (counted as the benchmark counts them).
    limits: "defaults" (the engine profile's) or "aiconfigurator" (deployment()); None: LIMITS per engine."""
    for key, v in row.items():  # the format holds strings (numbers written as text) and nothing nested
        if not (v is None or isinstance(v, (str, int, float))) or isinstance(v, bool) or \
                (key in TEXT_KEYS and not isinstance(v, (str, type(None)))):
            raise Refused("bad value", f"{key} = {v!r:.80}")
    row = export_layout(row, _node(row.get("system") or ""))
    c = _int(row, "batch_size")
    isl = _int(row, "isl")
    engine = ENGINES.get(row.get("backend", ""))
    lat = {}
    for metric, key in (("ttft", "silicon_ttft_ms"), ("tpot", "silicon_tpot_ms")):
        v = _row_ms(row, key)
        if v is not None:
            lat[metric] = {"mean": v}
    mode = row.get("mode", "agg")
    if mode not in MODES:
        raise Refused("bad value", f"mode = {mode!r:.80}; allowed: {', '.join(MODES)}")
    adp = _int(row, "attention_dp_size", 1) or 1
    serving, kv, pools, assumed = {}, None, None, None
    # an InferenceX export ran InferenceX's client and recipe, not aiconfigurator's benchmark and generator: the
    # engine's defaults and what the recipe of its day set (simcore.serving.recipes); a TensorRT-LLM row whose recipe
    # is not known there keeps LIMITS (docs/validation-log.md, "Round 7" and "InferenceX recipes")
    ix = mode == "agg" and campaign(row.get("silicon_data_source")) == "inferencex"
    ran = _recipe(row, engine, c, isl, adp) if ix and not limits else None  # limits given: the caller's, no recipe
    if ix and not limits and (engine == "vllm" or ran is not None):
        limits = "defaults"
    if mode == "disagg":
        pools = {w: _pool(row, w) for w in ("prefill", "decode")}
        c, assumed = disagg_load(c, pools)
    elif engine and c and isl and (limits or LIMITS[engine]) == "aiconfigurator":
        # the generator's limits are per attention-DP rank (each runs its own scheduler): the replica's are adp x
        day = generator_day(row.get("silicon_data_source"))  # the generator of that day wrote the engine's config
        serving = {k: v if k == "scheduler" else v * adp for k, v in deployment(engine, c, isl, day).items()}
        if engine == "trtllm":
            serving.update(graphs(day, c))
    if mode == "agg" and not ix:
        serving["frontend_token_us"] = DYNAMO_TOKEN_US
    # the generator passes the searched KV cache on: fp8 for fp8 and nvfp4 deployments (aiconfigurator infers it
    # from quant_algo fp8 / nvfp4: sdk/models/helpers.py _infer_quant_modes_from_raw_config @095f58a5); a disagg
    # row written by it records the pools' batches
    generated = pools["decode"].batch is not None if pools else (limits or LIMITS.get(engine or "")) == "aiconfigurator"
    if engine and c and isl and generated and (row.get("precision") or "").lower() in ("fp8", "fp4", "nvfp4", "mxfp4"):
        kv = "fp8"
    tp, ep, moe_tp = _int(row, "tp_size", 1), _int(row, "moe_ep_size", 1) or 1, _int(row, "moe_tp_size", 1) or 1
    if mode == "agg":
        # batch_size is per attention-DP rank: aiconfigurator's silicon_sample.csv names each row's clients in
        # its id (silicon_concurrency=512 on a row of batch_size 128, attention_dp_size 4: cfg734 @ 42bd4cf);
        # only a recorded attention_dp_size multiplies it (the id's formula), not one implied below
        c = c * adp if c else c
        experts_on = moe_tp * ep
        if not row.get("attention_dp_size") and tp and experts_on > tp and experts_on % tp == 0:
            # a worker's GPUs = tp x attention DP = moe_tp x moe_ep (aiconfigurator's layout); rows that leave
            # attention_dp_size out but split experts over more GPUs than tp (vLLM Qwen3-235B on H200: tp 1,
            # moe_tp 2) run data-parallel attention over those GPUs
            adp = experts_on // tp
        if engine == "vllm":
            tp, ep = vllm_dp_layout(tp, adp, moe_tp, ep)
    kv_named = False  # the deployment names its KV dtype ("auto": the engine's default), which then stands
    if ran is not None:
        if "ep" in ran and adp == 1:  # the recipe split the experts otherwise than the row says
            ep = ran["ep"](tp) if callable(ran["ep"]) else ran["ep"]
        serving.update(ran["serving"])
        if "kv_cache_dtype" in ran:
            kv, kv_named = _kv_named(ran["kv_cache_dtype"]), True
    if row.get("kv_cache_dtype"):  # the row's own column (a user's file)
        kv, kv_named = _kv_named(row["kv_cache_dtype"]), True
    for key in ROW_LIMITS:
        v = _int(row, key)
        if v == 0:
            raise Refused("bad value", f"{key} = {row[key]!r:.80}: must be >= 1 when given")
        if v is not None:
            serving[key] = v
    return Measurement(
        source=source, model=row.get("model_path") or None, gpu=row.get("system") or None,
        engine=row.get("backend") or None, engine_version=row.get("backend_version") or None,
        tp=tp, pp=_int(row, "pp_size", 1), ep=ep,
        attention_dp=adp, precision=row.get("precision"),
        mode=mode, concurrency=c, isl=isl, osl=_int(row, "osl"), latency=lat,
        serving=serving, kv_cache_dtype=kv, kv_named=kv_named, pools=pools, assumed=assumed,
        memory_fraction=ran.get("memory_fraction") if ran else None,
        client=dict(INFERENCEX_CLIENT if ix else AIPERF_CLIENT),
        requests=INFERENCEX_ROUNDS * c if ix and c else None, range_ratio=INFERENCEX_RANGE_RATIO if ix else 1.0)


def _kv_named(dtype: str) -> str | None:
    """A KV dtype a deployment names: "auto" is the engine's default (None)."""
    return None if dtype == "auto" else dtype


def reads_recipe(engine: str | None, adp: int) -> bool:
    """Whether an InferenceX row of this engine and attention DP takes its recipe: TensorRT-LLM and SGLang rows with
    attention DP keep their reading (those recipes' per-rank limits are not carried; vLLM's attention-DP rows ran one
    server: vllm_dp_layout)."""
    return bool(engine) and (adp == 1 or engine == "vllm")


def _recipe(row: dict, engine: str | None, c: int | None, isl: int | None, adp: int) -> dict | None:
    """What the InferenceX recipe behind an aggregated row of its export set (simcore.serving.recipes), or None.
    c: the row's batch_size; the recipe's CONC counts every attention-DP rank's clients."""
    osl = _int(row, "osl")
    if not (c and isl and osl and reads_recipe(engine, adp)):
        return None
    d = recipes.Deployment(c=c * adp, isl=isl, osl=osl, tp=_int(row, "tp_size", 1) or 1,
                           ep=_int(row, "moe_ep_size", 1) or 1, version=row.get("backend_version") or "")
    first, last = measured_days(row.get("silicon_data_source"))
    # rows of several days take the version that spans them (recipe() checks both ends)
    return recipes.recipe(row.get("system") or "", engine, row.get("model_path") or "",
                          (row.get("precision") or "").lower(), first, d, last=last if last != first else None)


def recipe_reading(row: dict) -> str:
    """How an aggregated row of a silicon file reads its InferenceX recipe: "recipe" (known and applied), "unknown"
    (none known, or the version cannot be told), "attention DP" (reads_recipe), or "not InferenceX"
    (benchmarks/recipe_coverage.py). Configuration columns only."""
    if row.get("mode", "agg") != "agg" or campaign(row.get("silicon_data_source")) != "inferencex":
        return "not InferenceX"
    engine = ENGINES.get(row.get("backend") or "")
    try:
        c, isl, adp = _int(row, "batch_size"), _int(row, "isl"), _int(row, "attention_dp_size", 1) or 1
        if not reads_recipe(engine, adp):
            return "attention DP" if engine else "unknown"
        return "recipe" if _recipe(row, engine, c, isl, adp) is not None else "unknown"
    except Refused:
        return "unknown"


def disagg_load(c: int | None, pools: dict) -> tuple[int | None, str | None]:
    """(clients, what was assumed) of a disaggregated row. The clients are batch_size when the row has it (the
    published silicon_concurrency), else what aiconfigurator's benchmark sends a disagg deployment:
    decode_num_workers x decode_batch_size clients in all (rule_plugin/benchmark/*.rule estimated_concurrency,
    one `aiperf --concurrency` against the frontend), said to be assumed since the row does not record it.
    Unrecorded worker counts are taken as 1 and said so."""
    d = pools["decode"]
    assumed = []
    if c is None and d.workers and d.batch:
        c = d.workers * d.batch
        assumed.append("load unrecorded: decode_num_workers x decode_batch_size clients assumed")
    missing = [w for w in ("prefill", "decode") if pools[w].workers is None]
    if missing:
        assumed.append("workers unrecorded: 1 " + " + 1 ".join(missing) + " assumed")
    return c, "; ".join(assumed) or None


def catalog_name(kind: str, name: str | None, aliases: dict) -> str | None:
    """A file's model or GPU as a catalog name: the alias table, else the name itself when the
    catalog has it; None when neither."""
    from simcore.config.catalog import entries

    if not name:
        return None
    if name in aliases:
        return aliases[name]
    folder, suffix = ("models", ".json") if kind == "model" else ("hardware/gpus", ".yaml")
    return name if name in entries(folder, suffix) else None


def unknown_gpu(name: str | None) -> str:
    """One line for a system no catalog GPU stands for: the name, close matches, what is known."""
    from simcore.config.catalog import entries

    known = sorted(GPUS) + sorted(set(entries("hardware/gpus", ".yaml")) - set(GPUS))
    return f"{clip(str(name), 80)}{close_matches(str(name), known)}; known systems: {', '.join(known)}"


def _lengths(n: int, ratio: float) -> dict:
    """n tokens each, or uniform in [int(ratio x n), n] as a random dataset with a range ratio draws them."""
    low = int(ratio * n)
    return {"dist": "fixed", "value": n} if low >= n else {"dist": "uniform", "low": max(1, low), "high": n}


def experiment_for_record(rec: Measurement, requests: int | None = None, rounds: int = MEASURED_ROUNDS) -> dict:
    """The serving experiment that reproduces one measured run; raises Refused when it cannot.
    Closed loop: rec.warmup requests, then `requests` measured ones (default: `rounds` per client).
    Open loop: `requests` requests (default: as many as the benchmark measured)."""
    if rec.refused:
        raise Refused(rec.refused)
    model = catalog_name("model", rec.model, MODELS)
    if model is None:
        raise Refused("model not in catalog", str(rec.model))
    model = PUBLISHED.get((model, (rec.precision or "").lower()), model)  # the publisher's checkpoint, if any
    gpu = catalog_name("gpu", rec.gpu, GPUS)
    if gpu is None:
        raise Refused("gpu not in catalog", unknown_gpu(rec.gpu))
    engine = ENGINES.get(rec.engine or "")
    if engine is None:
        raise Refused("engine", str(rec.engine))
    if rec.mode != "agg" and not rec.pools:
        raise Refused("disagg", "separate prefill/decode pools without their layout")
    c = rec.concurrency
    if c is None and rec.rate is None:
        raise Refused("no concurrency", "batch_size missing" + (
            ", and no decode_batch_size x decode_num_workers (the load aiconfigurator's benchmark sends) to take it "
            "from" if rec.pools else ""))
    isl, osl = rec.isl, rec.osl
    if not isl or not osl:
        raise Refused("no lengths", f"isl {isl}, osl {osl}")
    tp, pp, adp, ep = rec.tp or 1, rec.pp or 1, rec.attention_dp or 1, rec.ep or 1
    par: dict = {"tp": tp, "pp": pp}
    if adp > 1:
        par["attention_dp"] = adp
    if ep > 1:
        par["ep"] = ep
    serving: dict = {"engine": engine, **rec.serving}  # unset fields: the engine profile's defaults
    if rec.pools:
        _place_unrecorded(rec, model, gpu, engine, isl)
        par, serving["disaggregation"] = disaggregation(engine, rec.pools, isl)
    if rec.engine_version:
        serving["engine_version"] = rec.engine_version
    if c is not None:
        n = requests if requests is not None else min(c * rounds, rec.requests or c * rounds)
        arrival = {"process": "closed", "concurrency": c, **({"warmup": rec.warmup} if rec.warmup else {}),
                   **rec.client}
        n += rec.warmup
        load = f"c{c}"
    else:
        n = requests if requests is not None else min(rec.requests or OPEN_LOOP_REQUESTS, OPEN_LOOP_REQUESTS)
        arrival = ({"process": "poisson", "rate": rec.rate} if rec.burstiness == 1 else
                   {"process": "gamma", "rate": rec.rate, "cv": 1 / math.sqrt(rec.burstiness)})
        load = f"r{rec.rate:g}"
    prec = _precision({"precision": rec.precision or ""}, model)
    # a checkpoint run in its own format (gpt-oss's MXFP4, weights auto) keeps its own KV default: aiconfigurator
    # infers no fp8 KV cache for quant_algo mxfp4 (an NVFP4 checkpoint's fp8 KV is what it infers for nvfp4)
    auto = prec["precision"]["weights"] == "auto" and _checkpoint_dtype(model) != "nvfp4"
    kv = rec.kv_cache_dtype if not auto or rec.kv_named else None
    eng: dict = {}
    if engine == "vllm" and ep > 1:  # vLLM's default EP backend gathers every DP rank's tokens (allgather_reducescatter)
        eng["moe_dispatch"] = "all_gather"
    if rec.memory_fraction is not None:  # the engine's own memory flag (docs/experiments.md)
        eng["gpu_memory_utilization"] = rec.memory_fraction
    return {
        "name": f"{rec.engine}-{model}-{gpu}-{layout(rec)}-{load}-{isl}x{osl}",
        "model": model,
        "hardware": gpu,
        "parallelism": par,
        **prec,
        **({"inference": {"kvcache_precision": kv}} if kv else {}),
        "workload": {
            "kind": "requests", "requests": n, "seed": 0,
            "arrival": arrival,
            "prompt_tokens": _lengths(isl, rec.range_ratio),
            "output_tokens": _lengths(osl, rec.range_ratio),
        },
        "serving": serving,
        **({"engine": eng} if eng else {}),
    }


def _pool_holds(model: str, gpu: str, engine: str, p: Pool, limits: dict, precision: str | None) -> bool:
    """Whether one worker of pool p leaves room for a KV block (the check the simulation refuses a pool with)."""
    from simcore.config.experiment import Experiment, resolve
    from simcore.memory import replica_kv

    par = {"tp": p.tp, "pp": p.pp, **({"attention_dp": p.attention_dp, "ep": p.ep} if p.attention_dp > 1 else {})}
    run = resolve(Experiment.model_validate({"model": model, "hardware": gpu, "parallelism": par,
                                             **_precision({"precision": precision or ""}, model),
                                             "workload": {"kind": "requests", "requests": 1}}))
    blocks, _ = replica_kv(run, limits.get("max_num_batched_tokens", 8192), limits.get("max_num_seqs", 256),
                           32 if engine == "trtllm" else 16, engine)
    return blocks > 0


def _place_unrecorded(rec: Measurement, model: str, gpu: str, engine: str, isl: int) -> None:
    """A pool whose row records only its tp_size (the shared silicon format drops aiconfigurator's per-pool
    pp_size, attention_dp_size, moe_tp_size and moe_ep_size) and whose tp GPUs cannot hold the model: the
    generator's wide-expert layout, attention DP and experts over one node's GPUs (tp 1, attention_dp = moe_ep =
    gpus_per_node), said to be assumed. docs/validation.md, "Rows of other GPUs"."""
    for which, p in rec.pools.items():
        if p.layout or p.attention_dp > 1 or p.pp > 1:
            continue
        limits = pool_limits(engine, which, p.batch, isl)
        if _pool_holds(model, gpu, engine, p, limits, rec.precision):
            continue
        node = _node(gpu)
        wide = Pool(p.workers, p.batch, p.tp, attention_dp=node, ep=node, layout=False)
        scale = 1 if engine == "sglang" else node  # TensorRT-LLM's and vLLM's limits hold per rank: disaggregation()
        if p.tp == 1 and _pool_holds(model, gpu, engine, wide, {k: v * scale for k, v in limits.items()},
                                     rec.precision):
            rec.pools[which] = wide
            note = f"layout unrecorded: {which} attention DP {node} x EP {node} (one node) assumed"
            rec.assumed = f"{rec.assumed}; {note}" if rec.assumed else note


def layout(rec: Measurement) -> str:
    """tp8, or for a disagg record each pool's workers x layout: p1xtp1a16-d3xtp16 ('?' workers: unrecorded)."""
    if not rec.pools:
        return f"tp{rec.tp or 1}"
    return "-".join(f"{w[0]}{p.workers or '?'}xtp{p.tp}" + (f"a{p.attention_dp}" if p.attention_dp > 1 else "")
                    for w, p in rec.pools.items())


def disaggregation(engine: str, pools: dict, isl: int) -> tuple[dict, dict]:
    """(the experiment's parallelism: the decode workers' layout, serving.disaggregation) of a disagg record.
    A worker's GPUs are tp x attention_dp x pp (aiconfigurator's layout fields; simcore's attention_dp)."""
    # Dynamo fronts these deployments: the client's stream comes from the decode worker, which the frontend
    # picks round robin (its default --router-mode); docs/validation.md, "Disaggregated rows"
    d: dict = {"enabled": True, "first_token": "decode", "decode_router": "round_robin"}
    for which, p in pools.items():
        d[f"{which}_replicas"] = p.workers or 1
        d[f"{which}_parallelism"] = {"tp": p.tp, "pp": p.pp, "attention_dp": p.attention_dp, "ep": p.ep}
        limits = pool_limits(engine, which, p.batch, isl)
        if p.attention_dp > 1 and engine != "sglang":  # TensorRT-LLM's and vLLM's limits hold per attention-DP rank
            limits = {k: v * p.attention_dp for k, v in limits.items()}
        if limits:
            d[f"{which}_limits"] = limits
    dec = pools["decode"]
    par = {"tp": dec.tp, "pp": dec.pp, **({"attention_dp": dec.attention_dp} if dec.attention_dp > 1 else {}),
           **({"ep": dec.ep} if dec.ep > 1 else {})}
    return par, d


def experiment_for_row(row: dict, rounds: int = MEASURED_ROUNDS, limits: str | None = None) -> dict:
    """The serving experiment that reproduces one measured row; raises Refused when it cannot.
    limits: "defaults" (the engine profile's) or "aiconfigurator" (deployment()); None: LIMITS per engine."""
    for key, v in row.items():  # the format holds strings (numbers written as text) and nothing nested
        if not (v is None or isinstance(v, (str, int, float))) or isinstance(v, bool) or \
                (key in TEXT_KEYS and not isinstance(v, (str, type(None)))):
            raise Refused("bad value", f"{key} = {v!r:.80}")
    return experiment_for_record(measurement_from_row(row, limits=limits), rounds=rounds)
