"""`simcore validate`: readers of real benchmark formats, the record -> experiment mapping, the
comparison, the host-constant fit and its profile file, and bad input."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simcore.errors import SimcoreError
from simcore.serving.engines import load_host_profile
from simcore.serving.silicon import DYNAMO_TOKEN_US, MEASURED_ROUNDS, Measurement, Refused, experiment_for_record, experiment_for_row
from simcore.validate.compare import Outcome, comparisons, experiments, run, summarize
from simcore.validate.fit import FitRow, fit_host, grid_fit, without_host, write_profile
from simcore.validate.provenance import RowExtras
from simcore.validate.readers import Facts, read

from conftest import REPO

DATA = REPO / "tests" / "data" / "validate"
VLLM = DATA / "vllm_llama8b_c16.json"  # no GPU, no tp: needs --gpu and --tp
VLLM_META = DATA / "vllm_metadata_rate.json"  # --metadata gpu, tp, engine, engine_version; rate 8, burstiness 0.25
SGLANG = DATA / "sglang_qwen32b.jsonl"  # two runs; server_info gives model, tp, version; no GPU
ROWS = DATA / "silicon_rows.json"


# ---- readers -------------------------------------------------------------------------------------

def test_vllm_result_reads_load_lengths_and_every_statistic():
    (r,) = read(VLLM, Facts(gpu="h100-sxm", tp=1))
    assert (r.model, r.engine, r.gpu, r.tp) == ("meta-llama/Llama-3.1-8B-Instruct", "vllm", "h100-sxm", 1)
    # request_rate inf with max_concurrency 16: a closed loop of 16 clients
    assert (r.concurrency, r.rate, r.requests) == (16, None, 64)
    assert (r.isl, r.osl) == (65536 // 64, 8192 // 64)  # totals / completed
    assert r.latency["ttft"] == {"mean": 61.92, "p50": 48.35, "p99": 151.7}
    assert r.latency["e2e"]["p99"] == 1262.3  # vLLM's e2el
    assert r.throughput == {"requests_per_s": 14.19, "output_tokens_per_s": 1816.4}


def test_vllm_metadata_gives_the_deployment_and_burstiness_a_gamma_arrival():
    (r,) = read(VLLM_META)
    assert (r.gpu, r.tp, r.engine, r.engine_version) == ("h100-sxm", 1, "vllm", "0.11.0")
    assert (r.rate, r.concurrency, r.burstiness) == (8.0, None, 0.25)
    assert r.latency["tpot"]["p90"] == 8.5
    exp = experiment_for_record(r)
    # vLLM draws gaps from gamma(shape = burstiness): cv = 1 / sqrt(burstiness) = 2
    assert exp["workload"]["arrival"] == {"process": "gamma", "rate": 8.0, "cv": 2.0}
    assert exp["workload"]["requests"] == 200  # what the benchmark measured (under the 500 cap)
    assert exp["serving"] == {"engine": "vllm", "engine_version": "0.11.0"}  # open loop: the engine's own limits


def test_sglang_jsonl_reads_each_line_and_server_info():
    a, b = read(SGLANG, Facts(gpu="h100-sxm"))
    assert (a.model, a.tp, a.engine, a.engine_version) == ("Qwen/Qwen3-32B", 2, "sglang", "0.5.1.post1")
    assert (a.concurrency, a.rate) == (8, None)  # request_rate Infinity, max_concurrency 8
    assert (b.concurrency, b.rate) == (None, 2.0)
    assert a.latency["itl"]["p95"] == 29.8 and a.latency["e2e"]["mean"] == 3802.4
    assert a.source.endswith("sglang_qwen32b.jsonl:1") and b.source.endswith(":2")
    # the user's server ran with the engine's defaults, not aiconfigurator's generator limits
    exp = experiment_for_record(a)
    assert exp["serving"] == {"engine": "sglang", "engine_version": "0.5.1.post1"}
    assert exp["parallelism"] == {"tp": 2, "pp": 1} and exp["model"] == "qwen3-32b"
    assert exp["workload"]["arrival"] == {"process": "closed", "concurrency": 8}
    assert exp["workload"]["requests"] == min(8 * MEASURED_ROUNDS, 80)  # per client (silicon.MEASURED_ROUNDS), at most the file's 80
    assert experiment_for_record(b)["workload"]["arrival"] == {"process": "poisson", "rate": 2.0}


def test_flags_override_the_file():
    (r,) = read(VLLM_META, Facts(tp=2, engine_version="0.13.0"))
    assert (r.tp, r.engine_version) == (2, "0.13.0")


def test_rows_read_as_the_benchmark_builds_them():
    rows = json.loads(ROWS.read_text())["rows"]
    recs = read(ROWS)
    assert len(recs) == 4
    for row, rec in zip(rows, recs):
        try:
            want = experiment_for_row(row)
        except Refused as exc:
            with pytest.raises(Refused, match=exc.reason):
                experiment_for_record(rec)
            continue
        assert experiment_for_record(rec) == want


def test_trtllm_row_maps_to_hand_computed_experiment():
    rec = read(ROWS)[3]  # trtllm Llama-3.1-8B, c 8, 1024 / 128, tp 1, 1.0.0rc3
    exp = experiment_for_record(rec)
    assert exp["model"] == "llama-3.1-8b" and exp["hardware"] == "h100-sxm"
    # aiperf waits out its warm-up, so the measured phase is a closed loop from t = 0 of 8 clients, each sending
    # its next request through aiperf's credit and dataset hops: 40 ms on average, lognormal draws of standard
    # deviation twice the mean (silicon.AIPERF_CLIENT)
    assert exp["workload"]["arrival"] == {"process": "closed", "concurrency": 8, "reissue_delay_s": 0.04,
                                          "reissue_delay_dist": "lognormal", "reissue_delay_cv": 2.0}
    assert exp["workload"]["requests"] == 8 * MEASURED_ROUNDS
    # TensorRT-LLM rows run with the generator's limits (silicon.LIMITS); --limits defaults drops them. The server
    # behind aiperf is Dynamo's: its worker's frontend loop (silicon.DYNAMO_TOKEN_US) stays either way
    loop = {"frontend_token_us": DYNAMO_TOKEN_US}
    assert exp["serving"] == {"engine": "trtllm", "engine_version": "1.0.0rc3", "max_num_seqs": 8,
                              "max_num_batched_tokens": 1536, **loop}
    assert experiment_for_record(read(ROWS, limits="defaults")[3])["serving"] == {"engine": "trtllm",
                                                                                   "engine_version": "1.0.0rc3", **loop}
    # aiconfigurator's trtllm rule: max_num_tokens = batch + ISL + 500 rounded up to 32: 8 + 1024 + 500 = 1532 -> 1536
    limited = experiment_for_record(read(ROWS, limits="aiconfigurator")[3])
    assert limited["serving"] == {"engine": "trtllm", "max_num_seqs": 8, "max_num_batched_tokens": 1536,
                                  "engine_version": "1.0.0rc3", **loop}
    assert rec.latency == {"ttft": {"mean": 190.9545068625}, "tpot": {"mean": 7.94357745}}


def test_requests_flag_sets_the_measured_requests():
    (r,) = read(VLLM, Facts(gpu="h100-sxm", tp=1))
    assert experiment_for_record(r)["workload"]["requests"] == 64  # min(8 rounds x 16, the file's 64)
    assert experiment_for_record(r, requests=20)["workload"]["requests"] == 20
    rows = read(ROWS)
    assert experiment_for_record(rows[3], requests=10)["workload"]["requests"] == 10


@pytest.mark.parametrize("change, reason", [
    ({"model": "acme/unknown-7b"}, "model not in catalog"),
    ({"gpu": "tpu-v5"}, "gpu not in catalog"),
    ({"mode": "disagg"}, "disagg"),
    ({"refused": "rate with max_concurrency"}, "rate with max_concurrency"),
])
def test_records_simcore_cannot_express_are_refused_with_a_reason(change, reason):
    (r,) = read(VLLM, Facts(gpu="h100-sxm", tp=1))
    for k, v in change.items():
        setattr(r, k, v)
    with pytest.raises(Refused) as exc:
        experiment_for_record(r)
    assert exc.value.reason == reason


def test_rate_with_max_concurrency_is_refused_by_the_reader(tmp_path):
    d = json.loads(VLLM.read_text())
    d.update(request_rate=4.0, max_concurrency=8)
    p = tmp_path / "r.json"
    p.write_text(json.dumps(d))
    (r,) = read(p, Facts(gpu="h100-sxm", tp=1))
    assert r.refused == "rate with max_concurrency"


# ---- comparison ----------------------------------------------------------------------------------

def test_comparisons_are_signed_errors_of_what_both_sides_have():
    (r,) = read(VLLM, Facts(gpu="h100-sxm", tp=1))
    (o,) = run(experiments([r], requests=16))
    cs = comparisons(o)
    keys = {(c["metric"], c["stat"]) for c in cs}
    # the file has mean / median / p99 (no p90); the simulator no p95
    assert ("ttft", "p50") in keys and ("ttft", "p99") in keys and ("ttft", "p90") not in keys
    assert ("throughput", "requests_per_s") in keys
    for c in cs:
        assert c["error"] == pytest.approx(c["predicted"] / c["measured"] - 1)
    lat = o.result["latency"]
    assert lat["ttft"]["p50"] <= lat["ttft"]["p99"]
    # physics: a decode step of an 8B bf16 model reads ~16 GB of weights at <= 3.35 TB/s: TPOT >= 4.8 ms
    assert lat["tpot"]["mean"] >= 16.06e9 / 3.35e12 * 1e3
    s = summarize([o])
    assert s["simulated"] == 1 and s["refused"] == {}


# ---- engine profile files ------------------------------------------------------------------------

def _c1_tpot(profile, cli, tmp_path) -> float:
    """Mean TPOT (ms) of one client, vLLM 0.10 (no async scheduling: step = GPU + host)."""
    rec = Measurement(source="t", model="llama-3.1-8b", gpu="h100-sxm", engine="vllm", engine_version="0.10.0",
                      tp=1, concurrency=1, isl=128, osl=16)
    sets = (f"serving.engine_profile={profile}",) if profile else ()
    (o,) = run(experiments([rec], requests=2), 1, sets)
    return o.result["latency"]["tpot"]["mean"]


def test_engine_profile_replaces_the_host_constants(tmp_path, cli):
    from simcore.serving.engines.host_fit import HOST

    base = _c1_tpot(None, cli, tmp_path)  # host_fit.py's vllm constants
    p = tmp_path / "vllm.yaml"
    write_profile(p, "vllm", None, {"const_us": 1300.0, "per_request_us": 50.0, "per_token_us": 0.0})
    # one decode of one token per step: the host time goes from const + per_request + per_token to 1300 + 50 us
    h = HOST["vllm"]
    was = h["const_us"] + h["per_request_us"] + h["per_token_us"]
    assert _c1_tpot(p, cli, tmp_path) - base == pytest.approx((1350.0 - was) * 1e-3, abs=1e-6)


@pytest.mark.parametrize("text, contains", [
    ("engine: sglang\nhost: {const_us: 1, per_request_us: 0, per_token_us: 0}\n", "for engine 'sglang'"),
    ("engine: vllm\nhost: {const_us: 1, per_request_us: 0}\n", "host needs exactly"),
    ("engine: vllm\nhost: {const_us: -5, per_request_us: 0, per_token_us: 0}\n", "host.const_us = -5"),
    ("engine: vllm\nhosts: {}\n", "unknown key 'hosts'"),
    ("- a list\n", "expected a mapping"),
])
def test_bad_profile_files_are_one_line_errors(tmp_path, text, contains):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(SimcoreError, match=contains):
        load_host_profile(str(p), "vllm")


def test_run_with_a_bad_profile_exits_2(bad, write_experiment, tmp_path):
    def exp(serving: str):
        return write_experiment(text="model: llama-3.1-8b\nhardware: h100-sxm\nworkload: {kind: requests, "
                                     "requests: 4, arrival: {process: closed, concurrency: 1}}\n"
                                     f"serving: {serving}\n")

    bad("run", exp(f"{{engine: vllm, engine_profile: {tmp_path / 'missing.yaml'}}}"),
        contains=["serving.engine_profile", "no such file"])
    bad("run", exp("{engine_profile: x.yaml}"), contains=["needs serving.engine"])


# ---- fit -----------------------------------------------------------------------------------------

TRUE = {"const_us": 1500.0, "per_request_us": 10.0, "per_token_us": 0.5}


def _synthetic(tmp_path) -> list[Measurement]:
    """Records whose 'measurements' are simcore's own figures with the TRUE constants: varied clients
    (const vs per-request) and prompts (per-token, through the prefill steps)."""
    recs = [Measurement(source=f"syn{i}", model="llama-3.1-8b", gpu="h100-sxm", engine="vllm",
                        engine_version="0.10.0", tp=1, concurrency=c, isl=isl, osl=16, requests=n)
            for i, (c, isl, n) in enumerate([(1, 512, 4), (8, 512, 16), (16, 2048, 32)])]
    p = tmp_path / "true.yaml"
    write_profile(p, "vllm", "0.10.0", TRUE)
    for o in run(experiments(recs), 1, (f"serving.engine_profile={p}",)):
        o.record.latency = {m: {"mean": o.result["latency"][m]["mean"]} for m in ("ttft", "tpot", "itl")}
    return recs


def test_grid_fit_reproduces_the_stored_constants():
    """TPOT made by HostModel.step from each engine's constants in host_fit.py (the ones the fit of the
    H100 rows gave) over a small spread of GPU times, clients and tokens: the grid finds them again."""
    from simcore.serving.engines import HOST_KEYS, HostModel
    from simcore.serving.engines.host_fit import HOST

    assert HOST == {"vllm": {"const_us": 950.0, "per_request_us": 65.0, "per_token_us": 3.0, "moe_prompt_layer_us": 350.0},
                    "sglang": {"const_us": 0.0, "per_request_us": 35.0, "per_token_us": 1.7},
                    "trtllm": {"const_us": 2500.0, "per_request_us": 25.0, "per_token_us": 2.3, "eager_layer_us": 600.0}}
    for engine, c in HOST.items():
        overlaps = (False, True) if engine == "vllm" else (True,)  # vLLM overlaps from 0.14 only
        rows = []
        for i, (g_ms, clients, isl, osl) in enumerate([(1.5, 1, 1024, 128), (6.0, 8, 1024, 128), (9.0, 32, 4096, 512),
                                                      (20.0, 64, 1024, 1024), (2.0, 16, 2048, 256)]):
            overlap = overlaps[i % len(overlaps)]
            h = HostModel(c["const_us"] * 1e-6, c["per_request_us"] * 1e-6, c["per_token_us"] * 1e-6, overlap)
            tokens = clients * (isl + osl) / osl
            rows.append(FitRow(g_ms * 1e-3, h.step(g_ms * 1e-3, clients, tokens), clients, tokens, overlap))
        fitted, rms = grid_fit(rows)
        assert fitted == pytest.approx({k: c[k] for k in HOST_KEYS}, abs=1e-9), engine  # floor, MoE stall: scanned apart
        assert rms < 1e-9


def test_grid_fit_prefers_the_smallest_constants_on_a_tie():
    # one row, GPU time 10 ms, measured 10 ms, overlapped: any const up to 10 ms hides under the GPU
    fitted, rms = grid_fit([FitRow(10e-3, 10e-3, 1, 1, True)])
    assert fitted == {"const_us": 0.0, "per_request_us": 0.0, "per_token_us": 0.0} and rms == 0


def _rows_file(tmp_path, recs) -> Path:
    """The synthetic records as silicon rows of h100_sxm (the rows benchmarks/fit_serving.py fits)."""
    rows = [{"system": "h100_sxm", "backend": "vllm", "backend_version": r.engine_version,
             "model_path": "meta-llama/Llama-3.1-8B-Instruct", "mode": "agg", "isl": str(r.isl), "osl": str(r.osl),
             "batch_size": str(r.concurrency), "tp_size": "1", "pp_size": "1",
             "silicon_ttft_ms": str(r.latency["ttft"]["mean"]), "silicon_tpot_ms": str(r.latency["tpot"]["mean"])}
            for r in recs]
    f = tmp_path / "rows.json"
    f.write_text(json.dumps({"rows": rows}))
    return f


def test_fit_host_moves_toward_the_true_constants_and_lowers_the_tpot_error(tmp_path):
    fit = fit_host(run(experiments(_synthetic(tmp_path)), 1))
    assert fit.engine == "vllm" and fit.rows == 3 and fit.iterations == 1
    from simcore.serving.engines.host_fit import HOST

    assert fit.start_us == pytest.approx({k: HOST["vllm"][k] for k in ("const_us", "per_request_us", "per_token_us")})
    assert fit.fitted_us["const_us"] == pytest.approx(TRUE["const_us"], abs=100)  # the term TPOT sees most
    assert fit.simulations == 6  # each record once without host time, once with the fitted constants
    before = {m["metric"]: m["median_abs_error"] for m in fit.before["metrics"]}
    after = {m["metric"]: m["median_abs_error"] for m in fit.after["metrics"]}
    assert before["tpot"] > 0.04 and after["tpot"] < 0.2 * before["tpot"]


def test_validate_fit_and_the_benchmark_fitter_give_the_same_constants(cli, tmp_path):
    """One fitter, two entry points: `simcore validate --fit` and benchmarks/fit_serving.py on the same rows
    (the benchmark's --rounds = validate's default requests, MEASURED_ROUNDS per client) print the same constants."""
    f = _rows_file(tmp_path, _synthetic(tmp_path))
    res = cli("validate", f, "--fit", "--jobs", "1", "--out", tmp_path / "o", "--json")
    assert res.rc == 0, res.err
    mine = json.loads(res.out)["fit"]["fitted_us"]
    bench = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fit_serving.py"), "--rows", str(f),
                            "--rounds", str(MEASURED_ROUNDS), "--jobs", "1", "--no-cache"], capture_output=True, text=True,
                           check=True, env={**os.environ, "COLUMNS": "200"}).stdout
    (line,) = [ln for ln in bench.splitlines() if ln.startswith("vllm")]
    theirs = [float(x) for x in re.findall(r"const\s+([\d.]+) us, per request\s+([\d.]+) us, per token ([\d.]+)",
                                           line)[0]]
    assert theirs == [round(mine[k], 2) for k in ("const_us", "per_request_us", "per_token_us")]


def test_fit_cli_writes_a_profile_that_runs_back(cli, tmp_path):
    recs = _synthetic(tmp_path)
    lines = []
    for r in recs:  # as a vLLM --save-result file each, with its deployment in --metadata keys
        lines.append(json.dumps({"model_id": r.model, "backend": "vllm", "gpu": "h100-sxm", "tp": "1",
                                 "engine_version": "0.10.0", "request_rate": "inf", "max_concurrency": r.concurrency,
                                 "completed": r.requests, "total_input_tokens": r.isl * r.requests,
                                 "total_output_tokens": r.osl * r.requests,
                                 **{f"mean_{m}_ms": r.latency[m]["mean"] for m in ("ttft", "tpot", "itl")}}))
    f = tmp_path / "runs.jsonl"
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    res = cli("validate", f, "--fit", "--jobs", "1", "--out", out, "--json")
    assert res.rc == 0, res.err
    rep = json.loads(res.out)
    prof = out / "vllm-host-profile.yaml"
    assert rep["fit"]["profile"] == str(prof) and rep["fit"]["rows"] == 3 and rep["fit"]["rms_log_error_tpot"] < 0.01
    data = yaml.safe_load(prof.read_text())
    assert data["engine"] == "vllm" and data["host"] == pytest.approx(rep["fit"]["fitted_us"])
    again = cli("validate", f, "--jobs", "1", "--json", "--set", f"serving.engine_profile={prof}")
    errs = [c["error"] for r in json.loads(again.out)["records"] for c in r["comparisons"] if c["metric"] == "tpot"]
    after = {m["metric"]: m["median_abs_error"] for m in rep["fit"]["after"]["metrics"]}
    assert max(map(abs, errs)) < 0.02 and after["tpot"] < 0.02  # the profile runs back to the fitted figures
    rows = list(csv.DictReader((out / "comparisons.csv").open()))
    assert {r["metric"] for r in rows} == {"ttft", "tpot", "itl"} and len(rows) == 9


def test_fit_of_open_loop_records_only_is_one_error_line(bad):
    bad("validate", VLLM_META, "--fit", "--jobs", "1", "--requests", "8", contains=["--fit", "closed-loop"])


def test_fit_of_moe_records_only_is_one_error_line(bad, tmp_path):
    rows = [{"system": "h100_sxm", "backend": "vllm", "backend_version": "0.12.0", "model_path": "Qwen/Qwen3-30B-A3B",
             "mode": "agg", "isl": "256", "osl": "16", "batch_size": "2", "tp_size": "1",
             "silicon_ttft_ms": "50", "silicon_tpot_ms": "5"}]
    f = tmp_path / "moe.json"
    f.write_text(json.dumps({"rows": rows}))
    bad("validate", f, "--fit", "--jobs", "1", "--out", tmp_path / "o", contains=["--fit", "dense model"])


def test_fit_leaves_disaggregated_records_out(tmp_path):
    """A disaggregated step is one pool's, not the closed loop's c requests: a dense disagg record simulated
    beside an aggregated one reaches the comparison but not the fit's rows."""
    agg = Measurement(source="a", model="llama-3.1-8b", gpu="h100-sxm", engine="vllm", engine_version="0.10.0",
                      tp=1, concurrency=2, isl=256, osl=16, latency={"tpot": {"mean": 5.0}})
    dis = Measurement(source="d", model="llama-3.1-8b", gpu="h100-sxm", engine="vllm", engine_version="0.10.0",
                      tp=1, concurrency=2, isl=256, osl=16, latency={"tpot": {"mean": 5.0}}, mode="disagg")
    outs = [Outcome(agg, {"model": "llama-3.1-8b", "serving": {"engine": "vllm"}}, {}),
            Outcome(dis, {"model": "llama-3.1-8b", "serving": {"engine": "vllm"}}, {})]
    kept = without_host(outs, tmp_path)
    assert [o.record.source for o in kept] == ["a"]


def test_fit_refuses_several_engines(bad):
    bad("validate", ROWS, "--fit", "--jobs", "1", "--only", "Qwen3-32B",
        contains=["--fit", "engines sglang, vllm"])


# ---- the command ---------------------------------------------------------------------------------

def test_validate_prints_the_table_and_summary(cli):
    r = cli("validate", VLLM, "--gpu", "h100-sxm", "--tp", "1", "--requests", "16", "--jobs", "1")
    assert r.rc == 0, r.err
    assert "vllm-llama-3.1-8b-h100-sxm-tp1-c16-1024x128" in r.out
    assert "TTFT mean: median |error|" in r.out and "Simulated 1 of 1 records" in r.out


def test_rows_refusals_are_counted_by_reason(cli):
    r = cli("validate", ROWS, "--json", "--jobs", "1", "--requests", "8", "--no-provenance")
    s = json.loads(r.out)["summary"]
    # the disagg row as the shared extract writes it: a TP1 prefill worker (its attention_dp 16 was dropped)
    assert s["records"] == 4 and s["refused"] == {"weights do not fit": 1} and s["simulated"] == 3
    assert {m["metric"] for m in s["metrics"]} == {"ttft", "tpot"}
    # with the shipped files it gets its published layout back (silicon_disagg.json) and runs
    s = json.loads(cli("validate", ROWS, "--json", "--jobs", "1", "--requests", "8").out)["summary"]
    assert s["records"] == 4 and s["refused"] == {} and s["simulated"] == 4


def test_benchmark_prints_the_same_figures(cli):
    """benchmarks/serving_silicon.py is a wrapper over the same functions: same summary lines."""
    r = cli("validate", ROWS, "--jobs", "1")
    mine = [ln for ln in r.out.splitlines() if ln.startswith(("TTFT", "TPOT", "Simulated"))]
    bench = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serving_silicon.py"), "--rows", str(ROWS),
                            "--jobs", "1", "--quiet"], capture_output=True, text=True, check=True).stdout
    theirs = [ln for ln in bench.splitlines() if ln.startswith(("TTFT", "TPOT", "Simulated"))]
    assert len(mine) == 3 and mine == theirs


def test_benchmark_and_command_merge_the_shipped_provenance_alike(cli, tmp_path):
    """A MiniMax-M2.5 row as the shared extract holds it (a shipped InferenceX entry's configuration columns, made-up
    latencies): both read it as InferenceX's (10 requests per client), so both print the same lines; before the
    merge had one home the command ran it with aiperf and printed other figures."""
    from simcore.validate.provenance import shipped

    data = json.loads(shipped("silicon_provenance.json"))
    entry = next(e for e in data["rows"] if e["system"] == "h100_sxm" and e["model_path"] == "MiniMaxAI/MiniMax-M2.5"
                 and e["batch_size"] == "1" and e["isl"] == "1024")
    rows = tmp_path / "ix.json"
    rows.write_text(json.dumps({"rows": [{**{k: v for k, v in entry.items() if k in data["key"]},
                                          "silicon_ttft_ms": "100.0", "silicon_tpot_ms": "10.0"}]}))
    r = cli("validate", rows, "--jobs", "1")
    assert r.rc == 0, r.err
    assert "Merged (--no-provenance: off): which benchmark measured the row, on 1 rows" in r.out
    mine = [ln for ln in r.out.splitlines() if ln.startswith(("TTFT", "TPOT", "Simulated"))]
    bench = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serving_silicon.py"), "--rows", str(rows),
                            "--jobs", "1", "--quiet"], capture_output=True, text=True, check=True).stdout
    assert len(mine) == 3 and mine == [ln for ln in bench.splitlines() if ln.startswith(("TTFT", "TPOT", "Simulated"))]
    (rec,) = read(rows, extras=RowExtras())
    assert rec.requests == 40 and rec.range_ratio == 0.8  # 10 x 4 clients (batch 1 per attention-DP rank, 4 ranks)


# a small vLLM row as the shared extract holds rows (no silicon_data_source; latencies made up) and a provenance
# file that names InferenceX's export as the benchmark that measured it
IX_ROW = {"system": "h100_sxm", "backend": "vllm", "backend_version": "0.12.0", "model_path": "meta-llama/Llama-3.1-8B",
          "mode": "agg", "isl": "128", "osl": "16", "batch_size": "2", "tp_size": "1", "pp_size": "1",
          "silicon_ttft_ms": "20.0", "silicon_tpot_ms": "5.0"}


def _ix_files(tmp_path):
    rows, prov = tmp_path / "rows.json", tmp_path / "prov.json"
    rows.write_text(json.dumps({"rows": [IX_ROW]}))
    prov.write_text(json.dumps({"key": ["system", "backend", "model_path", "batch_size"], "rows": [
        {"system": "h100_sxm", "backend": "vllm", "model_path": "meta-llama/Llama-3.1-8B", "batch_size": "2",
         "silicon_data_source": "source_file=2026-03-25.csv"}]}))
    return rows, prov


def test_validate_runs_a_row_the_provenance_names_with_the_inferencex_client(cli, tmp_path):
    """Through the command: InferenceX's benchmark_serving (re-issue exponential, mean 10 ms), 10 requests per
    client (2 clients: 20 simulated) and lengths uniform in [0.8 L, L]; --no-provenance: aiperf (40 ms, 20 rounds,
    fixed lengths)."""
    rows, prov = _ix_files(tmp_path)
    r = cli("validate", rows, "--provenance", prov, "--json", "--jobs", "1")
    assert r.rc == 0, r.err
    report = json.loads(r.out)
    (rec,) = report["records"]
    assert rec["client"] == {"reissue_delay_s": 0.01, "reissue_delay_dist": "exponential"}
    assert (rec["range_ratio"], rec["requests_simulated"], rec["status"]) == (0.8, 20, "simulated")
    assert rec["serving"] == {}  # InferenceX's vLLM recipe: the engine's own limits, not the generator's
    assert report["provenance"]["rows"] == 1 and report["provenance"]["disagg_layouts"] == 0
    r = cli("validate", rows, "--no-provenance", "--json", "--jobs", "1")
    report = json.loads(r.out)
    (rec,) = report["records"]
    assert rec["client"] == {"reissue_delay_s": 0.04, "reissue_delay_dist": "lognormal", "reissue_delay_cv": 2.0}
    assert (rec["range_ratio"], rec["requests_simulated"]) == (1.0, 40) and "provenance" not in report
    assert rec["serving"]["max_num_batched_tokens"] == 2 + 128 + 1500  # aiconfigurator's generator


@pytest.mark.parametrize("text, contains", [
    ("{", ["prov.json: not JSON", '{"rows": [...]}']),
    ('{"key": ["system"]}', ['prov.json: no "rows" list']),
    ('{"rows": []}', ["prov.json: key: null", "allowed: a list of the column names"]),
    ('{"key": ["system"], "rows": [3]}', ["prov.json: rows[0]: int", "allowed: an object"]),
    ('{"key": ["system"], "rows": [{"system": {"a": 1}}]}', ["prov.json: rows[0].system:", "text or a number"]),
])
def test_a_malformed_provenance_file_is_one_line(bad, tmp_path, text, contains):
    rows, prov = _ix_files(tmp_path)
    prov.write_text(text)
    bad("validate", rows, "--provenance", prov, contains=contains)


def test_bad_merge_flags_are_one_line(bad, tmp_path):
    rows, prov = _ix_files(tmp_path)
    full = tmp_path / "full.json"
    full.write_text(json.dumps({"rows": [IX_ROW]}))
    bad("validate", rows, "--disagg-rows", full, contains=["full.json: rows[0].mode: \"agg\"", "allowed: \"disagg\""])
    bad("validate", rows, "--disagg-rows", tmp_path / "none.json", contains=["cannot read", "none.json"])
    bad("validate", rows, "--no-provenance", "--provenance", prov, contains=["--no-provenance: not with --provenance"])


@pytest.mark.parametrize("argv, contains", [
    (("missing.json",), ["missing.json", "no such file"]),
    ((VLLM,), ["lacks gpu, tp", "--gpu NAME --tp N"]),
    ((SGLANG,), ["sglang_qwen32b.jsonl:1", "lacks gpu"]),
    ((VLLM, "--gpu", "h100", "--tp", "1"), ["unknown gpu (--gpu) 'h100'", "h100-sxm"]),
    ((VLLM, "--gpu", "h100-sxm", "--tp", "1", "--engine", "vlm"), ["unknown engine (--engine) 'vlm'", "vllm"]),
    ((VLLM, "--gpu", "h100-sxm", "--tp", "0"), ["--tp", "allowed: 1 or more"]),
    ((VLLM, "--profile-out", "p.yaml"), ["--profile-out", "only with --fit"]),
    ((ROWS, "--only", "nothing-like-this"), ["--only", "matches no record"]),
])
def test_bad_command_lines_are_one_line_errors(bad, argv, contains):
    bad("validate", *argv, contains=contains)


@pytest.mark.parametrize("text, contains", [
    ('{"foo": 1}', ["unknown result format", "keys: foo"]),
    ("not json at all\n", ["line 1: not JSON"]),
    ("", ["empty file"]),
    ('{"model_id": "x", "backend": "vllm", "gpu": "h100-sxm", "tp": 1, "mean_ttft_ms": 5}\n{"bar": 2}\n',
     [":2: unknown result format"]),
    ('{"rows": [1, 2]}', ["rows[0]: expected a mapping"]),
    ('{"model_id": "m", "endpoint_type": "openai", "backend": "openai", "mean_ttft_ms": 5}',
     ["lacks gpu, engine, tp"]),
])
def test_bad_files_are_one_line_errors(bad, tmp_path, text, contains):
    p = tmp_path / "f.json"
    p.write_text(text)
    bad("validate", p, contains=contains)


def test_out_is_a_file_is_an_error(bad, tmp_path):
    f = tmp_path / "x"
    f.write_text("")
    bad("validate", ROWS, "--out", f, contains=["--out", "is a file"])


def test_non_finite_figures_are_left_out(tmp_path):
    """vLLM writes NaN for a metric with no samples (e.g. TPOT of one-token outputs): not compared."""
    text = VLLM.read_text().replace('"mean_tpot_ms": 8.41', '"mean_tpot_ms": NaN')
    p = tmp_path / "nan.json"
    p.write_text(text)
    (r,) = read(p, Facts(gpu="h100-sxm", tp=1))
    assert "mean" not in r.latency["tpot"] and r.latency["tpot"]["p50"] == 8.37


def test_benchmark_only_matches_the_row_not_the_folders_it_sits_in(tmp_path):
    """--only reads a record's engine, model, GPU, precision, mode and its file name and row: a rows file in a folder
    named like a model used to match every row (the folder was part of the text)."""
    import argparse

    sys.path.insert(0, str(REPO / "benchmarks"))
    from serving_silicon import selected_records

    folder = tmp_path / "minimax-m2"
    folder.mkdir()
    rows = folder / "rows.json"
    rows.write_text(ROWS.read_text())
    args = argparse.Namespace(rows=rows, disagg_rows=None, rounds=1, only="minimax")
    assert selected_records(args) == []
    args.only = "rows.json"
    assert len(selected_records(args)) == len(read(ROWS))


def test_seeds_average_each_figure_over_the_client_seeds():
    """run_seeds(…, 2): every simulated figure is the mean of the runs at workload.seed 0 and 1 (the closed loop's
    random re-issue delays drawn anew); the two draws differ, so the mean is neither; seeds 1 is run() itself."""
    from simcore.validate.compare import run_seeds, with_seed

    rec = Measurement(source="seeds", model="llama-3.1-8b", gpu="h100-sxm", engine="vllm", engine_version="0.12.0",
                      tp=1, concurrency=8, isl=512, osl=16, requests=24,
                      client={"reissue_delay_s": 0.04, "reissue_delay_dist": "exponential"})
    one = run(experiments([rec]), 1)[0].result
    assert run_seeds(experiments([rec]), 1)[0].result == one
    moved = experiments([rec])
    moved[0].experiment = with_seed(moved[0].experiment, 1)
    other = run(moved, 1)[0].result
    both = run_seeds(experiments([rec]), 2)[0].result
    a, b = one["latency"]["ttft"]["mean"], other["latency"]["ttft"]["mean"]
    assert a != b and both["latency"]["ttft"]["mean"] == pytest.approx((a + b) / 2, rel=1e-12)
    for m in ("tpot", "e2e"):
        for st in ("mean", "p90"):
            want = (one["latency"][m][st] + other["latency"][m][st]) / 2
            assert both["latency"][m][st] == pytest.approx(want, rel=1e-12)
    want = (one["throughput"]["requests_per_s"] + other["throughput"]["requests_per_s"]) / 2
    assert both["throughput"]["requests_per_s"] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("n, allowed", [("0", "1 or more"), ("101", "1 to 100"), ("x", "not a whole number")])
def test_bad_seed_counts_are_one_line(bad, n, allowed):
    bad("validate", ROWS, "--seeds", n, contains=["--seeds", allowed])
