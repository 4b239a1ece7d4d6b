"""GPU recommender: every catalog GPU x tp x pp x replica count, checked for memory, timed by
the simulator, priced from the GPU YAML, ranked by cost per million output tokens.

Each replica serves ceil(concurrency / replicas) requests as one static batch; its TTFT and
TPOT come from simcore.planner.latency.py (the simulator, memoized per shape).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass

from simcore.config.experiment import pp_problem, tp_problem
from simcore.config.hardware import gpu_names, load_gpu, load_system, profile_info
from simcore.config.model import load_model
from simcore.errors import SimcoreError, unknown
from simcore.planner.capacity import budget_for, check_gpu_mem_util, check_weights
from simcore.planner.kv_detail import check_context, kv_dtype_for, positive
from simcore.config.hardware import GIB
from simcore.memory import BLOCK_SIZE, MAX_NUM_BATCHED_TOKENS
from simcore.planner.latency import predict
from simcore.planner.latency import ttft as predict_ttft

DEGREES = (1, 2, 4, 8)  # tp (within one node) and pp (stages) tried; 8 x 8 = 64 GPUs per replica


@dataclass
class Option:
    gpu: str
    tp: int | None  # None: the rejection holds for every tp
    pp: int | None  # None: the rejection holds for every pp
    replicas: int | None  # None: the rejection holds for every replica count
    gpus: int | None
    batch_per_replica: int | None = None
    status: str = "ok"  # ok | rejected
    check: str | None = None  # what failed: precision | tp | pp | memory | ttft | tpot
    reason: str | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    output_tokens_per_s: float | None = None
    cost_per_hour_usd: float | None = None
    cost_per_million_output_tokens_usd: float | None = None
    max_concurrent_per_replica: int | None = None
    memory_per_gpu_bytes: dict | None = None
    efficiency_profile: dict | None = None  # config.hardware.profile_info: measured on this GPU or borrowed


@dataclass
class Recommendations:
    request: dict
    options: list[Option]  # meet every SLO, best (cheapest per output token) first
    rejected: list[Option]
    candidates_evaluated: int
    shapes_simulated: int
    elapsed_s: float = 0.0

    @property
    def best(self) -> Option | None:
        return self.options[0] if self.options else None

    def as_dict(self) -> dict:
        """The `simcore recommend --json` document (docs/planner.md lists every key)."""
        return {
            **self.request,
            "candidates_evaluated": self.candidates_evaluated,
            "shapes_simulated": self.shapes_simulated,
            "elapsed_s": self.elapsed_s,
            "recommendations": [{"rank": i + 1, **asdict(o)} for i, o in enumerate(self.options)],
            "rejected": [asdict(o) for o in self.rejected],
        }


def _gpu_list(gpus) -> list[str]:
    known = gpu_names()
    if gpus is None:
        return known
    names = [g.strip() for g in (gpus.split(",") if isinstance(gpus, str) else gpus)]
    if not names or not all(names):
        raise SimcoreError(f"gpus = {gpus!r}: give GPU names separated by commas; known: {', '.join(known)}")
    for g in names:
        if g not in known:
            raise unknown("GPU", g, known)
    return list(dict.fromkeys(names))


def _slo(name: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise SimcoreError(f"{name} = {value!r}: must be a number of seconds > 0")
    return float(value)


@dataclass(frozen=True)
class _Task:
    """One (gpu, tp, pp) and the replica counts to check on it; everything a worker needs."""

    model: str
    gpu: str
    tp: int
    pp: int
    every: int  # replica counts within max_gpus: 1 to every
    isl: int
    osl: int
    ctx: int
    conc: int
    ttft_slo: float | None
    tpot_slo: float | None
    weights: str
    kv_dtype: str
    gpu_mem_util: float
    max_num_batched_tokens: int
    exhaustive: bool


def _evaluate(task: _Task) -> tuple[int, list[Option]]:
    """(candidates settled, options) of one task; a model that fits no replica count is one option."""
    return task.every, _options(task)


def _options(k: _Task) -> list[Option]:
    """Memory check, then (for what fits) the simulator's prediction, for each replica count."""
    budget = budget_for(k.model, k.gpu, k.tp, k.pp, k.weights, k.kv_dtype, k.gpu_mem_util,
                        k.max_num_batched_tokens, None, BLOCK_SIZE)  # max_num_seqs: vLLM's default for the GPU
    room = budget.max_concurrent(k.ctx)
    memory = {"usable": budget.capacity, "weights": budget.weights, "activations": budget.activations,
              "runtime_overhead": budget.overhead, "kv_cache_capacity": budget.kv_capacity}
    if not budget.fits:
        opt = Option(k.gpu, k.tp, k.pp, None, None, max_concurrent_per_replica=0, memory_per_gpu_bytes=memory)
        _reject(opt, "memory", f"does not fit: weights, activations and runtime need "
                f"{budget.needed(budget.binding) / GIB:.1f} GiB per GPU of {budget.capacity / GIB:.1f} GiB")
        return [opt]
    out = []
    if k.every > k.conc:
        out.append(Option(k.gpu, k.tp, k.pp, None, None, status="rejected", check="replicas",
                          reason=f"{k.conc + 1} to {k.every} replicas: more replicas than the {k.conc} concurrent "
                          f"requests (the extra ones would idle)"))
    missed: dict[str, tuple[int, float]] = {}  # SLO -> (smallest batch that misses it, its value)
    for r in range(min(k.every, k.conc), 0, -1):  # batch per replica grows as replicas shrink
        b = math.ceil(k.conc / r)
        need = b * budget.request_bytes(k.ctx)
        opt = Option(k.gpu, k.tp, k.pp, r, k.tp * k.pp * r, batch_per_replica=b, max_concurrent_per_replica=room,
                     memory_per_gpu_bytes={**memory, "kv_cache_needed": need})
        if room < b:
            _reject(opt, "memory", f"does not fit: {b} requests of {k.ctx:,} tokens need {need / GIB:.1f} GiB of "
                    f"KV cache per GPU of {budget.kv_capacity / GIB:.1f} GiB left (room for {room})")
        elif not k.exhaustive and any(b > b0 for b0, _ in missed.values()):
            _bound(opt, missed)
        else:
            _time(opt, k, missed)
        out.append(opt)
    return out


def _bound(opt: Option, missed: dict[str, tuple[int, float]]) -> None:
    """Latency only grows with the batch: a smaller batch on this deployment already missed an SLO."""
    check = "ttft" if "ttft" in missed and opt.batch_per_replica > missed["ttft"][0] else "tpot"
    b0, value = missed[check]
    shown = f"{value:.2f} s" if check == "ttft" else f"{value * 1e3:.1f} ms"
    _reject(opt, check, f"{check.upper()} over the SLO: batch {b0} per replica already takes {shown} and a larger "
            f"batch takes longer (not simulated; --exhaustive simulates it)")


def _time(opt: Option, k: _Task, missed: dict[str, tuple[int, float]]) -> None:
    shape = (opt.gpu, k.tp, k.pp, opt.batch_per_replica, k.isl, k.osl, k.weights, k.kv_dtype)
    ttft = predict_ttft(k.model, *shape)
    opt.ttft_s = ttft
    if k.ttft_slo is not None and ttft > k.ttft_slo:  # TPOT cannot save it: skip its two decode passes
        _reject(opt, "ttft", f"TTFT {ttft:.2f} s > SLO {k.ttft_slo:g} s")
        missed.setdefault("ttft", (opt.batch_per_replica, ttft))
        return
    pred = predict(k.model, *shape)
    opt.tpot_s, opt.e2e_s = pred.tpot_s, pred.e2e_s
    opt.output_tokens_per_s = k.conc * k.osl / pred.e2e_s
    opt.cost_per_hour_usd = opt.gpus * load_gpu(opt.gpu).cost_per_hour_usd
    opt.cost_per_million_output_tokens_usd = opt.cost_per_hour_usd / (opt.output_tokens_per_s * 3600) * 1e6
    if k.tpot_slo is not None and pred.tpot_s > k.tpot_slo:
        _reject(opt, "tpot", f"TPOT {pred.tpot_s * 1e3:.1f} ms > SLO {k.tpot_slo * 1e3:g} ms")
        missed.setdefault("tpot", (opt.batch_per_replica, pred.tpot_s))


def _reject(opt: Option, check: str, reason: str) -> None:
    opt.status, opt.check, opt.reason = "rejected", check, reason


def _workers(tasks: list[_Task], workers: int | None) -> int:
    if workers is None:
        workers = os.cpu_count() or 1
    return max(1, min(workers, len(tasks) // 8))  # a pool pays off only with a few tasks per worker


def find_gpu_recommendations(model, context_length: int | None = None, batch_size: int = 1, *,
                             input_len: int | None = None, output_len: int | None = None,
                             concurrency: int | None = None, ttft_slo: float | None = None,
                             tpot_slo: float | None = None, max_gpus: int = 64, gpus=None, kv_dtype: str = "auto",
                             weights: str = "auto", gpu_mem_util: float = 0.9,
                             max_num_batched_tokens: int = MAX_NUM_BATCHED_TOKENS, progress=None,
                             workers: int | None = None, exhaustive: bool = False,
                             calibrated_only: bool = False) -> Recommendations:
    """Rank deployments of `model` serving `concurrency` (alias batch_size) concurrent requests of
    input_len + output_len tokens. context_length (default input_len + output_len) is the cache each
    request reserves. SLOs in seconds; None means no limit. progress(done, total) is called as it goes;
    workers: processes for the simulations (default: one per CPU). Latency only grows with the batch,
    so once a batch misses an SLO on a deployment, larger batches there are rejected without being
    simulated; exhaustive=True simulates them too. calibrated_only: consider only GPUs whose
    efficiency profile was measured on them (not borrowed from another GPU)."""
    start = time.perf_counter()
    name = str(getattr(model, "source", model))
    spec = load_model(name)
    if input_len is None or output_len is None:
        raise SimcoreError("input_len and output_len are required: give the prompt and output tokens per request")
    isl, osl = positive("input_len", input_len), positive("output_len", output_len)
    ctx = check_context(spec, "context_length", context_length if context_length is not None else isl + osl)
    if ctx < isl + osl:
        raise SimcoreError(f"context_length = {ctx}: must be at least input_len + output_len = {isl + osl}")
    conc = positive("concurrency", concurrency if concurrency is not None else batch_size)
    positive("max_gpus", max_gpus)
    positive("max_num_batched_tokens", max_num_batched_tokens)
    ttft_slo, tpot_slo = _slo("ttft_slo", ttft_slo), _slo("tpot_slo", tpot_slo)
    gpu_mem_util = check_gpu_mem_util(gpu_mem_util)
    check_weights(weights)
    kv = kv_dtype_for(kv_dtype)
    names = _gpu_list(gpus)
    profiles = {g: profile_info(load_gpu(g)) for g in names}
    if calibrated_only:
        names = [g for g in names if not profiles[g]["borrowed"]]
        if not names:
            measured = [g for g in gpu_names() if not profile_info(load_gpu(g))["borrowed"]]
            raise SimcoreError(f"calibrated_only: none of {', '.join(profiles)} has an efficiency profile measured on "
                               f"it; measured: {', '.join(measured) or 'none'} (`simcore calibrate` adds one)")

    rejected: list[Option] = []
    tasks: list[_Task] = []
    evaluated = 0  # candidates settled without the simulator (a rule rejects them all at once)
    for g in names:
        node = load_system(g).cluster.gpus_per_node
        tps = [t for t in DEGREES if t <= min(node, max_gpus)]
        combos = [(t, p, max_gpus // (t * p)) for t in tps for p in DEGREES if t * p <= max_gpus]
        if kv == "fp8" and not load_gpu(g).supports("fp8"):
            rejected.append(Option(g, None, None, None, None, status="rejected", check="precision",
                                   reason=f"fp8 KV cache: {g} has no fp8 support"))
            evaluated += sum(every for _, _, every in combos)
            continue
        for t, p, every in combos:  # every: replica counts 1 to `every` stay within max_gpus
            why = tp_problem(spec, t)
            if why or pp_problem(spec, p):
                check, text = ("tp", f"tp {t} {why}") if why else ("pp", f"pp {p} exceeds the {spec.layers} layers")
                rejected.append(Option(g, t, None if why else p, None, None, status="rejected", check=check,
                                       reason=text))
                evaluated += every
                continue
            tasks.append(_Task(name, g, t, p, every, isl, osl, ctx, conc, ttft_slo, tpot_slo, weights, kv_dtype,
                               gpu_mem_util, max_num_batched_tokens, exhaustive))
    total = evaluated + sum(k.every for k in tasks)
    options: list[Option] = []
    n = _workers(tasks, workers)
    with multiprocessing.get_context("fork").Pool(n) if n > 1 else contextlib.nullcontext() as pool:
        results = pool.imap_unordered(_evaluate, tasks) if pool else map(_evaluate, tasks)
        for count, opts in results:
            evaluated += count
            if progress:
                progress(evaluated, total)
            for o in opts:
                (options if o.status == "ok" else rejected).append(o)
    for o in options + rejected:
        o.efficiency_profile = profiles[o.gpu]
    options.sort(key=lambda o: (o.cost_per_million_output_tokens_usd, o.gpus, o.tpot_s))
    rejected.sort(key=lambda o: (o.gpu, o.tp or 0, o.pp or 0, o.replicas or 0))
    shapes = {(o.gpu, o.tp, o.pp, o.batch_per_replica) for o in options + rejected if o.ttft_s is not None}
    request = {
        "model": spec.name, "input_len": isl, "output_len": osl, "context_length": ctx, "concurrency": conc,
        "ttft_slo_s": ttft_slo, "tpot_slo_s": tpot_slo, "max_gpus": max_gpus, "gpus_considered": names,
        "kv_cache_dtype": kv, "weights": weights, "gpu_memory_utilization": gpu_mem_util,
        "max_num_batched_tokens": max_num_batched_tokens, "exhaustive": exhaustive,
        "calibrated_only": calibrated_only,
    }
    return Recommendations(request, options, rejected, evaluated, len(shapes), time.perf_counter() - start)
