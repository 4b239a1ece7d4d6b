"""Pipelined replicas: several batches in flight per replica, one per pipeline stage."""

from __future__ import annotations

import json

import pytest

from simcore.serving.pipeline import StagePipeline

PP = {"model": "llama-3.1-70b", "parallelism": {"tp": 2, "pp": 2, "dp": 1, "ep": 1},
      "workload": {"kind": "requests", "requests": 64, "arrival": {"process": "closed", "concurrency": 32},
                   "prompt_tokens": {"dist": "fixed", "value": 1024}, "output_tokens": {"dist": "fixed", "value": 16}},
      "serving": {"iteration_overhead_us": 0}}
DROP = ("workload.batch_size",)
FLAT = {"pipeline_batches": 1, "iteration_overhead_us": 0}  # one batch at a time through the stages


def test_two_balanced_batches_keep_both_stages_busy():
    d = 1.0
    pipe = StagePipeline([0.5, 0.5])
    a = pipe.run(0.0, 0.0, 2 * d)  # engine A: stage 0 [0, 1], stage 1 [1, 2]
    b = pipe.run(0.0, 0.0, 2 * d)  # engine B waits for stage 0: [1, 2], then [2, 3]
    assert (a, b) == (2.0, 3.0)
    a2 = pipe.run(a, 0.0, 2 * d)  # [2, 3], [3, 4]
    b2 = pipe.run(b, 0.0, 2 * d)  # [3, 4], [4, 5]
    assert (a2, b2) == (4.0, 5.0)  # each engine steps every 2 d: two batches per 2 d instead of one
    assert pipe.busy == [4.0, 4.0]
    # host time runs off the stages: a step of 0.5 host + 2 GPU that finds both stages free
    assert StagePipeline([0.5, 0.5]).run(10.0, 0.5, 2.0) == 12.5


def test_one_request_sees_the_bubble(cli, write_experiment):
    """One batch in flight: each stage works 1 / pp of the time, the bubble is (pp - 1) / pp."""
    one = {**PP, "workload": {**PP["workload"], "requests": 2, "arrival": {"process": "closed", "concurrency": 1}}}
    piped = json.loads(cli("run", write_experiment(**one, drop=DROP), "--json").out)
    flat = json.loads(cli("run", write_experiment(**{**one, "serving": FLAT}, drop=DROP), "--json").out)
    assert piped["pipeline"]["batches_in_flight"] == 2
    assert piped["pipeline"]["bubble"] == pytest.approx(0.5, abs=1e-9)
    assert piped["tpot_s"]["mean"] == pytest.approx(flat["tpot_s"]["mean"], rel=1e-12)  # nothing to overlap
    assert "pipeline" not in flat
    assert piped["kv_blocks"] == flat["kv_blocks"] // 2  # vLLM v0: num_gpu_blocks // pp per virtual engine


def test_pipelining_raises_throughput_under_load(cli, write_experiment):
    """Long prompts, short answers: compute-bound prefill chunks overlap across the two stages."""
    piped = json.loads(cli("run", write_experiment(**PP, drop=DROP), "--json").out)
    flat = json.loads(cli("run", write_experiment(**{**PP, "serving": FLAT}, drop=DROP), "--json").out)
    gain = piped["throughput"]["output_tokens_per_s"] / flat["throughput"]["output_tokens_per_s"]
    assert 1.3 < gain <= 2.0  # at most pp times: every stage busy all the time
    assert piped["pipeline"]["bubble"] < 0.25
    assert piped["requests_completed"] == flat["requests_completed"] == 64


@pytest.mark.parametrize("serving, contains", [
    ({"pipeline_batches": 3}, ["serving.pipeline_batches", "3", "parallelism.pp = 2"]),
    ({"pipeline_batches": 0}, ["serving.pipeline_batches"]),
    ({"prefix_caching": True, "host_tier": {"enabled": True}, "pipeline_batches": 2}, ["pipeline_batches = 2", "host_tier"]),
])
def test_bad_pipeline_input(bad, write_experiment, serving, contains):
    bad("run", write_experiment(**{**PP, "serving": serving}, drop=DROP), contains=contains)


def test_host_tier_keeps_one_batch_at_a_time_by_default(cli, write_experiment):
    tiered = {**PP, "serving": {"prefix_caching": True, "host_tier": {"enabled": True}, "iteration_overhead_us": 0}}
    r = cli("run", write_experiment(**tiered, drop=DROP), "--json")
    assert r.rc == 0, r.err
    assert "pipeline" not in json.loads(r.out)
