"""`simcore recommend` on the serving simulator: a small candidate set with hand-checked rejections,
percentile SLOs, the replica search, the Pareto front, the CLI's table, JSON and deployment line."""

from __future__ import annotations

import json

import pytest

from simcore.errors import SimcoreError
from simcore.planner.latency import predict
from simcore.planner.serving_inputs import SLOTarget, parse_slo
from simcore.planner.serving_search import disagg_splits, pareto_front, recommend_serving

SMALL = dict(gpus="h100-sxm,a100-80gb-sxm", rate=2, input_len=512, output_len=64, max_gpus=8, requests=60,
             workers=1)


@pytest.fixture(scope="module")
def small():
    return recommend_serving("qwen2.5-7b", kv_dtypes=("fp8",), ttft_slo="p90:2", tpot_slo="p99:0.1", **SMALL)


def test_rules_reject_what_cannot_run(small):
    by = {(o.gpu, o.tp, o.pp): o for o in small.rejected}
    # qwen2.5-7b has 28 attention heads: tp 8 does not divide them, on every GPU
    assert by[("h100-sxm", 8, 1)].check == by[("a100-80gb-sxm", 8, 1)].check == "tp"
    # the A100 has no fp8: every other shape on it is refused for the fp8 KV cache asked for
    a100 = [o for o in small.rejected if o.gpu == "a100-80gb-sxm" and o.tp != 8]
    assert len(a100) == 9 and {o.check for o in a100} == {"precision"}
    assert a100[0].reason == "fp8 KV cache: a100-80gb-sxm has no fp8 support"
    # tp in {1,2,4,8} x pp in {1,2,4,8} with tp x pp <= 8 GPUs: 10 shapes per GPU
    assert small.deployments_considered == 20


def test_the_winner_is_the_fewest_replicas_that_meet_the_slos(small):
    best = small.best
    assert best.gpu == "h100-sxm" and best.kv_cache_dtype == "fp8" and best.stage == "simulated"
    assert best.ttft_s <= 2 and best.tpot_s <= 0.1
    runs = {r: ok for r, ok, *_ in best.runs}
    assert runs[best.replicas] and (best.replicas == 1 or runs.get(best.replicas - 1) is False)
    # cost per million output tokens at the SLO: $/hour over offered output tokens (2 req/s x 64)
    assert best.output_tokens_per_s == pytest.approx(2 * 64)
    assert best.cost_per_million_output_tokens_usd == pytest.approx(best.cost_per_hour_usd / (128 * 3600) * 1e6)
    costs = [o.cost_per_million_output_tokens_usd for o in small.options]
    assert costs == sorted(costs)
    d = small.as_dict()
    assert d["mode"] == "serving" and d["recommendations"][0]["rank"] == 1
    assert d["deploy"]["commands"]["vllm"].startswith("vllm serve Qwen/Qwen2.5-7B ")
    assert "--kv-cache-dtype fp8" in d["deploy"]["commands"]["vllm"]


def test_a_request_alone_over_the_slo_is_rejected_by_the_static_estimate():
    rec = recommend_serving("llama-3.1-8b", gpus="h100-sxm", rate=1, input_len=2048, output_len=16, max_gpus=1,
                            ttft_slo="p90:0.001", requests=20, workers=1)
    assert rec.options == [] and rec.serving_runs == 0
    (o,) = [o for o in rec.rejected if o.stage == "estimate"]
    alone = predict("llama-3.1-8b", "h100-sxm", 1, 1, 1, 2048, 16, "auto", "bf16").ttft_s
    assert o.check == "ttft"
    assert o.reason == (f"TTFT of one request alone is {alone:.2f} s (static estimate), over the SLO "
                        f"p90 TTFT <= 0.001 s")


def test_a_load_past_every_replica_count_is_rejected_after_simulation():
    rec = recommend_serving("llama-3.1-8b", gpus="h100-sxm", rate=400, input_len=1024, output_len=256, max_gpus=1,
                            ttft_slo="p90:0.5", requests=80, workers=1)
    (o,) = [o for o in rec.rejected if o.stage != "rules"]
    assert o.stage in ("estimate", "simulated") and o.check in ("replicas", "ttft", "tpot")
    assert "over the GPU limit" in o.reason or "at 1 replicas" in o.reason


@pytest.mark.parametrize("text, want", [("p90:1.0", SLOTarget("ttft", 90.0, 1.0)), ("0.5", SLOTarget("ttft", None, 0.5)),
                                        ("mean:2", SLOTarget("ttft", None, 2.0)), (0.25, SLOTarget("ttft", None, 0.25)),
                                        ("P99.9: 0.3", SLOTarget("ttft", 99.9, 0.3))])
def test_slo_strings(text, want):
    assert parse_slo("ttft_slo", text, "ttft") == want


@pytest.mark.parametrize("text", ["p100:1", "p0:1", "p90:", "p90:-1", "fast", "0", "-2", "p90:inf"])
def test_bad_slo_strings(text):
    with pytest.raises(SimcoreError, match="ttft_slo"):
        parse_slo("ttft_slo", text, "ttft")


def test_pareto_front_keeps_only_undominated_points():
    pts = [{"latency_s": 0.02, "output_tokens_per_s_per_gpu": 100}, {"latency_s": 0.03, "output_tokens_per_s_per_gpu": 90},
           {"latency_s": 0.03, "output_tokens_per_s_per_gpu": 300}, {"latency_s": 0.05, "output_tokens_per_s_per_gpu": 250},
           {"latency_s": 0.06, "output_tokens_per_s_per_gpu": 400}]
    assert [(p["latency_s"], p["output_tokens_per_s_per_gpu"]) for p in pareto_front(pts)] == [
        (0.02, 100), (0.03, 300), (0.06, 400)]


def test_cli_serving_table_rejections_and_deploy_line(cli, tmp_path):
    argv = ["recommend", "--model", "meta-llama/Llama-3.1-8B", "--rate", "4", "--input-len", "1024", "--output-len",
            "128", "--ttft-slo", "p90:1", "--tpot-slo", "p99:0.05", "--gpus", "h100-sxm,l4", "--max-gpus", "4",
            "--requests", "60"]
    rc, out, err = cli(*argv, "--plot", tmp_path / "p.png")
    assert rc == 0 and err == ""
    assert "serving simulation, cheapest per output token first" in out and "Pareto front" in out
    assert "deploy the winner" in out and "vllm serve meta-llama/Llama-3.1-8B --" in out
    assert "sglang.launch_server --model-path meta-llama/Llama-3.1-8B" in out and "trtllm-serve" in out
    assert (tmp_path / "p.png").stat().st_size > 0
    rc, out, _ = cli(*argv, "--json")
    d = json.loads(out)
    assert d["ttft_slo_s"] == 1 and d["ttft_slo_percentile"] == 90 and d["tpot_slo_percentile"] == 99
    assert d["recommendations"] and all(r["status"] == "ok" for r in d["recommendations"])
    assert {"check", "reason", "stage"} <= set(d["rejected"][0])


def test_cli_closed_loop_concurrency(cli):
    rc, out, _ = cli("recommend", "--model", "llama-3.2-1b", "--serving", "--concurrency", "8", "--input-len", "256",
                     "--output-len", "32", "--gpus", "l4", "--max-gpus", "2", "--requests", "40", "--json")
    d = json.loads(out)
    assert rc == 0 and d["arrival"] == "closed" and d["concurrency"] == 8 and d["recommendations"]


@pytest.mark.parametrize("extra, contains", [
    (["--ttft-slo", "p90:zero"], "ttft_slo"),
    (["--ttft-slo", "soon"], "ttft_slo"),
    (["--rate", "-1"], "rate"),
    (["--rate", "1", "--arrival", "bursty"], "arrival"),
    (["--rate", "1", "--trace", "/nonexistent.csv"], "load"),
    (["--trace", "/nonexistent.csv"], "trace"),
    (["--rate", "1", "--kv-dtypes", "fp8,int3"], "kv_dtype"),
    (["--rate", "1", "--seed", "-1"], "seed"),
    (["--rate", "1", "--arrival", "gamma", "--arrival-cv", "0"], "arrival_cv"),
    (["--rate", "1", "--requests", "0"], "requests"),
    (["--rate", "1", "--input-cv", "nan"], "input_cv"),
    (["--rate", "1", "--batched-tokens", "8k"], "batched_tokens"),
])
def test_serving_bad_input_is_one_line(bad, extra, contains):
    bad("recommend", "--model", "llama-3.2-1b", "--input-len", "64", "--output-len", "8", "--gpus", "l4", *extra,
        contains=[contains])


def test_a_goodput_target_needs_that_share_of_requests_within_every_slo():
    """Lognormal lengths give a latency tail: medians within the SLOs leave some requests outside them."""
    kw = dict(gpus="h100-sxm", rate=30, input_len=512, output_len=64, input_cv=1.5, output_cv=1.0, max_gpus=4,
              requests=150, workers=1, ttft_slo="p50:0.05", tpot_slo="p50:0.01")
    loose = {(o.tp, o.pp): o for o in recommend_serving("llama-3.1-8b", **kw).options}
    assert loose[(1, 1)].replicas == 1 and loose[(1, 1)].goodput < 0.9
    strict = recommend_serving("llama-3.1-8b", goodput=0.9, **kw)
    assert strict.request["goodput_target"] == 0.9
    assert all(o.goodput >= 0.9 for o in strict.options)
    tight = {(o.tp, o.pp): o for o in strict.options}
    assert tight[(1, 1)].replicas > 1  # the target costs replicas the medians alone did not
    with pytest.raises(SimcoreError, match="goodput"):
        recommend_serving("llama-3.1-8b", goodput=1.5, **kw)


def test_disaggregated_splits_tried_for_a_winner():
    assert disagg_splits(1) == [] and disagg_splits(2) == [(1, 1)]
    assert disagg_splits(3) == [(1, 1), (1, 2), (2, 1)]  # 2 replicas: 1+1; 3: a third, then half, prefilling
    assert disagg_splits(6) == [(2, 3), (2, 4), (3, 3)]


def test_cli_disagg_prices_prefill_decode_splits_of_the_winners(cli):
    rc, out, _ = cli("recommend", "--model", "llama-3.1-8b", "--rate", "30", "--input-len", "2048", "--output-len",
                     "256", "--ttft-slo", "p90:0.5", "--tpot-slo", "p99:0.03", "--gpus", "h100-sxm", "--max-gpus", "16",
                     "--disagg", "2", "--requests", "300", "--json")
    d = json.loads(out)
    split = [o for o in d["recommendations"] + d["rejected"] if o["prefill_replicas"] is not None]
    assert rc == 0 and d["disagg"] == 2 and split
    for o in split:
        assert o["replicas"] == o["prefill_replicas"] + o["decode_replicas"]
        assert o["gpus"] == o["replicas"] * o["tp"] * o["pp"]
        assert (o["status"], o["check"]) in (("ok", None), ("rejected", "disagg"))
    colocated = [o for o in d["recommendations"] if o["prefill_replicas"] is None]
    assert all(o["decode_replicas"] is None for o in colocated) and colocated


def test_disagg_needs_a_rate(bad):
    bad("recommend", "--model", "llama-3.2-1b", "--input-len", "64", "--output-len", "8", "--serving",
        "--concurrency", "4", "--disagg", "1", contains=["disagg", "--rate"])
