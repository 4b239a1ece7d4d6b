"""Engine profiles: one serving engine's documented defaults (vLLM, SGLang, TensorRT-LLM), one file each.

`serving.engine: <name>` (and optionally `serving.engine_version`) picks a profile; it sets every
`serving` field the experiment leaves unset (scheduler, token budget, max_num_seqs, block size,
chunking, preemption), the KV cache dtype when `inference.kvcache_precision` is auto, the
CUDA-graph capture sizes that decode steps are padded to, and the host-side model of a step
(simcore/serving/engines/host_fit.py, fitted by benchmarks/fit_serving.py). docs/serving.md cites
where each default comes from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from simcore.errors import SimcoreError
from simcore.registry import Registry

_REGISTRY: Registry = Registry("engine profile (field 'serving.engine')", __name__)


@dataclass(frozen=True)
class HostModel:
    """Host time of one engine step, in seconds: const + per_request x requests in the step +
    per_token x tokens scheduled in it. overlap: the engine schedules step n+1 while the GPU runs step n
    (vLLM async scheduling, SGLang's overlap scheduler), which hides the per-step constant under the GPU
    time; the per-request and per-token work (input preparation, sampling, output processing) stays on
    the path between steps. `step` gives the step's time from its GPU time."""

    const_s: float
    per_request_s: float
    per_token_s: float
    overlap: bool

    def time(self, requests: int, tokens: int) -> float:
        return self.const_s + self.per_request_s * requests + self.per_token_s * tokens

    def step(self, gpu_s: float, requests: int, tokens: int) -> float:
        exposed = self.per_request_s * requests + self.per_token_s * tokens
        if self.overlap:
            return max(gpu_s, self.const_s) + exposed
        return gpu_s + self.const_s + exposed


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    defaults: dict  # serving fields the profile sets when the experiment leaves them unset
    capture_sizes: tuple[int, ...]  # decode batch sizes with a CUDA graph (batches are padded up to one)
    kv_dtype: Callable[[object], str]  # run -> KV cache dtype when inference.kvcache_precision is auto
    host: HostModel
    version: str | None = None
    notes: tuple[str, ...] = field(default=())
    # the CUDA-graph padding request is a live sequence of the engine and holds one of max_num_seqs
    # (TensorRT-LLM; docs/validation.md, "Validating against measured servers")
    padding_holds_seq: bool = False
    # a decode batch is padded up to the next captured size; False: only a batch of a captured size replays a graph
    # (TensorRT-LLM cuda_graph_config.enable_padding; serving.cuda_graph_padding sets it)
    padding: bool = True
    # the batch of step n+1 is formed when step n starts (vLLM async scheduling: the engine core schedules the
    # next batch before it blocks on the running one), so a request arriving during step n joins step n+2
    admit_lag: bool = False
    # host time per model layer of a step that carries prompt tokens and runs without a CUDA graph (the engine
    # captures graphs of generation-only batches, so such a step launches its kernels one by one): the step takes
    # at least layers x this. Fitted per engine with the host constants (host_fit.py eager_layer_us)
    eager_layer_s: float = 0.0
    # GPU-side stall per MoE layer of a step that carries prompt tokens, once per step (shared by its prompts; the
    # decodes in the step wait for it too). Its mechanism is unknown; fitted to the vLLM 0.18 MoE rows' mean TTFT
    # (host_fit.py moe_prompt_layer_us; docs/serving.md "The MoE prompt-step constant")
    moe_prompt_layer_s: float = 0.0
    # a step's first tokens are sent once the next step is launched; a prefill step launches eagerly, kernel by
    # kernel, and its launch ends about when it has run (SGLang's overlap loop processes batch n's results after
    # launching batch n+1), so a prefill step's first tokens go out at the end of the next step when that is a prefill
    first_token_waits_launch: bool = False


def register(fn: Callable[[str | None], Profile]) -> Callable:
    """A profile module registers one function: engine version (or None: the latest) -> Profile."""
    return _REGISTRY.register(fn.__module__.rsplit(".", 1)[-1], fn)


def engine_names() -> list[str]:
    return _REGISTRY.names()


def get_profile(name: str, version: str | None = None) -> Profile:
    return _REGISTRY.get(name)(version)


def version_tuple(v: str | None) -> tuple[int, ...]:
    """'0.12.0' -> (0, 12, 0); '1.0.0rc3' -> (1, 0, 0); None -> a version above every release."""
    if not v:
        return (10**6,)
    out = []
    for part in v.split(".")[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        out.append(int(digits) if digits else 0)
    return tuple(out)


def fitted_s(engine: str, key: str) -> float:
    """One of an engine's fitted per-layer constants in host_fit.py (eager_layer_us: the host floor per layer of a
    graph-less prompt step; moe_prompt_layer_us: the stall per MoE layer of a prompt step), in seconds; 0 when the
    engine has none fitted."""
    from simcore.serving.engines.host_fit import HOST

    return HOST[engine].get(key, 0.0) * 1e-6


def host_model(engine: str, overlap: bool) -> HostModel:
    """The fitted host constants of an engine (simcore/serving/engines/host_fit.py)."""
    from simcore.serving.engines.host_fit import HOST

    c = HOST[engine]
    return HostModel(c["const_us"] * 1e-6, c["per_request_us"] * 1e-6, c["per_token_us"] * 1e-6, overlap)


HOST_KEYS = ("const_us", "per_request_us", "per_token_us")


def load_host_profile(path: str, engine: str) -> dict:
    """The host constants (us) of a profile file written by `simcore validate --fit`; bad files are
    one-line errors naming serving.engine_profile."""
    from pathlib import Path

    from simcore.config.validation import read_yaml, yaml_kind

    where = f"serving.engine_profile: {path}"
    p = Path(path).expanduser()
    if not p.is_file():
        raise SimcoreError(f"{where}: no such file (write one with `simcore validate RESULTS --fit`)")
    raw = read_yaml(p)
    if not isinstance(raw, dict):
        raise SimcoreError(f"{where}: expected a mapping with engine and host, got {yaml_kind(raw)}")
    extra = sorted(set(raw) - {"engine", "engine_version", "host", "fit", "about"})
    if extra:
        raise SimcoreError(f"{where}: unknown key {extra[0]!r}; allowed: engine, engine_version, host, fit, about")
    if raw.get("engine") != engine:
        raise SimcoreError(f"{where}: a profile for engine {raw.get('engine')!r}, but serving.engine is {engine!r}")
    host = raw.get("host")
    if not isinstance(host, dict) or set(host) != set(HOST_KEYS):
        got = ", ".join(map(str, host)) if isinstance(host, dict) else yaml_kind(host)
        raise SimcoreError(f"{where}: host needs exactly {', '.join(HOST_KEYS)} (microseconds), got {got}")
    for k in HOST_KEYS:
        v = host[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
            raise SimcoreError(f"{where}: host.{k} = {v!r}; allowed: a finite number of microseconds >= 0")
    return {k: float(host[k]) for k in HOST_KEYS}


def pads(n: int, sizes: tuple[int, ...]) -> bool:
    """Whether a decode batch of at most n sequences is ever padded: some size below the largest captured size
    <= n has no graph of its own (TensorRT-LLM pads only up to max_batch_size = n: cuda_graph_runner.py
    _get_padded_batch; with every size captured no batch is padded and no padding request exists)."""
    top = max((s for s in sizes if s <= n), default=0)
    have = set(sizes)
    return any(b not in have for b in range(1, top))


def padded(n: int, sizes: tuple[int, ...]) -> int:
    """The captured batch size a decode batch of n runs as (n itself past the largest capture size)."""
    for s in sizes:
        if s >= n:
            return s
    return n


def _check_batch_wait(run, cfg) -> None:
    """Batch waiting is TensorRT-LLM's (its scheduler), and TensorRT-LLM skips it under attention DP
    (py_executor.py _schedule: `not self.enable_attention_dp and self.enable_batch_waiting`)."""
    if not (cfg.batch_wait_iters or cfg.batch_wait_tokens_ratio):
        return
    what = f"serving.batch_wait_iters = {cfg.batch_wait_iters}, batch_wait_tokens_ratio = {cfg.batch_wait_tokens_ratio:g}"
    if cfg.scheduler != "trtllm":
        raise SimcoreError(f"{what}: TensorRT-LLM's batch waiting; allowed with scheduler trtllm (serving.engine "
                           f"trtllm), not {cfg.scheduler!r}")
    if run.par.attention_dp > 1:
        raise SimcoreError(f"{what}: TensorRT-LLM does not wait under attention DP (parallelism.attention_dp = "
                           f"{run.par.attention_dp}); allowed: 0 and 0 there")


def resolve(run, cfg):
    """(run, serving config, profile or None) with the profile's defaults applied to what is unset."""
    if cfg.engine is None:
        # fields that only mean something under an engine profile, and what they need the engine for
        for key, value, why in (
                ("engine_profile", cfg.engine_profile or None, "the engine whose host constants it holds"),
                ("cuda_graph_batch_sizes", cfg.cuda_graph_batch_sizes, "whose steps replay the graphs"),
                ("cuda_graph_padding", cfg.cuda_graph_padding, "whose decode steps are padded to a graph"),
                ("eager_layer_us", cfg.eager_layer_us, "whose prompt steps launch without a graph"),
                ("moe_prompt_layer_us", cfg.moe_prompt_layer_us, "whose fitted prompt-step constant it replaces")):
            if value is not None:
                shown = f"{value!s:.60}" if isinstance(value, list) else value  # a long list of sizes is cut
                raise SimcoreError(f"serving.{key}: {shown}: needs serving.engine ({why}): {', '.join(engine_names())}")
        _check_batch_wait(run, cfg)
        return run, cfg, None
    prof = get_profile(cfg.engine, cfg.engine_version)
    if cfg.engine_profile:  # fitted host constants replace the profile's own; overlap stays the engine's
        c = load_host_profile(cfg.engine_profile, cfg.engine)
        prof = dataclasses.replace(prof, host=HostModel(c["const_us"] * 1e-6, c["per_request_us"] * 1e-6,
                                                        c["per_token_us"] * 1e-6, prof.host.overlap))
    unset = {k: v for k, v in prof.defaults.items() if k not in cfg.model_fields_set}
    cfg = cfg.model_copy(update=unset)
    _check_batch_wait(run, cfg)
    if cfg.cuda_graph_batch_sizes is not None:
        prof = dataclasses.replace(prof, capture_sizes=tuple(sorted(set(cfg.cuda_graph_batch_sizes))))
    if cfg.cuda_graph_padding is not None:
        prof = dataclasses.replace(prof, padding=cfg.cuda_graph_padding)
    if cfg.eager_layer_us is not None:
        prof = dataclasses.replace(prof, eager_layer_s=cfg.eager_layer_us * 1e-6)
    if cfg.moe_prompt_layer_us is not None:
        prof = dataclasses.replace(prof, moe_prompt_layer_s=cfg.moe_prompt_layer_us * 1e-6)
    if not run.experiment.engine.cuda_graphs:
        # no graphs (TensorRT-LLM cuda_graph_config: null; cuda_graph_runner.py maybe_get_cuda_graph returns none and
        # the forward pass launches op by op): nothing to pad to, so no padding request either; every decode step takes
        # the profile's eager floor (IterationCost) on top of engine.kernel_launch_us per kernel
        if cfg.cuda_graph_batch_sizes is not None:
            raise SimcoreError(f"serving.cuda_graph_batch_sizes: {cfg.cuda_graph_batch_sizes!s:.60}: set with "
                               f"engine.cuda_graphs false (no graphs); allowed: one of the two")
        prof = dataclasses.replace(prof, capture_sizes=())
    ranks = run.par.attention_dp  # max_num_seqs is the replica's: each attention-DP rank schedules its share
    if prof.padding_holds_seq and prof.padding and pads(cfg.max_num_seqs // ranks, prof.capture_sizes):
        # a batch below the limit is padded: the padding request exists and holds a slot, one on every rank
        cfg = cfg.model_copy(update={"max_num_seqs": cfg.max_num_seqs - ranks})
    kv = prof.kv_dtype(run) if run.experiment.inference.kvcache_precision == "auto" else run.kv_dtype
    # the run carries the resolved settings, so the summary shows what was simulated
    run = dataclasses.replace(run, kv_dtype=kv, experiment=run.experiment.model_copy(update={"serving": cfg}))
    return run, cfg, prof
