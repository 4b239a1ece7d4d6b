"""Disaggregated pools on different GPU kinds, and the link that joins them (docs/serving.md)."""

from __future__ import annotations

import pytest

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.serving.simulate import simulate
from test_serving import check_invariants, serving_run

ONE = {"requests": 1, "arrival": {"process": "closed", "concurrency": 1},
       "prompt_tokens": {"dist": "fixed", "value": 1024}, "output_tokens": {"dist": "fixed", "value": 8}}
FEW = {"requests": 40, "arrival": {"process": "poisson", "rate": 4.0},
       "prompt_tokens": {"dist": "fixed", "value": 2048}, "output_tokens": {"dist": "fixed", "value": 64}}


def dis(**more):
    return {"enabled": True, "prefill_replicas": 1, "decode_replicas": 1, **more}


def run(workload, d):
    res = simulate(serving_run(workload, {"disaggregation": d}), keep_series=True)
    check_invariants(res)
    return res.summary


def test_custom_link_time_is_latency_plus_shard_over_bandwidth():
    s = run(ONE, dis(decode_hardware="a100-80gb-sxm", transfer={"link": "custom", "bandwidth_gbps": 5.0,
                                                                  "latency_us": 20.0}))
    g = s["disaggregation"]
    shard = 1024 * 32 * 8 * 128 * 2 * 2  # tokens x layers x kv heads x head_dim x (K, V) x bf16, tp 1
    assert g["kv_transfer_bytes"] == shard
    assert g["kv_transfer_s_mean"] == pytest.approx(20e-6 + shard / 5e9, rel=1e-12)
    assert g["link"] == "custom" and (g["prefill_hardware"], g["decode_hardware"]) == ("h100-sxm", "a100-80gb-sxm")


def test_mixed_pools_go_over_the_slower_network_share():
    """H100 (hgx-h100: 8 x 400 Gb/s per 8 GPUs) to A100 (dgx-a100-80gb: 8 x 200 Gb/s per 8): the A100 side binds."""
    from simcore.config.hardware import load_system
    from simcore.cost.collectives import schedule

    s = run(ONE, dis(decode_hardware="a100-80gb-sxm"))["disaggregation"]
    assert s["link"] == "inter_node" and s["inter_node"]
    a100 = load_system("a100-80gb-sxm")
    assert a100.inter_link.bandwidth < load_system("h100-sxm").inter_link.bandwidth
    shard = 1024 * 32 * 8 * 128 * 2 * 2
    assert s["kv_transfer_s_mean"] == pytest.approx(schedule("send_recv", shard, 2, a100, True).time, rel=1e-12)


def test_decode_pool_on_h200_prices_and_sizes_with_its_own_gpu():
    same = run(FEW, dis())
    mixed = run(FEW, dis(decode_hardware="h200-sxm"))
    h200 = resolve(experiment_from_dict({"model": "llama-3.1-8b", "hardware": "h200-sxm",
                                         "workload": {"kind": "requests", **FEW}}))
    assert mixed["disaggregation"]["decode_kv_blocks"] == simulate(h200).summary["kv_blocks"]  # the pool's own budget
    assert mixed["disaggregation"]["prefill_kv_blocks"] == same["disaggregation"]["prefill_kv_blocks"]
    assert mixed["tpot_s"]["p50"] < same["tpot_s"]["p50"]  # 4.8 TB/s of HBM against 3.35 for memory-bound decode
    assert mixed["ttft_s"]["p50"] == pytest.approx(same["ttft_s"]["p50"], rel=1e-12)  # the same prefill GPU


@pytest.mark.parametrize("d, contains", [
    (dis(decode_hardware="h200-sxm", transfer={"link": "intra_node"}), ["transfer.link", "not in one NVLink node"]),
    (dis(decode_hardware="h200-sxn"), ["serving.disaggregation.decode_hardware", "h200-sxm"]),
    (dis(transfer={"link": "custom"}), ["bandwidth_gbps"]),
    (dis(transfer={"link": "auto", "bandwidth_gbps": 5}), ["only used with link custom"]),
    (dis(prefill_hardware="a100-80gb-sxm"), ["serving.disaggregation.prefill_hardware", "fp8"]),  # no fp8 on A100
])
def test_bad_mixed_input(bad, write_experiment, d, contains):
    path = write_experiment(workload={"kind": "requests", **FEW}, serving={"disaggregation": d},
                            precision={"weights": "fp8", "activations": "fp8"}, drop=("workload.batch_size",))
    bad("run", path, contains=contains)
