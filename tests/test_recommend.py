"""GPU recommender: enumeration, memory and SLO checks, simulator-backed latency, cost ranking, CLI."""

from __future__ import annotations

import json
import math

import pytest

from simcore.config.hardware import load_gpu
from simcore.run.static import StaticSimulator, simulate
from simcore.errors import SimcoreError
from simcore.ops.passes import prefill
from simcore.planner import find_gpu_recommendations, predict
from simcore.planner.capacity import build_run
from simcore.planner.latency import decode_points
from tests.helpers import make_run


@pytest.fixture(scope="module")
def h100_70b():
    return find_gpu_recommendations("llama-3.1-70b", input_len=8192, output_len=1024, concurrency=8, ttft_slo=2,
                                    tpot_slo=0.05, gpus="h100-sxm", max_gpus=16, workers=1)


def test_candidates_cover_every_tp_pp_and_replica_count_within_max_gpus():
    rec = find_gpu_recommendations("llama-3.1-8b", input_len=512, output_len=64, gpus=["h100-sxm"], max_gpus=8)
    # (tp, pp) with tp x pp <= 8, replica counts 1 .. 8 // (tp x pp)
    combos = [(t, p) for t in (1, 2, 4, 8) for p in (1, 2, 4, 8) if t * p <= 8]
    assert rec.candidates_evaluated == sum(8 // (t * p) for t, p in combos) == 26
    # concurrency 1: only one replica is useful; the rest are one rejection per (tp, pp)
    assert {(o.tp, o.pp, o.replicas) for o in rec.options} == {(t, p, 1) for t, p in combos}
    assert {(o.tp, o.pp) for o in rec.rejected if o.check == "replicas"} == {(t, p) for t, p in combos if t * p < 8}


def test_ranked_by_cost_per_million_output_tokens_and_all_meet_the_slos(h100_70b):
    costs = [o.cost_per_million_output_tokens_usd for o in h100_70b.options]
    assert costs == sorted(costs) and h100_70b.options
    for o in h100_70b.options:
        assert o.ttft_s <= 2 and o.tpot_s <= 0.05 and o.gpus <= 16 and o.status == "ok"
        assert o.batch_per_replica == math.ceil(8 / o.replicas)
        assert o.max_concurrent_per_replica >= o.batch_per_replica


def test_cost_and_throughput_by_hand(h100_70b):
    o = h100_70b.best
    price = load_gpu("h100-sxm").cost_per_hour_usd
    assert o.cost_per_hour_usd == pytest.approx(o.gpus * price)
    assert o.output_tokens_per_s == pytest.approx(8 * 1024 / o.e2e_s)  # 8 requests x 1024 tokens per batch time
    assert o.cost_per_million_output_tokens_usd == pytest.approx(o.gpus * price / 3600 / o.output_tokens_per_s * 1e6)
    assert o.e2e_s == pytest.approx(o.ttft_s + 1023 * o.tpot_s)


def test_ttft_is_the_simulators_prefill_pass_of_the_replica_batch(h100_70b):
    o = h100_70b.best
    sim = StaticSimulator(build_run("llama-3.1-70b", "h100-sxm", o.tp, o.pp))
    assert o.ttft_s == pytest.approx(sim.pass_(prefill(o.batch_per_replica, 8192)).time)


@pytest.mark.parametrize("model, isl, osl", [("llama-3.1-8b", 1024, 256), ("mistral-7b", 3900, 400)])
def test_tpot_matches_the_simulated_mean_decode_step(model, isl, osl):
    """One decode pass per linear stretch (two when the sliding window fills) reproduces the mean step."""
    full = simulate(make_run(model, batch=4, prompt=isl, output=osl, engine={"decode_sample_steps": 16}))
    got = predict(model, "h100-sxm", 1, 1, 4, isl, osl)
    assert got.tpot_s == pytest.approx(float(full.step_times.mean()), rel=0.005)
    assert got.ttft_s == pytest.approx(full.ttft)
    assert got.e2e_s == pytest.approx(full.e2e, rel=0.005)


def test_decode_points_split_at_the_sliding_window():
    assert decode_points(1023, 8192, None) == [(512, 1023)]
    assert decode_points(399, 3900, 4096) == [(98, 196), (298, 203)]  # step 197 first reaches 4097 tokens
    assert decode_points(99, 5000, 4096) == [(50, 99)]  # already past the window: flat


def test_replicas_with_the_same_batch_share_one_prediction():
    before = predict.cache_info()
    rec = find_gpu_recommendations("llama-3.1-8b", input_len=256, output_len=32, concurrency=6,
                                   gpus="h100-sxm", max_gpus=6, workers=1)
    timed = [o for o in rec.options + rec.rejected if o.ttft_s is not None and o.tp == 1 and o.pp == 1]
    assert sorted(o.batch_per_replica for o in timed) == [1, 2, 2, 2, 3, 6]  # ceil(6 / r), r = 6..1
    # each distinct shape is simulated once: memo misses equal the shapes, and repeats hit
    assert predict.cache_info().misses - before.misses == rec.shapes_simulated
    assert predict.cache_info().hits > before.hits


def test_rejections_say_why(h100_70b):
    checks = {o.check for o in h100_70b.rejected}
    assert {"memory", "ttft"} <= checks
    for o in h100_70b.rejected:
        assert o.status == "rejected" and o.reason
        if o.check == "ttft" and o.ttft_s is not None:
            assert o.ttft_s > 2 and f"TTFT {o.ttft_s:.2f} s > SLO 2 s" == o.reason
        if o.check == "ttft" and o.ttft_s is None:  # a smaller batch on the same deployment already missed
            assert o.reason.startswith("TTFT over the SLO: batch ") and "not simulated" in o.reason
        if o.check == "memory":
            assert o.reason.startswith("does not fit") and "GiB" in o.reason
    tpot = find_gpu_recommendations("llama-3.1-70b", input_len=128, output_len=64, tpot_slo=0.005, gpus="a100-80gb-sxm",
                                    max_gpus=8, workers=1)
    assert not tpot.options and all("TPOT" in o.reason for o in tpot.rejected if o.check == "tpot")
    qwen = find_gpu_recommendations("qwen2.5-7b", input_len=128, output_len=16, gpus="l4", max_gpus=8, workers=1)
    bad_tp = [o for o in qwen.rejected if o.check == "tp"]
    assert [o.tp for o in bad_tp] == [8] and "does not divide num_attention_heads = 28" in bad_tp[0].reason
    fp8 = find_gpu_recommendations("llama-3.1-8b", input_len=128, output_len=16, kv_dtype="fp8",
                                   gpus="a100-80gb-sxm,h100-sxm", max_gpus=2, workers=1)
    assert [o.check for o in fp8.rejected if o.gpu == "a100-80gb-sxm"] == ["precision"]
    assert all(o.gpu == "h100-sxm" for o in fp8.options)


def test_larger_batches_past_a_missed_slo_are_rejected_without_simulation_and_rightly():
    kw = dict(input_len=8192, output_len=256, concurrency=16, ttft_slo=2, tpot_slo=0.03, gpus="h100-sxm",
              max_gpus=16, workers=1)
    quick = find_gpu_recommendations("llama-3.1-70b", **kw)
    full = find_gpu_recommendations("llama-3.1-70b", exhaustive=True, **kw)
    assert quick.as_dict()["recommendations"] == full.as_dict()["recommendations"]
    assert quick.shapes_simulated < full.shapes_simulated
    bounded = [o for o in quick.rejected if o.check in ("ttft", "tpot") and o.ttft_s is None]
    assert bounded and all("not simulated" in o.reason for o in bounded)
    truth = {(o.tp, o.pp, o.replicas): o for o in full.rejected}
    for o in bounded:  # the exhaustive run simulated them: each really misses the SLO it was rejected for
        t = truth[o.tp, o.pp, o.replicas]
        assert t.ttft_s > 2 or (t.tpot_s is not None and t.tpot_s > 0.03)


def test_a_process_pool_gives_the_same_answer():
    kw = dict(input_len=2048, output_len=128, concurrency=4, ttft_slo=1.0, gpus="h100-sxm,l40s", max_gpus=16)
    one, two = find_gpu_recommendations("llama-3.1-8b", workers=1, **kw), find_gpu_recommendations(
        "llama-3.1-8b", workers=2, **kw)
    assert one.as_dict()["recommendations"] == two.as_dict()["recommendations"]
    assert one.as_dict()["rejected"] == two.as_dict()["rejected"]


RECOMMEND_KEYS = {"model", "input_len", "output_len", "context_length", "concurrency", "ttft_slo_s", "tpot_slo_s",
                  "max_gpus", "gpus_considered", "kv_cache_dtype", "weights", "gpu_memory_utilization",
                  "max_num_batched_tokens", "exhaustive", "candidates_evaluated", "shapes_simulated", "elapsed_s",
                  "recommendations", "rejected", "calibrated_only"}
OPTION_KEYS = {"gpu", "tp", "pp", "replicas", "gpus", "batch_per_replica", "status", "check", "reason", "ttft_s",
               "tpot_s", "e2e_s", "output_tokens_per_s", "cost_per_hour_usd", "cost_per_million_output_tokens_usd",
               "max_concurrent_per_replica", "memory_per_gpu_bytes", "efficiency_profile"}


def test_recommend_cli_table_and_json(cli):
    argv = ["recommend", "--model", "llama-3.1-70b", "--input-len", "8192", "--output-len", "1024", "--ttft-slo", "2",
            "--tpot-slo", "0.05", "--gpus", "h100-sxm,mi300x", "--max-gpus", "8"]
    rc, out, err = cli(*argv, "--show-rejected")
    assert rc == 0 and err == ""
    assert "cheapest per output token first" in out and "rejected options" in out and "mi300x" in out
    rc, out, err = cli(*argv, "--json")
    d = json.loads(out)
    assert rc == 0 and err == "" and set(d) == RECOMMEND_KEYS
    assert set(d["recommendations"][0]) == OPTION_KEYS | {"rank"} and d["recommendations"][0]["rank"] == 1
    assert all(set(r) == OPTION_KEYS for r in d["rejected"])


@pytest.mark.parametrize("extra, contains", [
    (["--gpus", "h100-sxm,h10"], ["unknown GPU 'h10'"]),
    (["--concurrency", "0"], ["concurrency = 0"]),
    (["--input-len", "-5"], ["input_len = -5"]),
    (["--ttft-slo", "0"], ["ttft_slo = 0.0", "> 0"]),
    (["--tpot-slo", "-1"], ["tpot_slo = -1.0"]),
    (["--max-gpus", "0"], ["max_gpus = 0"]),
    (["--input-len", "131000", "--output-len", "1000"], ["context_length = 132000", "allowed: 1 to 131072"]),
    (["--context-length", "100"], ["context_length = 100", "at least input_len + output_len"]),
    (["--model", "llama3-70b"], ["unknown model 'llama3-70b'"]),
    (["--kv-dtype", "int8"], ["kv_dtype = 'int8'"]),
])
def test_recommend_bad_input_is_one_line_and_exit_2(cli, extra, contains):  # noqa: F811
    argv = ["--model", "llama-3.1-8b", "--input-len", "512", "--output-len", "64", "--gpus", "l4"]
    rc, out, err = cli("recommend", *argv, *extra)
    assert rc == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith("error: ")
    for piece in contains:
        assert piece in err, (piece, err)


def test_api_requires_input_and_output_lengths():
    with pytest.raises(SimcoreError, match="input_len and output_len are required"):
        find_gpu_recommendations("llama-3.1-8b", 4096, 4)
