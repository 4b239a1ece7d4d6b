"""Schema of request-level (serving) experiments: `workload: {kind: requests}` and `serving:`.

Plain pydantic data in the config layer (simcore.config.experiment builds on it); no simulator imports.
Every field is documented in docs/serving.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from simcore.config.validation import Strict

# Upper bounds of sizes (docs/serving.md, "Bounds"): past them a run would exhaust memory or never end.
MAX_TOKENS = 2**24  # any token length: a prompt, an output, a shared prefix, a token budget
MAX_REQUESTS = 1_000_000  # requests of one serving run (generated or read from a trace)
MAX_TURNS = 1_000
MAX_GROUPS = 100_000
MAX_NUM_SEQS = 65_536
MAX_SEED = 2**63 - 1
MAX_SECONDS = 1e9  # any time in seconds
MAX_US = 1e6  # any per-step or per-launch host overhead, in microseconds

Tokens = Annotated[int, Field(gt=0, le=MAX_TOKENS)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
USED_BY = {"fixed": ("value",), "uniform": ("low", "high"), "normal": ("mean", "std"),
           "lognormal": ("mean", "cv"), "empirical": ("path",)}


class Lengths(Strict):
    """A token-length distribution; samples are rounded and clipped to [min, max] (max at most MAX_TOKENS)."""

    dist: Literal["fixed", "uniform", "normal", "lognormal", "empirical"] = "fixed"
    value: Tokens | None = None  # fixed
    mean: float | None = Field(default=None, gt=0, le=MAX_TOKENS)  # normal, lognormal
    std: float | None = Field(default=None, ge=0, le=MAX_TOKENS)  # normal
    cv: float | None = Field(default=None, ge=0, le=100)  # lognormal: std / mean of the samples
    low: Tokens | None = None  # uniform (inclusive)
    high: Tokens | None = None  # uniform (inclusive)
    path: str | None = None  # empirical: one length per line (a CSV's first column)
    min: Tokens = 1
    max: Tokens | None = None

    @model_validator(mode="after")
    def _needs(self):
        need = USED_BY[self.dist]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"dist {self.dist} needs {', '.join(missing)}")
        unused = [f for fs in USED_BY.values() for f in fs if f not in need and getattr(self, f) is not None]
        if unused:
            raise ValueError(f"{', '.join(dict.fromkeys(unused))} is not used by dist {self.dist} "
                             f"(it takes {', '.join(need)}, min, max)")
        if self.dist == "uniform" and self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self


class Arrival(Strict):
    """How requests arrive. poisson / gamma / fixed are open loop at `rate` requests/s;
    closed: `concurrency` clients, each sending its next request when its previous one finishes;
    trace: arrival times and lengths from `workload.trace`."""

    process: Literal["poisson", "gamma", "fixed", "closed", "trace"] = "poisson"
    rate: float | None = Field(default=None, ge=1e-6, le=1e7)  # requests per second
    cv: float = Field(default=1.0, ge=1e-3, le=100)  # gamma: coefficient of variation of the inter-arrival gaps
    concurrency: int | None = Field(default=None, gt=0, le=MAX_REQUESTS)
    warmup: int = Field(default=0, ge=0, le=MAX_REQUESTS)  # closed: the first `warmup` requests are sent but not measured
    # closed: seconds from a client's last token to its next request reaching the engine (docs/serving.md)
    reissue_delay_s: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    # closed: fixed (every delay reissue_delay_s), exponential (seeded draws of mean reissue_delay_s) or lognormal
    # (seeded draws of mean reissue_delay_s and coefficient of variation reissue_delay_cv)
    reissue_delay_dist: Literal["fixed", "exponential", "lognormal"] = "fixed"
    reissue_delay_cv: float | None = Field(default=None, ge=0.01, le=100)  # lognormal: std / mean of the delays

    @model_validator(mode="after")
    def _needs(self):
        if self.warmup and self.process != "closed":
            raise ValueError("warmup applies to process closed only (benchmark clients' warm-up requests)")
        if self.reissue_delay_s and self.process != "closed":
            raise ValueError("reissue_delay_s applies to process closed only (a client's next request)")
        if self.reissue_delay_dist != "fixed" and not self.reissue_delay_s:
            raise ValueError(f"reissue_delay_dist {self.reissue_delay_dist} needs reissue_delay_s > 0 (its mean)")
        if (self.reissue_delay_cv is None) == (self.reissue_delay_dist == "lognormal"):
            raise ValueError("reissue_delay_dist lognormal needs reissue_delay_cv (std / mean of the delays)"
                             if self.reissue_delay_cv is None else
                             f"reissue_delay_cv = {self.reissue_delay_cv:g} is used by reissue_delay_dist lognormal only "
                             f"(here {self.reissue_delay_dist})")
        if self.process in ("poisson", "gamma", "fixed") and self.rate is None:
            raise ValueError(f"process {self.process} needs rate (requests per second)")
        if self.process == "closed" and self.concurrency is None:
            raise ValueError("process closed needs concurrency (clients)")
        unset = {"rate": None, "concurrency": None, "cv": 1.0}  # defaults (a full model_dump repeats them)
        for name, used in (("rate", ("poisson", "gamma", "fixed")), ("concurrency", ("closed",)), ("cv", ("gamma",))):
            if getattr(self, name) != unset[name] and self.process not in used:
                raise ValueError(f"{name} is not used by process {self.process} (only by {', '.join(used)})")
        return self


class SharedPrefix(Strict):
    """A system prompt of `tokens` tokens, one of `groups` distinct ones, on a `fraction` of requests."""

    tokens: Tokens
    fraction: float = Field(default=1.0, ge=0, le=1)
    groups: int = Field(default=1, gt=0, le=MAX_GROUPS)
    zipf: float = Field(default=0.0, ge=0, le=100)  # group popularity: P(group k) ~ 1 / (k + 1)^zipf; 0 is uniform


class Sessions(Strict):
    """Multi-turn chats: each turn resends the whole history plus a new user message."""

    turns: int = Field(default=1, gt=0, le=MAX_TURNS)
    think_time_s: float = Field(default=0.0, ge=0, le=MAX_SECONDS)


class RequestsWorkload(Strict):
    kind: Literal["requests"]
    requests: int = Field(default=1000, gt=0, le=MAX_REQUESTS)  # requests in all (sessions: first turns x turns)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    arrival: Arrival = Arrival(process="poisson", rate=1.0)
    prompt_tokens: Lengths = Lengths(dist="fixed", value=1024)
    output_tokens: Lengths = Lengths(dist="fixed", value=128)
    shared_prefix: SharedPrefix | None = None
    sessions: Sessions = Sessions()
    trace: str | None = None  # CSV or JSONL: arrival_s, prompt_tokens, output_tokens[, session, prefix]

    @model_validator(mode="after")
    def _trace(self):
        if self.arrival.process == "trace" and self.trace is None:
            raise ValueError("arrival process trace needs workload.trace (a CSV or JSONL file)")
        if self.arrival.warmup >= self.requests:
            raise ValueError(f"arrival.warmup = {self.arrival.warmup} leaves none of the {self.requests} requests "
                             f"measured; allowed: 0 to {self.requests - 1}")
        if self.trace is not None and self.arrival.process != "trace":
            raise ValueError(f"workload.trace is given but arrival.process is {self.arrival.process}; "
                             f"set arrival: {{process: trace}} to replay it, or drop trace")
        return self


class SLO(Strict):
    """A request counts towards goodput when every given bound holds."""

    ttft_s: Seconds | None = None
    tpot_s: Seconds | None = None
    e2e_s: Seconds | None = None


class HostTier(Strict):
    """A host-memory KV tier (vLLM's CPU offloading connector); needs prefix_caching."""

    enabled: bool = False
    # per GPU; default: cluster host.memory_gib / gpus_per_node
    capacity_gib: float | None = Field(default=None, gt=0, le=2**20)
    policy: str = "lru"  # a policy in simcore/serving/cache_policies/
    load: Literal["async", "blocking"] = "async"  # host hits (and swap-ins): wait across steps, or stall the step
    prefetch: str = "on_admit"  # when host hits start loading: a policy in simcore/serving/prefetch/


class PoolParallelism(Strict):
    """tp / pp / attention_dp / ep of one disaggregated pool's replicas; unset: the experiment's parallelism
    (a wide-EP prefill worker beside TP decode workers, as Dynamo deploys DeepSeek)."""

    tp: int | None = Field(default=None, gt=0, le=1024)
    pp: int | None = Field(default=None, gt=0, le=1024)
    attention_dp: int | None = Field(default=None, gt=0, le=1024)
    ep: int | None = Field(default=None, gt=0, le=1024)


class PoolLimits(Strict):
    """Engine limits of one disaggregated pool's replicas; unset: serving.max_num_seqs / max_num_batched_tokens
    (aiconfigurator's generator gives prefill workers max_batch_size 1 and decode workers their batch)."""

    max_num_seqs: int | None = Field(default=None, gt=0, le=MAX_NUM_SEQS)
    max_num_batched_tokens: Tokens | None = None


class KVTransfer(Strict):
    """The link that carries KV from the prefill pool to the decode pool."""

    link: Literal["auto", "intra_node", "inter_node", "custom"] = "auto"  # auto: NVLink when both pools fit in one node
    bandwidth_gbps: float | None = Field(default=None, gt=0, le=1e6)  # link custom: achieved GB/s per GPU, per direction
    latency_us: float = Field(default=10.0, ge=0, le=MAX_US)  # link custom: per transfer

    @model_validator(mode="after")
    def _custom(self):
        if self.link == "custom" and self.bandwidth_gbps is None:
            raise ValueError("link custom needs bandwidth_gbps (achieved GB/s per GPU, e.g. 50 for 400 Gb/s NDR)")
        if self.link != "custom" and self.bandwidth_gbps is not None:
            raise ValueError(f"bandwidth_gbps is only used with link custom, not {self.link}")
        return self


class Disaggregation(Strict):
    """Disaggregated prefill / decode pools (DistServe, Splitwise, vLLM's KV connector); docs/serving.md."""

    enabled: bool = False
    prefill_replicas: int = Field(default=1, gt=0, le=1024)
    decode_replicas: int = Field(default=1, gt=0, le=1024)
    prefill_parallelism: PoolParallelism = PoolParallelism()
    decode_parallelism: PoolParallelism = PoolParallelism()
    prefill_limits: PoolLimits = PoolLimits()
    decode_limits: PoolLimits = PoolLimits()
    prefill_hardware: str | None = None  # a GPU in hardware/gpus; unset: the experiment's hardware (and cluster)
    decode_hardware: str | None = None
    decode_router: str = "least_outstanding"  # a policy in simcore/serving/routers.py
    transfer: KVTransfer = KVTransfer()
    # where the client sees the first token: when the prefill ends (vLLM's proxy), or when a decode replica
    # admits the request with its KV (Dynamo: the stream comes from the decode worker; docs/serving.md)
    first_token: Literal["prefill", "decode"] = "prefill"


class Serving(Strict):
    engine: str | None = None  # an engine profile in simcore/serving/engines/: its defaults fill unset fields
    engine_version: str | None = None  # the engine's version, where its defaults changed between versions
    engine_profile: str | None = None  # a YAML of fitted host constants (simcore validate --fit) for serving.engine
    scheduler: str = "vllm"  # a policy in simcore/serving/schedulers/
    max_num_seqs: int = Field(default=256, gt=0, le=MAX_NUM_SEQS)
    max_num_batched_tokens: Tokens = 8192
    chunked_prefill: bool = True
    block_size: int = Field(default=16, gt=0, le=1024)
    watermark: float = Field(default=0.01, ge=0, lt=1)
    preemption: Literal["recompute", "swap"] = "recompute"
    prefix_caching: bool = False
    cache_policy: str = "lru"  # a policy in simcore/serving/cache_policies/
    host_tier: HostTier = HostTier()
    iteration_overhead_us: float = Field(default=300.0, ge=0, le=MAX_US)  # host time per engine step (estimate)
    # time per streamed token of the server's frontend loop, which also takes in new requests (Dynamo's Python worker;
    # docs/serving.md "The frontend loop"): a request waits behind its backlog; 0: no loop (aggregated serving only)
    frontend_token_us: float = Field(default=0.0, ge=0, le=1e5)
    # host time per model layer under a step that carries prompt tokens and runs without a CUDA graph (its kernels
    # launched one by one): such a step takes at least layers x this (needs engine); None: the engine profile's
    eager_layer_us: float | None = Field(default=None, ge=0, le=1e5)
    # stall per MoE layer added once to a step that carries prompt tokens (needs engine); None: the engine profile's
    # fitted constant (vLLM; docs/serving.md "The MoE prompt-step constant")
    moe_prompt_layer_us: float | None = Field(default=None, ge=0, le=1e5)
    # decode batch sizes with a CUDA graph (TensorRT-LLM cuda_graph_config.batch_sizes); None: the engine profile's
    cuda_graph_batch_sizes: list[Annotated[int, Field(gt=0, le=MAX_NUM_SEQS)]] | None = Field(
        default=None, min_length=1, max_length=MAX_NUM_SEQS)
    # pad a decode batch up to the next captured size (TensorRT-LLM cuda_graph_config.enable_padding, which defaults
    # to false there); false: a batch whose size has no graph of its own launches op by op, unpadded, and no padding
    # request holds a slot (needs engine); None: the engine profile's (docs/serving.md "CUDA-graph padding")
    cuda_graph_padding: bool | None = None
    # TensorRT-LLM's batch waiting (batch_wait_timeout_iters, batch_wait_max_tokens_ratio): while decodes run, new
    # prompts wait up to this many steps for the step's tokens to reach the ratio x max_num_batched_tokens
    # (scheduler trtllm only; docs/serving.md "Batch waiting"); 0: no waiting, TensorRT-LLM's default
    batch_wait_iters: int = Field(default=0, ge=0, le=100_000)
    batch_wait_tokens_ratio: float = Field(default=0.0, ge=0, le=1)
    pipeline_batches: int | None = Field(default=None, gt=0, le=1024)  # batches in flight per replica with pp > 1; None: pp (docs/serving.md)
    router: str = "round_robin"  # a policy in simcore/serving/routers.py
    slo: SLO = SLO()
    max_time_s: Seconds | None = None  # stop the clock here; unfinished requests are dropped
    disaggregation: Disaggregation = Disaggregation()  # separate prefill and decode pools

    @model_validator(mode="after")
    def _tier(self):
        if self.host_tier.enabled and not self.prefix_caching:
            raise ValueError("host_tier needs prefix_caching: true (blocks are found on host by their hash, as in vLLM)")
        if self.pipeline_batches not in (None, 1) and (self.host_tier.enabled or self.preemption == "swap"):
            raise ValueError(f"pipeline_batches = {self.pipeline_batches} does not support host_tier or preemption: "
                             "swap yet; set pipeline_batches: 1")
        if self.disaggregation.enabled and (self.host_tier.enabled or self.preemption == "swap"):
            raise ValueError("disaggregation does not support host_tier or preemption: swap yet")
        if self.disaggregation.enabled and self.frontend_token_us:
            raise ValueError(f"frontend_token_us = {self.frontend_token_us:g}: the frontend loop is modelled for "
                             "aggregated serving only; allowed: 0 with disaggregation")
        return self
