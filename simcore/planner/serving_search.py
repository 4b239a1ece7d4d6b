"""Recommend on the serving simulator: offered load (a request rate with an arrival process, a
closed-loop concurrency, or a trace), request lengths, and SLOs at percentiles; every catalog GPU
x tp x pp x ep x KV dtype x token budget, each at the fewest replicas that meet the SLOs.

Three stages, cheapest first:
1. rules: tp / pp / ep shapes the model refuses, fp8 KV on GPUs without fp8, memory (the plan's
   budget: the model must fit and one request of the longest context must fit its KV cache);
2. the static estimate (planner/latency.py): one request alone already over a latency SLO is
   rejected; otherwise the batch the KV cache holds, run as a static batch, gives a capacity in
   requests/s per replica, hence an estimated replica count and cost. Only the cheapest estimates
   (`simulate_top` of them within `SIMULATE_WITHIN` x the best, and each GPU kind's cheapest within
   twice that) go on;
3. the serving simulator (simcore/serving/simulate.py): one replica at rate / replicas (Poisson
   splitting: burstier than round robin, so conservative), or ceil(concurrency / replicas) clients,
   for replica counts found by expanding then bisecting; the fewest replicas meeting every SLO win.

Pure functions over plain data; the CLI (planner/cli.py) and the web page call `recommend_serving`.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from simcore.config.experiment import experiment_from_dict, pp_problem, resolve, tp_problem
from simcore.config.hardware import load_gpu, load_system
from simcore.config.model import load_model
from simcore.errors import SimcoreError
from simcore.planner.capacity import budget_for, check_gpu_mem_util, check_weights
from simcore.planner.deploy import Deployment, commands, engine_model, trtllm_config
from simcore.planner.kv_detail import check_context, kv_dtype_for, positive
from simcore.planner.latency import predict
from simcore.config.hardware import GIB
from simcore.memory import BLOCK_SIZE, MAX_NUM_SEQS
from simcore.planner.recommend import DEGREES, _gpu_list
from simcore.planner.serving_inputs import Lengths, Load, SLOTarget, parse_slo

SIMULATE_WITHIN = 2.0  # simulate deployments whose estimated cost is within this factor of the best estimate
MAX_SIMS = 7  # serving runs per deployment while searching its replica count
PROCESSES = ("poisson", "gamma", "fixed")


# -- results -----------------------------------------------------------------------------------


@dataclass
class Candidate:
    gpu: str
    tp: int | None
    pp: int | None
    ep: int | None = None
    kv_cache_dtype: str | None = None
    max_num_batched_tokens: int | None = None
    replicas: int | None = None
    gpus: int | None = None
    status: str = "ok"  # ok | rejected
    check: str | None = None  # precision | tp | pp | ep | memory | ttft | tpot | estimate | replicas | drops
    reason: str | None = None
    stage: str = "rules"  # rules | estimate | simulated: what settled it
    ttft_s: float | None = None  # at the TTFT SLO's percentile (p90 without one)
    tpot_s: float | None = None  # at the TPOT SLO's percentile (p90 without one)
    latency: dict | None = None  # ttft_s / tpot_s / e2e_s: mean, p50, p90, p99 of the chosen run
    goodput: float | None = None  # fraction of the chosen run's requests meeting every SLO threshold
    prefill_replicas: int | None = None  # disaggregated: replicas that only prefill (None: colocated)
    decode_replicas: int | None = None  # disaggregated: replicas that only decode
    output_tokens_per_s: float | None = None  # all replicas
    output_tokens_per_s_per_gpu: float | None = None
    cost_per_hour_usd: float | None = None
    cost_per_million_output_tokens_usd: float | None = None
    estimated_replicas: int | None = None
    estimated_cost_per_million_output_tokens_usd: float | None = None
    kv_cache_capacity_bytes: float | None = None
    trtllm_free_fraction: float | None = None
    runs: list = field(default_factory=list)  # (replicas, meets SLOs, ttft_s, tpot_s, tokens/s/GPU) tried

    @property
    def key(self) -> tuple:
        return (self.gpu, self.tp, self.pp, self.ep, self.kv_cache_dtype, self.max_num_batched_tokens)


@dataclass
class ServingRecommendations:
    request: dict
    options: list[Candidate]  # meet every SLO; cheapest per output token, then fewest GPUs
    rejected: list[Candidate]
    pareto: list[dict]  # throughput per GPU vs latency, over every simulated run
    deployments_considered: int
    serving_runs: int
    elapsed_s: float = 0.0
    model_id: str = ""

    @property
    def best(self) -> Candidate | None:
        return self.options[0] if self.options else None

    def deployment(self, c: Candidate | None = None) -> Deployment | None:
        c = c or self.best
        if c is None:
            return None
        q = self.request
        return Deployment(self.model_id, c.tp, c.pp, c.ep, c.replicas, c.max_num_batched_tokens, q["max_num_seqs"],
                          c.kv_cache_dtype, q["gpu_memory_utilization"], q["max_model_len"], c.trtllm_free_fraction)

    def as_dict(self) -> dict:
        """`simcore recommend --json` in serving mode (docs/planner.md lists every key)."""
        d = self.deployment()
        return {
            **self.request, "mode": "serving",
            "deployments_considered": self.deployments_considered, "serving_runs": self.serving_runs,
            "elapsed_s": self.elapsed_s,
            "recommendations": [{"rank": i + 1, **asdict(o)} for i, o in enumerate(self.options)],
            "rejected": [asdict(o) for o in self.rejected],
            "pareto": self.pareto,
            "deploy": ({"commands": commands(d), "trtllm_config": trtllm_config(d)} if d else None),
        }


# -- the search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    model: str
    gpu: str
    tp: int
    pp: int
    ep: int
    kv: str
    mnbt: int
    weights: str
    gpu_mem_util: float
    max_num_seqs: int
    load: Load
    lengths: Lengths
    ctx: int
    slos: tuple
    rmax: int
    r0: int = 1
    goodput: float | None = None  # least fraction of requests that must meet every SLO threshold


def _reject(c: Candidate, check: str, reason: str, stage: str) -> Candidate:
    c.status, c.check, c.reason, c.stage = "rejected", check, reason, stage
    return c


def _base(j: _Job) -> Candidate:
    return Candidate(j.gpu, j.tp, j.pp, j.ep, j.kv, j.mnbt)


def _estimate(j: _Job) -> Candidate:
    """Memory rules and the static estimate of one deployment (no serving run)."""
    c = _base(j)
    budget = budget_for(j.model, j.gpu, j.tp, j.pp, j.weights, j.kv, j.gpu_mem_util, j.mnbt, j.max_num_seqs,
                        BLOCK_SIZE)
    c.kv_cache_capacity_bytes = budget.kv_capacity
    if not budget.fits:
        return _reject(c, "memory", f"does not fit: weights, activations and runtime need "
                       f"{budget.needed(budget.binding) / GIB:.1f} GiB per GPU of {budget.capacity / GIB:.1f} GiB",
                       "rules")
    room = budget.max_concurrent(j.ctx)
    if room < 1:
        return _reject(c, "memory", f"one request of {j.ctx:,} tokens needs "
                       f"{budget.request_bytes(j.ctx) / GIB:.2f} GiB of KV cache per GPU; "
                       f"{budget.kv_capacity / GIB:.2f} GiB left", "rules")
    device = budget.capacity / j.gpu_mem_util
    free = device - budget.weights - budget.activations - budget.overhead
    c.trtllm_free_fraction = min(1.0, budget.kv_capacity / free) if free > 0 else None
    isl, osl = j.lengths.input_len, j.lengths.output_len
    alone = predict(j.model, j.gpu, j.tp, j.pp, 1, isl, osl, j.weights, j.kv)
    for slo in j.slos:
        value = alone.ttft_s if slo.metric == "ttft" else alone.tpot_s
        if value > slo.seconds:
            shown = f"{value:.2f} s" if slo.metric == "ttft" else f"{value * 1e3:.1f} ms"
            return _reject(c, slo.metric, f"{slo.metric.upper()} of one request alone is {shown} (static estimate), "
                           f"over the SLO {slo.label}", "estimate")
    batch = max(1, min(room, j.max_num_seqs))
    full = predict(j.model, j.gpu, j.tp, j.pp, batch, isl, osl, j.weights, j.kv)
    per_replica = batch / full.e2e_s  # requests/s of back-to-back static batches: a capacity estimate
    if j.load.rate is not None:
        r = math.ceil(j.load.rate / per_replica)
    elif j.load.concurrency is not None:
        r = math.ceil(j.load.concurrency / batch)
    else:
        r = 1
    c.estimated_replicas = r
    gpus = r * j.tp * j.pp
    price = load_gpu(j.gpu).cost_per_hour_usd
    served = r * per_replica  # requests/s the replicas could serve; the offered load caps what they do serve
    if j.load.rate is not None:
        served = min(served, j.load.rate)
    elif j.load.concurrency is not None:
        served = min(served, j.load.concurrency / full.e2e_s)
    c.estimated_cost_per_million_output_tokens_usd = gpus * price / (served * osl * 3600) * 1e6
    if r > j.rmax:
        return _reject(c, "replicas", f"needs about {r} replicas ({gpus} GPUs, static estimate of "
                       f"{per_replica:.2f} requests/s per replica), over the GPU limit", "estimate")
    return c


def serve_deployment(model: str, gpu: str, *, tp: int = 1, pp: int = 1, ep: int = 1, replicas: int = 1,
                     rate: float | None = None, concurrency: int | None = None, input_len: int = 1024,
                     output_len: int = 128, input_cv: float = 0.0, output_cv: float = 0.0, requests: int = 400,
                     kv_dtype: str = "auto", max_num_batched_tokens: int = 8192, max_num_seqs: int = MAX_NUM_SEQS,
                     gpu_mem_util: float = 0.9, weights: str = "auto", seed: int = 0):
    """One deployment's serving run, as the search prices it (one replica at rate / replicas), with
    its time series kept: a ServingResult (summary, metrics with .series)."""
    if (rate is None) == (concurrency is None):
        raise SimcoreError("load: give exactly one of rate (requests/s) or concurrency (clients)")
    lengths = Lengths(positive("input_len", input_len), positive("output_len", output_len), input_cv, output_cv)
    j = _Job(str(model), gpu, tp, pp, ep, kv_dtype, max_num_batched_tokens, weights, gpu_mem_util, max_num_seqs,
             Load(rate, concurrency, requests=positive("requests", requests), seed=seed), lengths, lengths.longest,
             (), replicas)
    return _serving_run(j, replicas, keep_series=True)


def _serving_run(j: _Job, r: int, keep_series: bool = False, split: tuple[int, int] | None = None):
    """One serving run: one replica at rate / r (or ceil(concurrency / r) clients), or the whole
    trace over r replicas; with `split` = (prefill, decode) replicas, the whole disaggregated system
    at the full rate."""
    lo = j.lengths
    wl = {"kind": "requests", "requests": j.load.requests, "seed": j.load.seed,
          "prompt_tokens": lo.spec(lo.input_len, lo.input_cv), "output_tokens": lo.spec(lo.output_len, lo.output_cv)}
    dp = 1
    if j.load.trace:
        wl["arrival"], wl["trace"], dp = {"process": "trace"}, j.load.trace, r
    elif j.load.rate is not None:
        wl["arrival"] = {"process": j.load.process, "rate": j.load.rate / (1 if split else r),
                         **({"cv": j.load.cv} if j.load.process == "gamma" else {})}
    else:
        wl["arrival"] = {"process": "closed", "concurrency": math.ceil(j.load.concurrency / r)}
    data = {"model": j.model, "hardware": j.gpu, "parallelism": {"tp": j.tp, "pp": j.pp, "ep": j.ep, "dp": dp},
            "precision": {"weights": j.weights}, "inference": {"kvcache_precision": j.kv},
            "engine": {"gpu_memory_utilization": j.gpu_mem_util}, "workload": wl,
            "serving": {"max_num_batched_tokens": j.mnbt, "max_num_seqs": j.max_num_seqs}}
    if split:
        data["parallelism"]["dp"] = sum(split)
        data["serving"].update(router="least_outstanding", disaggregation={
            "enabled": True, "prefill_replicas": split[0], "decode_replicas": split[1]})
    from simcore.serving.simulate import simulate

    res = simulate(resolve(experiment_from_dict(data, source="recommend")), keep_series=keep_series)
    return res if keep_series else (res.summary, res.metrics)


def _judge(j: _Job, r: int, split: tuple[int, int] | None = None) -> dict:
    s, m = _serving_run(j, r, split=split)
    done = ~np.isnan(m.finish)
    out = m.reqs.output[done]
    ttft = (m.first_token - m.arrival)[done]
    multi = out > 1
    tpot = ((m.finish - m.first_token)[done][multi]) / (out[multi] - 1)
    ttft_at = next((t for t in j.slos if t.metric == "ttft"), SLOTarget("ttft", 90, math.inf))
    tpot_at = next((t for t in j.slos if t.metric == "tpot"), SLOTarget("tpot", 90, math.inf))
    v_ttft, v_tpot = ttft_at.of(ttft), tpot_at.of(tpot)
    misses = [t.label for t, v in ((ttft_at, v_ttft), (tpot_at, v_tpot)) if v > t.seconds]
    per_req = np.zeros(len(out))
    per_req[multi] = tpot
    good = float(((ttft <= ttft_at.seconds) & (per_req <= tpot_at.seconds)).sum()) / len(m.reqs.output)
    if j.goodput is not None and good < j.goodput:
        misses.append(f"goodput {good:.1%} < {j.goodput:.0%}")
    if j.load.rate is not None and not j.load.trace:
        tokens = j.load.rate * float(m.reqs.output.mean())  # offered: a deployment meeting the SLOs keeps up
    else:
        tokens = s["throughput"]["output_tokens_per_s"] * (1 if j.load.trace else r)
    gpus = r * j.tp * j.pp
    dropped = s["requests_dropped"]
    return {"replicas": r, "ok": not misses and not dropped, "ttft_s": v_ttft, "tpot_s": v_tpot,
            "misses": misses, "goodput": good, "dropped": dropped, "dropped_reasons": s["dropped_reasons"],
            "output_tokens_per_s": tokens, "per_gpu": tokens / gpus,
            "latency": {k: s[k] for k in ("ttft_s", "tpot_s", "e2e_s")}}


def _simulate(j: _Job) -> Candidate:
    """The fewest replicas (up to rmax) meeting every SLO: expand from the estimate, then bisect."""
    c = _base(j)
    runs: dict[int, dict] = {}

    def ok(r: int) -> bool:
        if r not in runs:
            runs[r] = _judge(j, r)
        return runs[r]["ok"]

    lo, hi, r = 0, None, min(max(1, j.r0), j.rmax)
    for _ in range(MAX_SIMS):
        if ok(r):
            hi = r
        else:
            lo = r
        if hi is None:
            if r >= j.rmax:
                break
            r = min(j.rmax, max(r + 1, math.ceil(r * 1.5)))
        else:
            if hi - lo <= 1:
                break
            r = hi - 1 if lo == 0 and len(runs) == 1 else (lo + hi) // 2
    c.runs = [(k, v["ok"], v["ttft_s"], v["tpot_s"], v["per_gpu"]) for k, v in sorted(runs.items())]
    c.stage = "simulated"
    if hi is None:
        last = runs[max(runs)]
        why = (f"{last['dropped']} requests dropped ({', '.join(last['dropped_reasons'])})" if last["dropped"]
               else "misses " + ", ".join(last["misses"]) + f" (simulated: TTFT {last['ttft_s']:.2f} s, "
               f"TPOT {last['tpot_s'] * 1e3:.1f} ms at those percentiles)")
        missed = " ".join(last["misses"])
        _reject(c, "drops" if last["dropped"] else "ttft" if "TTFT" in missed else "tpot" if "TPOT" in missed
                else "goodput",
                f"at {max(runs)} replicas ({max(runs) * j.tp * j.pp} GPUs, the most within the limit or "
                f"searched): {why}", "simulated")
        c.replicas = max(runs)
        return c
    best = runs[hi]
    c.replicas, c.gpus = hi, hi * j.tp * j.pp
    c.ttft_s, c.tpot_s, c.latency, c.goodput = best["ttft_s"], best["tpot_s"], best["latency"], best["goodput"]
    c.output_tokens_per_s, c.output_tokens_per_s_per_gpu = best["output_tokens_per_s"], best["per_gpu"]
    c.cost_per_hour_usd = c.gpus * load_gpu(j.gpu).cost_per_hour_usd
    c.cost_per_million_output_tokens_usd = c.cost_per_hour_usd / (c.output_tokens_per_s * 3600) * 1e6
    return c


def _run_simulations(j: _Job) -> tuple[_Job, Candidate]:
    return j, _simulate(j)


def disagg_splits(n: int) -> list[tuple[int, int]]:
    """(prefill, decode) replica splits tried for a colocated winner of n replicas: n - 1 and n
    replicas in all, a third or half of them prefilling (DistServe's ratios for chat-like loads
    sit in between), fewest GPUs first."""
    out = []
    for total in (n - 1, n):
        for share in (3, 2):
            p = max(1, round(total / share))
            if total >= 2 and p < total and (p, total - p) not in out:
                out.append((p, total - p))
    return out


def _disagg(args: tuple[_Job, int]) -> list[Candidate]:
    """Disaggregated prefill/decode splits of a colocated winner's deployment (same GPU and
    parallelism per replica), each simulated as a whole system at the full rate."""
    j, n = args
    out = []
    for p, d in disagg_splits(n):
        run = _judge(j, p + d, split=(p, d))
        c = _base(j)
        c.stage, c.prefill_replicas, c.decode_replicas = "simulated", p, d
        c.replicas, c.gpus = p + d, (p + d) * j.tp * j.pp
        c.runs = [(p + d, run["ok"], run["ttft_s"], run["tpot_s"], run["per_gpu"])]
        c.ttft_s, c.tpot_s, c.latency, c.goodput = run["ttft_s"], run["tpot_s"], run["latency"], run["goodput"]
        if not run["ok"]:
            why = (f"{run['dropped']} requests dropped" if run["dropped"] else "misses " + ", ".join(run["misses"]))
            out.append(_reject(c, "disagg", f"{p} prefill + {d} decode replicas: {why} (simulated: TTFT "
                               f"{run['ttft_s']:.2f} s, TPOT {run['tpot_s'] * 1e3:.1f} ms)", "simulated"))
            continue
        c.output_tokens_per_s, c.output_tokens_per_s_per_gpu = run["output_tokens_per_s"], run["per_gpu"]
        c.cost_per_hour_usd = c.gpus * load_gpu(j.gpu).cost_per_hour_usd
        c.cost_per_million_output_tokens_usd = c.cost_per_hour_usd / (c.output_tokens_per_s * 3600) * 1e6
        out.append(c)
    return out


def pareto_front(points: list[dict]) -> list[dict]:
    """Points no other point beats on both: more output tokens/s per GPU and lower latency."""
    front, best = [], -math.inf
    for p in sorted(points, key=lambda p: (p["latency_s"], -p["output_tokens_per_s_per_gpu"])):
        if p["output_tokens_per_s_per_gpu"] > best:
            front.append(p)
            best = p["output_tokens_per_s_per_gpu"]
    return front


def _pool(n: int):
    return multiprocessing.get_context("fork").Pool(n) if n > 1 else contextlib.nullcontext()


def recommend_serving(model, *, input_len: int, output_len: int, rate: float | None = None,
                      concurrency: int | None = None, arrival: str = "poisson", arrival_cv: float = 1.0,
                      trace: str | None = None, input_cv: float = 0.0, output_cv: float = 0.0,
                      ttft_slo=None, tpot_slo=None, max_gpus: int = 64, gpus=None, kv_dtypes=("auto",),
                      batched_tokens=(8192,), weights: str = "auto", gpu_mem_util: float = 0.9,
                      max_num_seqs: int = MAX_NUM_SEQS, requests: int = 400, seed: int = 0,
                      simulate_top: int = 12, exhaustive: bool = False, progress=None,
                      workers: int | None = None, goodput: float | None = None,
                      disagg: int = 0) -> ServingRecommendations:
    """Rank deployments of `model` for an offered load by cost per million output tokens at the
    SLOs (ttft_slo / tpot_slo: seconds, or 'p90:1.0'-style strings; a bare number is the mean).
    progress(done, total) is called as deployments settle."""
    start = time.perf_counter()
    name = str(getattr(model, "source", model))
    spec = load_model(name)
    isl, osl = positive("input_len", input_len), positive("output_len", output_len)
    for n, v in (("input_cv", input_cv), ("output_cv", output_cv)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 10:
            raise SimcoreError(f"{n}: {v!r}: must be a coefficient of variation from 0 (fixed lengths) to 10")
    lengths = Lengths(isl, osl, float(input_cv), float(output_cv))
    ctx = check_context(spec, "longest request (input + output, lognormal tails at 4x the mean)", lengths.longest)
    given = [x for x in (rate, concurrency, trace) if x is not None]
    if len(given) != 1:
        raise SimcoreError("load: give exactly one of rate (requests/s), concurrency (clients) or trace (a file); "
                           f"got {len(given)}")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf):
        raise SimcoreError(f"rate: {rate!r}: must be requests per second > 0")
    if concurrency is not None:
        positive("concurrency", concurrency)
    if arrival not in PROCESSES:
        raise SimcoreError(f"arrival: {arrival!r}: allowed {', '.join(PROCESSES)}")
    if isinstance(arrival_cv, bool) or not isinstance(arrival_cv, (int, float)) or not 0 < arrival_cv <= 100:
        raise SimcoreError(f"arrival_cv: {arrival_cv!r}: must be a coefficient of variation > 0 (1: Poisson-like)")
    if goodput is not None and (isinstance(goodput, bool) or not isinstance(goodput, (int, float))
                                or not 0 < goodput <= 1):
        raise SimcoreError(f"goodput: {goodput!r}: must be a fraction of requests in (0, 1], e.g. 0.9")
    if isinstance(disagg, bool) or not isinstance(disagg, int) or disagg < 0:
        raise SimcoreError(f"disagg: {disagg!r}: must be a whole number >= 0 (colocated winners to try "
                           f"disaggregated)")
    if disagg and rate is None:
        raise SimcoreError("disagg: splitting prefill and decode is searched for a --rate load only")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SimcoreError(f"seed: {seed!r}: must be a whole number >= 0")
    if trace is not None and not os.path.isfile(trace):
        raise SimcoreError(f"trace: {trace!r}: no such file; give a CSV or JSONL of arrival_s, prompt_tokens, "
                           f"output_tokens")
    load = Load(rate, concurrency, arrival, float(arrival_cv), trace, positive("requests", requests), seed)
    slos = tuple(s for s in (parse_slo("ttft_slo", ttft_slo, "ttft"), parse_slo("tpot_slo", tpot_slo, "tpot")) if s)
    positive("max_gpus", max_gpus)
    positive("max_num_seqs", max_num_seqs)
    positive("simulate_top", simulate_top)
    gpu_mem_util = check_gpu_mem_util(gpu_mem_util)
    check_weights(weights)
    kvs = list(dict.fromkeys(kv_dtype_for(k) for k in kv_dtypes))
    mnbts = list(dict.fromkeys(positive("max_num_batched_tokens", b) for b in batched_tokens))
    names = _gpu_list(gpus)

    rejected: list[Candidate] = []
    jobs: list[_Job] = []
    for g in names:
        node = load_system(g).cluster.gpus_per_node
        fp8 = load_gpu(g).supports("fp8")
        for t in (t for t in DEGREES if t <= min(node, max_gpus)):
            why = tp_problem(spec, t)
            eps = [1] + ([t] if spec.is_moe and t > 1 and spec.num_experts % t == 0 else [])
            for p in (p for p in DEGREES if t * p <= max_gpus):
                for kv in kvs:
                    for b in mnbts:
                        for e in eps:
                            c = Candidate(g, t, p, e, kv, b)
                            if why:
                                rejected.append(_reject(c, "tp", f"tp {t} {why}", "rules"))
                            elif pp_problem(spec, p):
                                rejected.append(_reject(c, "pp", f"pp {p} exceeds the {spec.layers} layers", "rules"))
                            elif kv == "fp8" and not fp8:
                                rejected.append(_reject(c, "precision", f"fp8 KV cache: {g} has no fp8 support",
                                                        "rules"))
                            else:
                                jobs.append(_Job(name, g, t, p, e, kv, b, weights, gpu_mem_util, max_num_seqs, load,
                                                 lengths, ctx, slos, max_gpus // (t * p),
                                                 goodput=goodput))
    total = len(rejected) + len(jobs)
    done = len(rejected)
    nproc = max(1, min(workers if workers is not None else (os.cpu_count() or 1), len(jobs) // 4))
    estimates: list[tuple[_Job, Candidate]] = []
    with _pool(nproc) as pool:
        for j, c in zip(jobs, pool.imap(_estimate, jobs) if pool else map(_estimate, jobs)):
            if c.status == "ok":
                estimates.append((j, c))
            else:
                rejected.append(c)
                done += 1
                if progress:
                    progress(done, total)
        estimates.sort(key=lambda jc: jc[1].estimated_cost_per_million_output_tokens_usd)
        cut = estimates[0][1].estimated_cost_per_million_output_tokens_usd * SIMULATE_WITHIN if estimates else 0
        per_gpu = {}  # the cheapest estimate of each GPU kind is simulated too, so every GPU gets a verdict
        for j, c in estimates:
            per_gpu.setdefault(c.gpu, c.key)
        keep = [exhaustive or (i < simulate_top and c.estimated_cost_per_million_output_tokens_usd <= cut)
                or (per_gpu[c.gpu] == c.key and c.estimated_cost_per_million_output_tokens_usd <= cut * 2)
                for i, (j, c) in enumerate(estimates)]
        chosen = [jc for jc, k in zip(estimates, keep) if k]
        for j, c in (jc for jc, k in zip(estimates, keep) if not k):
            best = estimates[0][1].estimated_cost_per_million_output_tokens_usd
            rejected.append(_reject(c, "estimate", f"static estimate ${c.estimated_cost_per_million_output_tokens_usd:,.2f}"
                                    f"/M output tokens at ~{c.estimated_replicas} replicas; not among the {len(chosen)} "
                                    f"simulated (the cheapest estimates, best ${best:,.2f}/M, and each GPU's cheapest; "
                                    f"--exhaustive simulates every one)", "estimate"))
            done += 1
        if progress:
            progress(done, total)
        sims = [replace(j, r0=c.estimated_replicas) for j, c in chosen]
        options: list[Candidate] = []
        points: list[dict] = []
        est = {c.key: c for _, c in chosen}
        for j, c in pool.imap_unordered(_run_simulations, sims) if pool else map(_run_simulations, sims):
            e = est[c.key]
            c.estimated_replicas = e.estimated_replicas
            c.estimated_cost_per_million_output_tokens_usd = e.estimated_cost_per_million_output_tokens_usd
            c.kv_cache_capacity_bytes, c.trtllm_free_fraction = e.kv_cache_capacity_bytes, e.trtllm_free_fraction
            (options if c.status == "ok" else rejected).append(c)
            for r, ok, ttft, tpot, per_gpu in c.runs:
                points.append({"gpu": c.gpu, "tp": c.tp, "pp": c.pp, "ep": c.ep, "kv_cache_dtype": c.kv_cache_dtype,
                               "max_num_batched_tokens": c.max_num_batched_tokens, "replicas": r,
                               "gpus": r * c.tp * c.pp, "meets_slos": ok, "ttft_s": ttft, "tpot_s": tpot,
                               "latency_s": tpot, "output_tokens_per_s_per_gpu": per_gpu})
            done += 1
            if progress:
                progress(done, total)
        if disagg:
            byk = {(j.gpu, j.tp, j.pp, j.ep, j.kv, j.mnbt): j for j in sims}
            winners = sorted(options, key=lambda o: o.cost_per_million_output_tokens_usd)[:disagg]
            winners = [o for o in winners if o.replicas >= 2]
            tries = [(byk[o.key], o.replicas) for o in winners]
            for o, found in zip(winners, pool.imap(_disagg, tries) if pool else map(_disagg, tries)):
                for c in found:
                    c.kv_cache_capacity_bytes, c.trtllm_free_fraction = o.kv_cache_capacity_bytes, o.trtllm_free_fraction
                    (options if c.status == "ok" else rejected).append(c)
                    r, ok, ttft, tpot, per_gpu = c.runs[0]
                    points.append({"gpu": c.gpu, "tp": c.tp, "pp": c.pp, "ep": c.ep,
                                   "kv_cache_dtype": c.kv_cache_dtype, "max_num_batched_tokens": c.max_num_batched_tokens,
                                   "replicas": r, "gpus": c.gpus, "meets_slos": ok, "ttft_s": ttft, "tpot_s": tpot,
                                   "latency_s": tpot, "output_tokens_per_s_per_gpu": per_gpu,
                                   "prefill_replicas": c.prefill_replicas, "decode_replicas": c.decode_replicas})
    options.sort(key=lambda o: (o.cost_per_million_output_tokens_usd, o.gpus, o.tpot_s))
    order = {"rules": 0, "estimate": 1, "simulated": 2}
    rejected.sort(key=lambda o: (order[o.stage], o.gpu, o.tp or 0, o.pp or 0, o.ep or 0, o.kv_cache_dtype or "",
                                 o.max_num_batched_tokens or 0))
    tpot_at = next((t for t in slos if t.metric == "tpot"), None)
    request = {
        "model": spec.name, "input_len": isl, "output_len": osl, "input_cv": input_cv, "output_cv": output_cv,
        "rate": rate, "arrival": arrival if rate is not None else ("trace" if trace else "closed"),
        "arrival_cv": arrival_cv, "concurrency": concurrency, "trace": trace, "requests_per_run": requests,
        "ttft_slo_s": next((t.seconds for t in slos if t.metric == "ttft"), None),
        "tpot_slo_s": tpot_at.seconds if tpot_at else None,
        "ttft_slo_percentile": next((t.percentile for t in slos if t.metric == "ttft"), None),
        "tpot_slo_percentile": tpot_at.percentile if tpot_at else None, "goodput_target": goodput,
        "max_gpus": max_gpus, "gpus_considered": names, "kv_cache_dtypes": kvs, "max_num_batched_tokens": mnbts,
        "max_num_seqs": max_num_seqs, "weights": weights, "gpu_memory_utilization": gpu_mem_util,
        "max_model_len": ctx, "exhaustive": exhaustive, "disagg": disagg,
        "pareto_latency": f"{tpot_at.label.split(' TPOT')[0] if tpot_at else 'p90'} TPOT, seconds",
    }
    return ServingRecommendations(request, options, rejected, pareto_front(points), total,
                                  sum(len(o.runs) for o in options + rejected), time.perf_counter() - start,
                                  engine_model(spec.name))


def summary_line(rec: ServingRecommendations) -> str:
    from collections import Counter

    checks = Counter(o.check for o in rec.rejected)
    return (f"{rec.deployments_considered:,} deployments, {rec.serving_runs} serving runs in {rec.elapsed_s:.1f} s; "
            f"{len(rec.options)} meet the SLOs; rejected: "
            + (", ".join(f"{n} {c}" for c, n in sorted(checks.items())) or "none"))

