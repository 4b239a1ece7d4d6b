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


def host_model(engine: str, overlap: bool) -> HostModel:
    """The fitted host constants of an engine (simcore/serving/engines/host_fit.py)."""
    from simcore.serving.engines.host_fit import HOST

    c = HOST[engine]
    return HostModel(c["const_us"] * 1e-6, c["per_request_us"] * 1e-6, c["per_token_us"] * 1e-6, overlap)


def padded(n: int, sizes: tuple[int, ...]) -> int:
    """The captured batch size a decode batch of n runs as (n itself past the largest capture size)."""
    for s in sizes:
        if s >= n:
            return s
    return n


def resolve(run, cfg):
    """(run, serving config, profile or None) with the profile's defaults applied to what is unset."""
    if cfg.engine is None:
        return run, cfg, None
    prof = get_profile(cfg.engine, cfg.engine_version)
    unset = {k: v for k, v in prof.defaults.items() if k not in cfg.model_fields_set}
    cfg = cfg.model_copy(update=unset)
    kv = prof.kv_dtype(run) if run.experiment.inference.kvcache_precision == "auto" else run.kv_dtype
    # the run carries the resolved settings, so the summary shows what was simulated
    run = dataclasses.replace(run, kv_dtype=kv, experiment=run.experiment.model_copy(update={"serving": cfg}))
    return run, cfg, prof
