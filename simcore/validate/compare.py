"""Simulate measured records and compare: signed errors per metric and statistic, and the summary.

error = predicted / measured - 1 (positive: simcore predicts slower / more). Latencies compare in
ms for every statistic both sides have (mean, p50, p90, p99; a file's p95 has no simulated
counterpart), throughput in requests/s and output tokens/s.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from simcore.errors import SimcoreError
from simcore.serving.silicon import MEASURED_ROUNDS, Measurement, Refused, experiment_for_record

LATENCIES = ("ttft", "tpot", "itl", "e2e")
SIM_STATS = ("mean", "p50", "p90", "p99")
THROUGHPUT = ("requests_per_s", "output_tokens_per_s")


@dataclass
class Outcome:
    """One record after simulation: the experiment and the simulated figures, or why it was refused."""

    record: Measurement
    experiment: dict | None
    result: dict  # {'latency': {metric: {stat: ms}}, 'throughput': {...}, ...} or {'refused': reason, 'detail'}

    @property
    def refused(self) -> str | None:
        return self.result.get("refused")


def refusal(exc: SimcoreError) -> str:
    """A short reason for a record the schema or the simulator rejects."""
    text = str(exc)
    if "attention_dp" in text:
        return "attention_dp"
    if "leaves no room for a KV block" in text:
        return "weights do not fit"
    return text.split(":")[0][:40]


def simulate(exp: dict, overrides: tuple[str, ...] = ()) -> dict:
    """One experiment (in a worker process): simulated figures in ms, or {'refused': reason}."""
    from simcore.runner import run_dict

    try:
        s = run_dict(exp, list(overrides), source="validate")
    except SimcoreError as exc:
        return {"refused": refusal(exc), "detail": str(exc).splitlines()[0][:200]}
    if not s["requests_completed"] or s["ttft_s"]["mean"] is None:
        why = "KV cache too small" if "KV blocks" in str(s["dropped_reasons"]) else "nothing completed"
        return {"refused": why, "detail": str(s["dropped_reasons"])[:200]}
    lat = {m: {k: (v * 1e3 if v is not None else None) for k, v in s[f"{m}_s"].items()} for m in LATENCIES}
    return {"latency": lat, "throughput": dict(s["throughput"]), "preemptions": s["preemptions"],
            "dropped": s["requests_dropped"]}


def experiments(records: list[Measurement], requests: int | None = None,
                rounds: int = MEASURED_ROUNDS) -> list[Outcome]:
    """Each record's experiment; records simcore cannot express come back refused."""
    out = []
    for rec in records:
        try:
            out.append(Outcome(rec, experiment_for_record(rec, requests=requests, rounds=rounds), {}))
        except Refused as exc:
            out.append(Outcome(rec, None, {"refused": exc.reason, "detail": str(exc)}))
    return out


def run(outcomes: list[Outcome], jobs: int = 1, overrides: tuple[str, ...] = (), progress=None,
        cache=None) -> list[Outcome]:
    """Simulate every outcome that has an experiment, in a process pool of `jobs` workers (in this
    process when jobs is 1). progress(done, total) after each; cache: an object with get(exp) and
    put(exp, result) (the benchmark's disk cache), or None."""
    todo = []
    for i, o in enumerate(outcomes):
        if o.experiment is None:
            continue
        hit = cache.get(o.experiment, overrides) if cache is not None else None
        if hit is not None:
            o.result = hit
        else:
            todo.append(i)

    def done(i: int, res: dict, n: int) -> None:
        outcomes[i].result = res
        if cache is not None:
            cache.put(outcomes[i].experiment, overrides, res)
        if progress is not None:
            progress(n, len(todo))

    if jobs <= 1 or len(todo) <= 1:
        for n, i in enumerate(todo, 1):
            done(i, simulate(outcomes[i].experiment, overrides), n)
        return outcomes
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
        futs = {pool.submit(simulate, outcomes[i].experiment, overrides): i for i in todo}
        for n, fut in enumerate(as_completed(futs), 1):
            done(futs[fut], fut.result(), n)
    return outcomes


def with_seed(exp: dict, offset: int) -> dict:
    """The experiment with its workload seed moved by `offset` (0: the experiment itself)."""
    if not offset:
        return exp
    w = exp["workload"]
    return {**exp, "workload": {**w, "seed": w.get("seed", 0) + offset}}


def mean_result(results: list[dict]) -> dict:
    """The mean of simulated results of one experiment under different seeds, figure by figure; refused if any is."""
    for r in results:
        if r.get("refused"):
            return r
    lat = {m: {st: statistics.fmean([r["latency"][m][st] for r in results])
               if all(r["latency"][m].get(st) is not None for r in results) else None
               for st in results[0]["latency"][m]}
           for m in results[0]["latency"]}
    thr = {k: statistics.fmean([r["throughput"][k] for r in results]) for k in results[0]["throughput"]}
    return {"latency": lat, "throughput": thr,
            "preemptions": statistics.fmean([r["preemptions"] for r in results]),
            "dropped": statistics.fmean([r["dropped"] for r in results])}


MAX_SEEDS = 100  # --seeds: client seeds a record's mean may be taken over


def run_seeds(outcomes: list[Outcome], seeds: int = 1, jobs: int = 1, overrides: tuple[str, ...] = (), progress=None,
              cache=None) -> list[Outcome]:
    """run() once per client seed (the experiment's workload.seed, then +1, ... : the random re-issue delays of the
    benchmark client and InferenceX's random lengths drawn anew) and keep each outcome's mean over the seeds, the
    expected figures of one measured run rather than one draw of them (docs/validation.md, "Results now"). seeds 1
    is run() itself; the first seed's runs are the ones a single-seed run caches."""
    if seeds <= 1:
        return run(outcomes, jobs, overrides, progress, cache)
    draws = [run([Outcome(o.record, None if o.experiment is None else with_seed(o.experiment, k), {}) for o in outcomes],
                 jobs, overrides, progress, cache) for k in range(seeds)]
    for i, o in enumerate(outcomes):
        if o.experiment is not None:
            o.result = mean_result([d[i].result for d in draws])
    return outcomes


def err(pred: float, meas: float) -> float:
    return pred / meas - 1


def comparisons(o: Outcome) -> list[dict]:
    """[{metric, stat, unit, measured, predicted, error}] for every figure both sides have."""
    if o.refused or not o.result:
        return []
    out = []
    for m in LATENCIES:
        meas, pred = o.record.latency.get(m, {}), o.result["latency"].get(m, {})
        for st in SIM_STATS:
            a, b = meas.get(st), pred.get(st)
            if a is not None and b is not None and a > 0:
                out.append({"metric": m, "stat": st, "unit": "ms", "measured": a, "predicted": b, "error": err(b, a)})
    for k in THROUGHPUT:
        a, b = o.record.throughput.get(k), o.result["throughput"].get(k)
        if a and b is not None:
            out.append({"metric": "throughput", "stat": k, "unit": "1/s", "measured": a, "predicted": b,
                        "error": err(b, a)})
    return out


def share(xs: list[float], bound: float) -> float:
    return sum(abs(x) <= bound for x in xs) / len(xs)


def summarize(outcomes: list[Outcome]) -> dict:
    """Per (metric, stat): records, median |error|, signed median, share within 10% / 20%; refusals by reason.
    Records whose deployment was partly assumed (Measurement.assumed: a disagg row without its worker counts)
    are summarized apart, under "apart", and stay out of the main figures."""
    main = [o for o in outcomes if not o.record.assumed]
    s = _summary(main, outcomes)
    aside = [o for o in outcomes if o.record.assumed]
    if aside:
        a = _summary(aside, aside)
        s["apart"] = {"why": sorted({o.record.assumed for o in aside}), "records": a["records"],
                      "simulated": a["simulated"], "metrics": a["metrics"]}
    return s


def _summary(outcomes: list[Outcome], every: list[Outcome]) -> dict:
    """summarize's figures over `outcomes`, its refusals over `every`."""
    by: dict[tuple, list] = {}
    for o in outcomes:
        for c in comparisons(o):
            by.setdefault((c["metric"], c["stat"]), []).append(c["error"])
    order = {m: i for i, m in enumerate(LATENCIES + ("throughput",))}
    metrics = []
    for (m, st), xs in sorted(by.items(), key=lambda kv: (order[kv[0][0]], kv[0][1] != "mean", kv[0][1])):
        metrics.append({"metric": m, "stat": st, "n": len(xs), "median_abs_error": statistics.median(map(abs, xs)),
                        "median_error": statistics.median(xs), "within_10": share(xs, 0.1),
                        "within_20": share(xs, 0.2)})
    refused: dict[str, int] = {}
    for o in every:
        if o.refused:
            refused[o.refused] = refused.get(o.refused, 0) + 1
    refused = dict(sorted(refused.items(), key=lambda kv: -kv[1]))
    return {"records": len(every), "simulated": sum(1 for o in every if o.result and not o.refused),
            "refused": refused, "metrics": metrics}


def summary_lines(s: dict) -> list[str]:
    """The summary as text lines (the command and benchmarks/serving_silicon.py print these)."""
    lines = []
    for m in s["metrics"]:
        lines.append(f"{m['metric'].upper() if m['metric'] in LATENCIES else m['metric']} {m['stat']}: median "
                     f"|error| {100 * m['median_abs_error']:.1f}% (signed {100 * m['median_error']:+.1f}%), within "
                     f"10% {100 * m['within_10']:.0f}%, within 20% {100 * m['within_20']:.0f}% ({m['n']} records)")
    a = s.get("apart")
    if a:
        lines.append(f"Reported apart, not in the figures above: {a['records']} records whose deployment is partly "
                     f"assumed ({'; '.join(a['why'])}):")
        lines += ["  " + line for line in summary_lines({**a, "refused": {}, "apart": None})[:-1]]
    nref = sum(s["refused"].values())
    lines.append(f"Simulated {s['simulated']} of {s['records']} records; refused {nref} "
                 f"({100 * nref / max(s['records'], 1):.1f}%)" + (": " if nref else "")
                 + ", ".join(f"{k} {v}" for k, v in s["refused"].items()))
    return lines
