"""Disaggregated silicon rows as experiments (simcore/serving/silicon.py) and the pool settings they use
(serving.disaggregation.*_parallelism attention_dp / ep, *_limits, first_token; simcore/serving/disagg.py)."""

from __future__ import annotations

import pytest

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.errors import SimcoreError
from simcore.serving import disagg
from simcore.serving.silicon import AIPERF_CLIENT, Refused, experiment_for_row, measurement_from_row
from simcore.serving.simulate import simulate
from simcore.validate.compare import Outcome, summarize
from test_serving import serving_run

# aiconfigurator's dsr1_h100_trtllm_fp8_disagg_8192x1024_c6_cfg494 (silicon_sample.csv @095f58a5), measurements cut
V3 = {"system": "h100_sxm", "backend": "trtllm", "backend_version": "0.8.1.post3",
      "model_path": "deepseek-ai/DeepSeek-V3", "precision": "fp8", "mode": "disagg", "isl": "8192", "osl": "1024",
      "gemm_quant_mode": "fp8", "moe_quant_mode": "fp8",
      "prefill_batch_size": "1", "prefill_num_workers": "1", "prefill_tp_size": "1", "prefill_pp_size": "1",
      "prefill_attention_dp_size": "16", "prefill_moe_tp_size": "1", "prefill_moe_ep_size": "16",
      "decode_batch_size": "2", "decode_num_workers": "3", "decode_tp_size": "16", "decode_pp_size": "1",
      "decode_attention_dp_size": "1", "decode_moe_tp_size": "1", "decode_moe_ep_size": "16",
      "silicon_ttft_ms": "13693.3", "silicon_tpot_ms": "14.66"}
# a 2026_03_25_deepseek_r1_h100_sxm_sglang row: pools' tp only, the load in batch_size (silicon_concurrency)
R1 = {"system": "h100_sxm", "backend": "sglang", "backend_version": "0.5.8", "model_path": "deepseek-ai/DeepSeek-R1",
      "precision": "fp8", "mode": "disagg", "isl": "1024", "osl": "1024", "gemm_quant_mode": "fp8",
      "moe_quant_mode": "fp8_block", "prefill_tp_size": "16", "decode_tp_size": "16", "batch_size": "16",
      "silicon_ttft_ms": "367.8", "silicon_tpot_ms": "14.77"}


def test_a_disagg_row_builds_both_pools_with_the_generators_limits_and_the_benchmarks_load():
    e = experiment_for_row(V3, rounds=2)
    assert e["name"] == "trtllm-deepseek-v3-h100-sxm-p1xtp1a16-d3xtp16-c6-8192x1024"
    # aiperf --concurrency = decode_num_workers x decode_batch_size (benchmark rule estimated_concurrency)
    assert e["workload"]["arrival"] == {"process": "closed", "concurrency": 6, **AIPERF_CLIENT}
    assert e["workload"]["requests"] == 12
    d = e["serving"]["disaggregation"]
    assert d["prefill_replicas"] == 1 and d["decode_replicas"] == 3
    assert d["prefill_parallelism"] == {"tp": 1, "pp": 1, "attention_dp": 16, "ep": 16}
    assert d["decode_parallelism"] == {"tp": 16, "pp": 1, "attention_dp": 1, "ep": 16}
    # trtllm.rule: prefill max_batch_size 1, max_num_tokens ceil32(8192 + 1500) = 9696, both per attention-DP rank
    assert d["prefill_limits"] == {"max_num_seqs": 16, "max_num_batched_tokens": 16 * 9696}
    assert d["decode_limits"] == {"max_num_seqs": 2, "max_num_batched_tokens": 32}  # ceil32(batch 2)
    assert d["first_token"] == "decode" and d["decode_router"] == "round_robin"
    assert e["parallelism"] == {"tp": 16, "pp": 1, "ep": 16}  # the decode workers' layout
    assert e["inference"] == {"kvcache_precision": "fp8"}  # the generator's fp8 KV
    # the rule, not a published figure: such a record is summarized apart; with batch_size it is not
    assert measurement_from_row(V3).assumed == "load unrecorded: decode_num_workers x decode_batch_size clients assumed"
    assert measurement_from_row({**V3, "batch_size": "6"}).assumed is None


def test_the_published_concurrency_wins_and_unrecorded_workers_are_assumed_and_said():
    rec = measurement_from_row(R1)
    assert rec.concurrency == 16 and rec.assumed == "workers unrecorded: 1 prefill + 1 decode assumed"
    e = experiment_for_row(R1)
    assert e["name"] == "sglang-deepseek-r1-h100-sxm-p?xtp16-d?xtp16-c16-1024x1024"
    d = e["serving"]["disaggregation"]
    assert d["prefill_replicas"] == d["decode_replicas"] == 1
    # sglang.rule: prefill max_batch_size 1, max_prefill_tokens 1024 + 1500; no decode batch recorded: defaults
    assert d["prefill_limits"] == {"max_num_seqs": 1, "max_num_batched_tokens": 2524} and "decode_limits" not in d
    assert "inference" not in e  # no generator limits recorded: the engine's own KV dtype
    assert measurement_from_row({**V3, "batch_size": "9"}).concurrency == 9


@pytest.mark.parametrize("change, reason", [
    ({"decode_num_workers": "0"}, "bad value"),
    ({"prefill_batch_size": "-1"}, "bad value"),
    ({"decode_batch_size": "two"}, "bad value"),
    ({"decode_tp_size": "nan"}, "bad value"),
    ({"prefill_tp_size": "0"}, "bad value"),
    ({"prefill_tp_size": None}, "disagg layout"),
    ({"decode_batch_size": None}, "no concurrency"),
])
def test_bad_pool_fields_refuse_the_row_with_one_reason(change, reason):
    row = {k: v for k, v in {**V3, **change}.items() if v is not None}
    with pytest.raises(Refused) as e:
        experiment_for_row(row)
    assert e.value.reason == reason and "\n" not in str(e.value)


def test_records_with_an_assumed_deployment_are_summarized_apart():
    recs = [measurement_from_row({**V3, "batch_size": "6"}), measurement_from_row(R1)]
    res = [{"latency": {"ttft": {"mean": 13693.3 * 1.1}, "tpot": {"mean": 14.66 * 0.9}}, "throughput": {}},
           {"latency": {"ttft": {"mean": 367.8 * 2}, "tpot": {"mean": 14.77}}, "throughput": {}}]
    s = summarize([Outcome(r, {}, x) for r, x in zip(recs, res)])
    main = {m["metric"]: m for m in s["metrics"]}
    assert main["ttft"]["n"] == 1 and main["ttft"]["median_error"] == pytest.approx(0.1)
    assert main["tpot"]["median_error"] == pytest.approx(-0.1)
    apart = {m["metric"]: m for m in s["apart"]["metrics"]}
    assert apart["ttft"]["median_error"] == pytest.approx(1.0) and apart["tpot"]["median_error"] == pytest.approx(0)
    assert s["records"] == 2 and s["simulated"] == 2 and s["apart"]["records"] == 1


LOAD = {"requests": 12, "arrival": {"process": "closed", "concurrency": 6},
        "prompt_tokens": {"value": 1000}, "output_tokens": {"value": 20}}


def test_pool_limits_bound_each_pools_replicas():
    d = {"enabled": True, "prefill_replicas": 1, "decode_replicas": 2, "prefill_limits": {"max_num_seqs": 1},
         "decode_limits": {"max_num_seqs": 3, "max_num_batched_tokens": 64}}
    res = simulate(serving_run(LOAD, {"disaggregation": d}), keep_series=True)
    pre, *dec = res.replicas
    assert pre.cfg.max_num_seqs == 1 and len(pre.slots.request) == 1
    assert [r.cfg.max_num_seqs for r in dec] == [3, 3] and dec[0].cfg.max_num_batched_tokens == 64
    assert res.summary["requests_completed"] == 12
    # one prefill replica that takes one prompt a step: the 6 first prompts start one step apart
    first = sorted(res.metrics.first_token[:6])
    assert all(b > a for a, b in zip(first, first[1:]))


def test_first_token_at_decode_adds_the_kv_transfer_to_ttft():
    one = {"requests": 1, "arrival": {"process": "closed", "concurrency": 1},
           "prompt_tokens": {"value": 1000}, "output_tokens": {"value": 8}}
    link = {"link": "custom", "bandwidth_gbps": 10.0, "latency_us": 10.0}
    ttft = {}
    for where in ("prefill", "decode"):
        d = {"enabled": True, "transfer": link, "first_token": where}
        ttft[where] = simulate(serving_run(one, {"disaggregation": d})).summary["ttft_s"]["mean"]
    # llama-3.1-8b KV: 32 layers x 2 x 8 heads x 128 x 2 bytes = 131,072 B/token; 1000 tokens over 10 GB/s + 10 us
    assert ttft["decode"] - ttft["prefill"] == pytest.approx(10e-6 + 1000 * 131_072 / 10e9, rel=1e-9)


def test_each_worker_of_an_ep_pool_is_priced_with_its_own_experts():
    d = {"enabled": True, "prefill_replicas": 1, "decode_replicas": 2,
         "decode_parallelism": {"tp": 2, "ep": 2}, "prefill_parallelism": {"tp": 2, "ep": 2}}
    run = serving_run(LOAD, {"disaggregation": d}, model="qwen3-30b-a3b", parallelism={"tp": 2, "ep": 2})
    drun = disagg.pool_run(run, "decode", 2)
    assert drun.par.dp == 2 and drun.gpus == 4  # the pool: 2 workers of tp 2
    assert disagg.worker_run(drun).par.dp == 1  # each priced as one worker: dp > 1 would spread its experts
    # ... and budgeted as one: a worker's KV blocks do not depend on how many workers the pool has
    blocks = [simulate(serving_run({**LOAD, "requests": 2}, {"disaggregation": {**d, "decode_replicas": n}},
                                   model="qwen3-30b-a3b", parallelism={"tp": 2, "ep": 2}))
              .summary["disaggregation"]["decode_kv_blocks"] for n in (1, 2, 3)]
    assert blocks[0] == blocks[1] == blocks[2]


def test_an_attention_dp_pool_caches_per_rank_and_budgets_at_per_rank_limits():
    d = {"enabled": True, "prefill_parallelism": {"tp": 1, "attention_dp": 2, "ep": 2},
         "prefill_limits": {"max_num_seqs": 2, "max_num_batched_tokens": 4096}}
    run = serving_run(LOAD, {"disaggregation": d}, model="qwen3-30b-a3b", parallelism={"tp": 2})
    prun = disagg.pool_run(run, "prefill", 1)
    cfg = disagg.pool_cfg(run.experiment.serving, "prefill")
    blocks, budget = disagg.pool_blocks(prun, cfg, "prefill")
    assert budget.max_num_batched_tokens == 2048 and budget.max_num_seqs == 1  # each rank's share
    assert blocks == 2 * budget.blocks()  # two ranks, each its own cache


@pytest.mark.parametrize("d, msg", [
    ({"prefill_limits": {"max_num_seqs": 0}}, "max_num_seqs"),
    ({"decode_limits": {"max_num_batched_tokens": -5}}, "max_num_batched_tokens"),
    ({"decode_limits": {"max_seqs": 4}}, "max_seqs"),
    ({"first_token": "client"}, "first_token"),
    ({"decode_parallelism": {"attention_dp": 2}}, "field 'serving.disaggregation.decode_parallelism.attention_dp' = 2"),
    ({"prefill_parallelism": {"ep": 2}}, "field 'serving.disaggregation.prefill_parallelism.ep' = 2"),
])
def test_bad_pool_settings_are_one_line_errors(d, msg):
    with pytest.raises(SimcoreError) as err:  # llama-3.1-8b is dense: no experts to share or spread
        simulate(resolve(experiment_from_dict({"model": "llama-3.1-8b", "hardware": "h100-sxm",
                                               "workload": {"kind": "requests", **LOAD},
                                               "serving": {"disaggregation": {"enabled": True, **d}}})))
    assert msg in str(err.value) and "\n" not in str(err.value).strip()


@pytest.mark.parametrize("prefill, busiest", [
    ({"tp": 2}, 1000 * 48 * 2 * 2 * 128 * 2),  # 2 senders, 2 receivers: each GPU moves its 2 KV heads
    ({"tp": 1, "attention_dp": 2, "ep": 2}, 1000 * 48 * 2 * 4 * 128 * 2),  # one attention rank sends all 4 heads
])
def test_a_transfer_takes_the_busiest_gpus_bytes_sent_or_received(prefill, busiest):
    one = {"requests": 1, "arrival": {"process": "closed", "concurrency": 1},
           "prompt_tokens": {"value": 1000}, "output_tokens": {"value": 4}}
    d = {"enabled": True, "transfer": {"link": "custom", "bandwidth_gbps": 10.0, "latency_us": 0.0},
         "prefill_parallelism": prefill, "decode_parallelism": {"tp": 2}}
    s = simulate(serving_run(one, {"disaggregation": d}, model="qwen3-30b-a3b", parallelism={"tp": 2})).summary
    # qwen3-30b-a3b: 48 layers, 4 KV heads of 128, bf16; decode tp 2 keeps 2 heads per GPU
    assert s["disaggregation"]["kv_transfer_s_mean"] == pytest.approx(busiest / 10e9, rel=1e-9)
    assert s["disaggregation"]["kv_transfer_bytes"] == 1000 * 48 * 2 * 4 * 128 * 2
