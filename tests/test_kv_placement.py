"""KV placement over memory tiers (simcore/memory/kv_placement/): policies, pricing, outputs."""

from __future__ import annotations

import json

import pytest

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.config.hardware import GIB
from simcore.engine.walk import engine_parts
from simcore.memory.kv_placement import Tier, get_placement
from simcore.ops.passes import decode
from tests.conftest import BASE_EXPERIMENT, _merge

BIG = {"batch_size": 16, "prompt_tokens": 16384, "output_tokens": 16}  # 32.5 GiB of KV: more than HBM has left
SSD = {"name": "ssd", "bandwidth_gbps": 12, "capacity_gib": 2000}
LAYER = 16 * 16400 * 8 * 128 * 2 * 2  # one layer's KV at the final context: seqs x tokens x kv heads x dim x K,V x bf16


def test_block_spread_is_bandwidth_proportional_within_capacity():
    spread = get_placement("block_spread").place
    inf = 1e30
    assert spread([10.0, 10.0], [Tier("a", 3.0, inf), Tier("b", 1.0, inf)]) == [[0.75, 0.25]] * 2
    # by bandwidth 'a' would take 3/7 of the 20 bytes but holds only 6: it takes 0.3, b and c share 0.7 as 1 : 3
    got = spread([10.0, 10.0], [Tier("a", 3.0, 6.0), Tier("b", 1.0, inf), Tier("c", 3.0, inf)])[0]
    assert got == pytest.approx([0.3, 0.175, 0.525], rel=1e-12)


def test_layer_spill_fills_tiers_in_order():
    spill = get_placement("layer_spill").place
    t = [Tier("hbm", 9.0, 8.0), Tier("host", 1.0, 2.0), Tier("ssd", 0.5, 10.0)]
    assert spill([4.0, 4.0, 4.0], t) == [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    t = [Tier("hbm", 9.0, 5.0), Tier("host", 1.0, 3.0), Tier("ssd", 0.5, 2.0)]  # no tier holds layer 2 whole
    assert spill([4.0, 4.0, 2.0], t) == [[1, 0, 0], [0.25, 0.75, 0], [0, 0, 1]]


def builder_ops(policy: str, layer: int):
    run = resolve(experiment_from_dict(_merge(BASE_EXPERIMENT, {"workload": BIG, "inference": {
        "kv_placement": {"policy": policy, "tier": SSD}}})))
    parts = engine_parts(run)
    ops = [op for op in parts.builders[0].ops(decode(16, 16390)) if op.layer == layer]
    return run, {op.name: op for op in ops}


def test_spilled_layer_reads_over_the_host_link():
    run, last = builder_ops("layer_spill", 31)  # the last layers did not fit in HBM
    fetch = last["kv_cache_fetch"]
    assert fetch.tier == "host" and fetch.tier_bw == run.system.host_bandwidth
    assert fetch.bytes == 16 * 16391 * 8 * 128 * 2 * 2
    _, first = builder_ops("layer_spill", 0)
    assert first["kv_cache_fetch"].tier == "hbm" and first["kv_cache_fetch"].tier_bw == 0.0


def test_spread_reads_all_tiers_at_once():
    run, ops = builder_ops("block_spread", 5)
    f = ops["kv_cache_fetch"]
    from simcore.memory.budget import stage_placement
    pl = stage_placement(run, 0, 16, 16384, 16400)
    fr = pl.fractions[5]
    slowest = max(f_ / t.bandwidth for f_, t in zip(fr, pl.tiers))
    assert f.bytes / f.tier_bw == pytest.approx(slowest * f.bytes, rel=1e-12)  # max over tiers of share / bandwidth
    assert sum(fr) == pytest.approx(1.0)
    assert pl.resident()["hbm"] == pytest.approx(pl.tiers[0].capacity)  # HBM full, the rest spilled


def test_outputs_report_tiers_and_cost(cli, write_experiment):
    d = json.loads(cli("run", write_experiment(workload=BIG, inference={"kv_placement": {
        "policy": "layer_spill", "tier": SSD}}), "--json").out)
    kp = d["kv_placement"]
    assert sum(t["bytes_read"] for t in kp["tiers"].values()) == pytest.approx(d["kv_cache_bytes_read"])
    assert sum(t["resident_bytes"] for t in kp["tiers"].values()) == pytest.approx(32 * LAYER)
    assert kp["tiers"]["host"]["resident_bytes"] > 0 and "does not fit" in kp["all_in_hbm"]
    assert d["memory_per_gpu_bytes"]["kv_cache"] == kp["tiers"]["hbm"]["resident_bytes"]
    small = json.loads(cli("run", write_experiment(inference={"kv_placement": {"policy": "layer_spill"}}),
                           "--json").out)["kv_placement"]
    assert small["time_cost_s"] == 0.0 and small["tiers"]["host"]["resident_bytes"] == 0  # it all fits in HBM


@pytest.mark.parametrize("inference, workload, contains", [
    ({"kv_placement": {"policy": "spill"}}, None, ["inference.kv_placement.policy", "layer_spill"]),
    ({"kv_placement": {"policy": "layer_spill", "host_gib": 1}}, BIG, ["inference.kv_placement", "add a tier"]),
    ({"kv_placement": {"policy": "layer_spill", "tier": {**SSD, "name": "host"}}}, None, ["taken by a built-in tier"]),
    ({"kv_placement": {"policy": "block_spread"}, "kvcache_type": "host"}, None, ["leave inference.kvcache_type"]),
])
def test_bad_placement_input(bad, write_experiment, inference, workload, contains):
    bad("run", write_experiment(inference=inference, **({"workload": workload} if workload else {})),
        contains=contains)


def test_serving_runs_refuse_placement(bad, write_experiment):
    bad("run", write_experiment(workload={"kind": "requests", "requests": 4, "arrival": {"process": "closed",
        "concurrency": 1}, "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed",
        "value": 4}}, inference={"kv_placement": {"policy": "layer_spill"}}, drop=("workload.batch_size",)),
        contains=["inference.kv_placement.policy", "static workloads only"])
