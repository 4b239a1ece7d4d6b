"""Request-level serving simulator: invariants, the static-batch anchor, policies, CLI and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.run.static import simulate as static_simulate
from simcore.serving.simulate import simulate
from simcore.serving.workload import generate


def serving_run(workload: dict, serving: dict | None = None, model="llama-3.1-8b", **extra):
    data = {"model": model, "hardware": "h100-sxm", "workload": {"kind": "requests", **workload},
            "serving": serving or {}, **extra}
    return resolve(experiment_from_dict(data))


def run_checked(run, **kw):
    res = simulate(run, keep_series=True, **kw)
    check_invariants(res)
    return res


def check_invariants(res) -> None:
    m, reqs = res.metrics, res.metrics.reqs
    n = len(reqs)
    s = res.summary
    assert m.arrivals + s["requests_not_arrived"] == n  # every request arrives once
    assert s["requests_completed"] + s["requests_dropped"] == m.arrivals  # ... and finishes or is dropped
    done = ~np.isnan(m.finish)
    assert np.all(m.first_token[done] >= m.arrival[done])  # no token before the prefill
    assert np.all(m.finish[done] >= m.first_token[done])
    if s["requests_completed"] == n:  # each request emits exactly its output tokens: one ITL gap after each but the first
        m.itl_stats()
        assert m.itl_n == int((reqs.output - 1).sum())
    for rep in res.replicas:
        p = rep.pool
        assert p.allocated_total == p.freed_total  # every block handed out came back
        assert p.free == p.capacity
        assert p.peak_used <= p.capacity
        times = [row[0] for row in m.series if row[1] == rep.idx]
        assert all(a <= b for a, b in zip(times, times[1:]))  # the clock never goes back


def test_single_request_reproduces_the_static_batch_1_prediction():
    isl, osl = 1024, 128
    run = serving_run({"requests": 1, "arrival": {"process": "fixed", "rate": 1.0},
                       "prompt_tokens": {"value": isl}, "output_tokens": {"value": osl}},
                      {"iteration_overhead_us": 0})
    s = run_checked(run).summary
    static = static_simulate(resolve(experiment_from_dict({
        "model": "llama-3.1-8b", "hardware": "h100-sxm",
        "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": isl, "output_tokens": osl}})))
    assert s["ttft_s"]["mean"] == pytest.approx(static.ttft, rel=0.01)
    assert s["e2e_s"]["mean"] == pytest.approx(static.e2e, rel=0.01)
    assert s["tpot_s"]["mean"] == pytest.approx(float(static.step_times.mean()), rel=0.01)


def test_iteration_overhead_adds_once_per_step():
    wl = {"requests": 1, "arrival": {"process": "fixed", "rate": 1.0}, "prompt_tokens": {"value": 256},
          "output_tokens": {"value": 16}}
    base = simulate(serving_run(wl, {"iteration_overhead_us": 0})).summary["e2e_s"]["mean"]
    slow = simulate(serving_run(wl, {"iteration_overhead_us": 1000})).summary["e2e_s"]["mean"]
    assert slow - base == pytest.approx(16 * 1e-3, rel=1e-6)  # one prefill + 15 decode steps


RANDOM_WORKLOADS = [
    {"requests": 60, "seed": seed, "arrival": arrival, "prompt_tokens": p, "output_tokens": o, **more}
    for seed, (arrival, p, o, more) in enumerate([
        ({"process": "poisson", "rate": 20.0}, {"dist": "lognormal", "mean": 600, "cv": 1.0, "max": 6000},
         {"dist": "uniform", "low": 1, "high": 200}, {}),
        ({"process": "gamma", "rate": 50.0, "cv": 3.0}, {"dist": "normal", "mean": 300, "std": 200},
         {"dist": "lognormal", "mean": 64, "cv": 1.5}, {"shared_prefix": {"tokens": 200, "fraction": 0.7}}),
        ({"process": "closed", "concurrency": 8}, {"dist": "uniform", "low": 10, "high": 3000},
         {"dist": "fixed", "value": 40}, {"sessions": {"turns": 3, "think_time_s": 0.5}}),
        ({"process": "fixed", "rate": 100.0}, {"dist": "fixed", "value": 2000}, {"dist": "fixed", "value": 100}, {}),
    ])
]


@pytest.mark.parametrize("wl", RANDOM_WORKLOADS)
@pytest.mark.parametrize("serving", [
    {},
    {"prefix_caching": True},
    {"scheduler": "prefill_first", "max_num_seqs": 8},
    {"scheduler": "sarathi"},
    {"scheduler": "static", "max_num_seqs": 16},
    {"max_num_batched_tokens": 512, "chunked_prefill": True, "prefix_caching": True},
])
def test_invariants_hold_on_random_workloads(wl, serving):
    run_checked(serving_run(wl, serving))


def test_preemption_under_a_tiny_cache_keeps_the_invariants():
    # 8B weights leave ~2 GiB at 22% of 80 GiB: a few hundred blocks, so long sequences preempt
    run = serving_run({"requests": 40, "arrival": {"process": "closed", "concurrency": 32},
                       "prompt_tokens": {"value": 1500}, "output_tokens": {"value": 600}},
                      {"prefix_caching": True}, engine={"gpu_memory_utilization": 0.25})
    res = run_checked(run)
    assert res.summary["preemptions"] > 0
    assert res.summary["requests_completed"] == 40


def test_seeded_runs_are_identical_and_seeds_differ():
    wl = RANDOM_WORKLOADS[0]
    a = simulate(serving_run(wl)).summary
    b = simulate(serving_run(wl)).summary
    c = simulate(serving_run({**wl, "seed": 99})).summary
    for key in ("ttft_s", "e2e_s", "itl_s", "throughput", "preemptions"):
        assert a[key] == b[key]
    assert a["ttft_s"] != c["ttft_s"]


def test_closed_loop_keeps_exactly_c_requests_in_flight():
    c = 4
    res = simulate(serving_run({"requests": 24, "arrival": {"process": "closed", "concurrency": c},
                                "prompt_tokens": {"dist": "uniform", "low": 50, "high": 900},
                                "output_tokens": {"dist": "uniform", "low": 2, "high": 60}}))
    m = res.metrics
    # the client's next request is sent the instant its previous one finishes
    assert np.array_equal(m.arrival[c:], m.finish[:-c])
    events = sorted([(t, 1) for t in m.arrival] + [(t, -1) for t in m.finish], key=lambda e: (e[0], e[1]))
    level = np.cumsum([d for _, d in events])
    assert level.max() == c


def test_closed_loop_reissue_delay_holds_the_next_request_back():
    c, t = 2, 0.25
    wl = {"requests": 6, "prompt_tokens": {"value": 300}, "output_tokens": {"value": 8}}
    res = simulate(serving_run({**wl, "arrival": {"process": "closed", "concurrency": c, "reissue_delay_s": t}}))
    m = res.metrics
    assert np.all(m.arrival[:c] == 0.0)
    assert m.arrival[c:] == pytest.approx(m.finish[:-c] + t)  # each client's next request, t after its last token
    # both clients' requests run together and the engine idles through the delay: every round is the same
    # as without it, only t later, so the last of the three rounds ends 2 t later
    base = simulate(serving_run({**wl, "arrival": {"process": "closed", "concurrency": c}})).metrics
    assert m.finish[-1] - base.finish[-1] == pytest.approx(2 * t, rel=1e-9)


def test_closed_loop_exponential_reissue_delay_is_seeded_with_the_given_mean():
    c, t = 2, 0.05
    wl = {"requests": 400, "seed": 3, "prompt_tokens": {"value": 64}, "output_tokens": {"value": 2}}
    arrival = {"process": "closed", "concurrency": c, "reissue_delay_s": t, "reissue_delay_dist": "exponential"}
    m = simulate(serving_run({**wl, "arrival": arrival})).metrics
    gaps = m.arrival[c:] - m.finish[:-c]  # each client's next request, one draw after its last token
    assert np.all(m.arrival[:c] == 0.0) and np.all(gaps > 0)
    assert len(set(np.round(gaps, 12))) == len(gaps)  # drawn, not one fixed delay
    # exponential: mean t and standard deviation t, so the mean of 398 draws is t within 4 standard errors
    assert abs(gaps.mean() - t) < 4 * t / np.sqrt(len(gaps))
    assert gaps.std() == pytest.approx(t, rel=0.25)
    again = simulate(serving_run({**wl, "arrival": arrival})).metrics
    assert np.array_equal(m.arrival, again.arrival)  # seeded
    fixed = simulate(serving_run({**wl, "arrival": {**arrival, "reissue_delay_dist": "fixed"}})).metrics
    assert fixed.arrival[c:] == pytest.approx(fixed.finish[:-c] + t)
    # fewer requests than clients: nobody re-issues, nothing is drawn
    few = simulate(serving_run({**wl, "requests": 1, "arrival": {**arrival, "concurrency": 4}})).metrics
    assert list(few.arrival) == [0.0] and few.finish[0] > 0


def test_closed_loop_lognormal_reissue_delay_has_the_given_mean_and_spread():
    """lognormal with mean t and cv k: sigma^2 = ln(1 + k^2) = ln 10 for k = 3, so the median is t / sqrt(10) and
    most draws fall below the mean; seeded like the exponential client."""
    c, t, k = 2, 0.05, 3.0
    wl = {"requests": 4002, "seed": 5, "prompt_tokens": {"value": 16}, "output_tokens": {"value": 2}}
    arrival = {"process": "closed", "concurrency": c, "reissue_delay_s": t, "reissue_delay_dist": "lognormal",
               "reissue_delay_cv": k}
    m = simulate(serving_run({**wl, "arrival": arrival})).metrics
    gaps = m.arrival[c:] - m.finish[:-c]
    assert np.all(gaps > 0) and len(gaps) == 4000
    # the log of each draw is normal: mean ln(t) - ln(10) / 2, variance ln(10) (standard error of 4000 draws 0.024)
    logs = np.log(gaps)
    assert logs.mean() == pytest.approx(np.log(t) - np.log(10) / 2, abs=0.1)
    assert logs.var() == pytest.approx(np.log(10), rel=0.1)
    assert np.median(gaps) == pytest.approx(t / np.sqrt(10), rel=0.1)
    assert np.mean(gaps < t) > 0.75  # heavy right tail: Phi(sqrt(ln 10) / 2) = 0.775 of the draws are below the mean
    again = simulate(serving_run({**wl, "arrival": arrival})).metrics
    assert np.array_equal(m.arrival, again.arrival)


def test_shared_prefix_hits_the_cache_and_sessions_hit_more():
    wl = {"requests": 80, "arrival": {"process": "poisson", "rate": 10.0}, "prompt_tokens": {"value": 200},
          "output_tokens": {"value": 20}, "shared_prefix": {"tokens": 1024, "fraction": 1.0}}
    on = run_checked(serving_run(wl, {"prefix_caching": True})).summary
    off = simulate(serving_run(wl)).summary
    assert on["prefix_cache_hit_rate"] > 0.7
    assert off["prefix_cache_hit_rate"] == 0
    assert on["ttft_s"]["mean"] < off["ttft_s"]["mean"]


def test_workload_generation_is_seeded_and_shaped():
    e = experiment_from_dict({"model": "llama-3.1-8b", "hardware": "h100-sxm", "workload": {
        "kind": "requests", "requests": 20000, "arrival": {"process": "poisson", "rate": 5.0},
        "prompt_tokens": {"dist": "lognormal", "mean": 1024, "cv": 0.8},
        "output_tokens": {"dist": "normal", "mean": 100, "std": 10}}})
    r = generate(e.workload)
    assert r.prompt.mean() == pytest.approx(1024, rel=0.03)
    assert r.output.mean() == pytest.approx(100, rel=0.01)
    gaps = np.diff(r.arrival)
    assert gaps.mean() == pytest.approx(0.2, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)
    assert np.array_equal(generate(e.workload).prompt, r.prompt)


def test_request_larger_than_the_cache_is_dropped_with_the_reason():
    run = serving_run({"requests": 3, "arrival": {"process": "fixed", "rate": 10.0},
                       "prompt_tokens": {"dist": "uniform", "low": 100, "high": 100000}, "output_tokens": {"value": 8}},
                      engine={"gpu_memory_utilization": 0.25})
    res = run_checked(run)
    assert res.summary["requests_dropped"] >= 1
    assert any("KV blocks" in r or "max_position" in r for r in res.summary["dropped_reasons"])


def test_trace_replay_csv_and_jsonl(tmp_path):
    c = tmp_path / "t.csv"
    c.write_text("arrival_s,prompt_tokens,output_tokens,session\n0.0,100,10,a\n0.5,300,5,a\n0.2,50,3,\n")
    j = tmp_path / "t.jsonl"
    j.write_text('{"arrival_s": 0.0, "prompt_tokens": 100, "output_tokens": 10}\n\n'
                 '{"arrival_s": 1.0, "prompt_tokens": 7, "output_tokens": 2, "prefix": "sys", "prefix_tokens": 4}\n')
    for path, n in ((c, 3), (j, 2)):
        res = run_checked(serving_run({"arrival": {"process": "trace"}, "trace": str(path)}))
        assert res.summary["requests_completed"] == n


def test_cli_json_keys_and_per_request_csv(cli, tmp_path, write_experiment):
    path = write_experiment(workload={"kind": "requests", "requests": 12, "arrival": {"process": "poisson", "rate": 8.0},
                                      "prompt_tokens": {"value": 300}, "output_tokens": {"value": 20}},
                            serving={"slo": {"ttft_s": 1.0, "tpot_s": 0.05}}, drop=("workload.batch_size",))
    r = cli("run", path, "--json", "--out", tmp_path / "o")
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(s[key]) == {"mean", "p50", "p90", "p99"}
    assert set(s["throughput"]) == {"requests_per_s", "output_tokens_per_s"}
    for key in ("goodput_requests_per_s", "preemptions", "prefix_cache_hit_rate", "kv_tier_bytes",
                "requests_completed", "requests_dropped"):
        assert key in s
    assert s["requests_completed"] == 12
    rows = list(csv.DictReader(open(tmp_path / "o" / "requests.csv")))
    assert len(rows) == 12 and all(row["status"] == "finished" for row in rows)
    assert (tmp_path / "o" / "timeline.png").stat().st_size > 0
    table = cli("run", path)
    assert table.rc == 0 and "TTFT" in table.out


@pytest.mark.parametrize("changes, contains", [
    ({"serving": {"scheduler": "vlm"}}, ["unknown scheduler", "'vlm'", "vllm", "prefill_first", "sarathi", "static"]),
    ({"serving": {"router": "random"}}, ["unknown router", "round_robin", "least_outstanding", "prefix_affinity"]),
    ({"serving": {"slo": {"ttft_s": 0}}}, ["field 'serving.slo.ttft_s' = 0", "greater than 0"]),
    ({"serving": {"slo": {"tpot_s": -1.0}}}, ["field 'serving.slo.tpot_s' = -1.0"]),
    ({"workload": {"kind": "requests", "arrival": {"process": "closed"}}}, ["workload.arrival", "concurrency"]),
    ({"workload": {"kind": "requests", "requests": 2, "arrival": {"process": "poisson", "rate": 1.0,
                                                                   "reissue_delay_s": 0.1}}},
     ["workload.arrival", "reissue_delay_s applies to process closed only"]),
    ({"workload": {"kind": "requests", "requests": 2, "arrival": {"process": "closed", "concurrency": 1,
                                                                   "reissue_delay_s": -0.1}}},
     ["workload.arrival.reissue_delay_s", "-0.1"]),
    ({"workload": {"kind": "requests", "requests": 2, "arrival": {"process": "closed", "concurrency": 1,
                                                                   "reissue_delay_dist": "exponential"}}},
     ["workload.arrival", "reissue_delay_dist exponential needs reissue_delay_s > 0"]),
    ({"workload": {"kind": "requests", "requests": 2, "arrival": {"process": "closed", "concurrency": 1,
                                                                   "reissue_delay_s": 0.1,
                                                                   "reissue_delay_dist": "gauss"}}},
     ["workload.arrival.reissue_delay_dist", "'fixed'", "'exponential'", "'lognormal'"]),
    ({"workload": {"kind": "requests", "requests": 2, "arrival": {"process": "closed", "concurrency": 1,
                                                                   "reissue_delay_s": 0.1,
                                                                   "reissue_delay_dist": "lognormal"}}},
     ["workload.arrival", "reissue_delay_dist lognormal needs reissue_delay_cv"]),
    ({"workload": {"kind": "requests", "requests": 2, "arrival": {"process": "closed", "concurrency": 1,
                                                                   "reissue_delay_s": 0.1, "reissue_delay_cv": 2,
                                                                   "reissue_delay_dist": "exponential"}}},
     ["workload.arrival", "reissue_delay_cv = 2 is used by reissue_delay_dist lognormal only (here exponential)"]),
    ({"workload": {"kind": "requests", "requests": 2, "arrival": {"process": "closed", "concurrency": 1,
                                                                   "reissue_delay_s": 0.1, "reissue_delay_cv": -1,
                                                                   "reissue_delay_dist": "lognormal"}}},
     ["workload.arrival.reissue_delay_cv", "-1", "greater than or equal to 0.01"]),
    ({"workload": {"kind": "requests", "prompt_tokens": {"dist": "zipf"}}}, ["workload.prompt_tokens.dist", "lognormal"]),
    ({"workload": {"kind": "batch"}}, ["field 'workload.kind' = 'batch'", "'static', 'requests'"]),
])
def test_bad_serving_input_is_one_line_exit_2(bad, write_experiment, changes, contains):
    wl = changes.pop("workload", {"kind": "requests", "requests": 2})
    static = ("batch_size", "prompt_tokens", "output_tokens")
    path = write_experiment(workload=wl, drop=tuple(f"workload.{f}" for f in static if f not in wl), **changes)
    bad("run", path, contains=contains)


@pytest.mark.parametrize("text, contains", [
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n0.1,abc,5\n", [":3:", "'prompt_tokens'", "'abc'"]),
    ("arrival_s,prompt_tokens\n0,10\n", [":1:", "output_tokens"]),
    ("arrival_s,prompt_tokens,output_tokens\n-1,10,5\n", [":2:", "'arrival_s'"]),
])
def test_bad_trace_row_names_file_line_and_field(bad, write_experiment, tmp_path, text, contains):
    trace = tmp_path / "trace.csv"
    trace.write_text(text)
    path = write_experiment(workload={"kind": "requests", "arrival": {"process": "trace"}, "trace": str(trace)},
                            drop=("workload.batch_size", "workload.prompt_tokens", "workload.output_tokens"))
    bad("run", path, contains=[str(trace), *contains])


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "experiments" / "serving").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_serving_example_runs(cli, path):
    r = cli("run", path, "--json", "--set", "workload.requests=24")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["requests_completed"] + json.loads(r.out)["requests_dropped"] <= 24
