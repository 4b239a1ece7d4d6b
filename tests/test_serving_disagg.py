"""Disaggregated prefill / decode pools (simcore/serving/disagg.py, docs/serving.md)."""

from __future__ import annotations

import numpy as np
import pytest

from simcore.cost.collectives import Schedule
from simcore.errors import SimcoreError
from simcore.ops.kv import kv_bytes
from simcore.serving import disagg
from simcore.serving.disagg import DecodeReplica, PrefillReplica
from simcore.serving.simulate import simulate
from test_serving import RANDOM_WORKLOADS, check_invariants, serving_run

SMALL = {"gpu_memory_utilization": 0.25}  # 8B on one H100: ~1100 blocks of 16 tokens
LONG = {"requests": 300, "seed": 0, "arrival": {"process": "poisson", "rate": 4.0},
        "prompt_tokens": {"dist": "lognormal", "mean": 4096, "cv": 0.3, "max": 8192},
        "output_tokens": {"dist": "fixed", "value": 256}}
PREEMPTING = {"requests": 60, "arrival": {"process": "closed", "concurrency": 32},
              "prompt_tokens": {"value": 1500}, "output_tokens": {"value": 600}}


def dis(n_prefill=1, n_decode=1, **more):
    return {"enabled": True, "prefill_replicas": n_prefill, "decode_replicas": n_decode, **more}


def run_disagg(workload, serving=None, d=None, **extra):
    res = simulate(serving_run(workload, {**(serving or {}), "disaggregation": d or dis()}, **extra),
                   keep_series=True)
    check_invariants(res)  # arrive once, finish or drop once; blocks conserved per replica (so per pool)
    return res


def record_chunks(monkeypatch):
    """Every prefill chunk a decode replica schedules, with whether its request was preempted there."""
    seen = []
    real = DecodeReplica.admit

    def admit(self, budget, chunks, whole=False):
        k = len(chunks)
        out = real(self, budget, chunks, whole)
        seen.extend(self.slots.request[s] in self.gen_saved for s, _ in chunks[k:])
        return out

    def continue_prefills(self, budget):
        chunks, left = type(self).__mro__[1].continue_prefills(self, budget)
        seen.extend(self.slots.request[s] in self.gen_saved for s, _ in chunks)
        return chunks, left

    monkeypatch.setattr(DecodeReplica, "admit", admit)
    monkeypatch.setattr(DecodeReplica, "continue_prefills", continue_prefills)
    return seen


@pytest.mark.parametrize("wl", RANDOM_WORKLOADS)
@pytest.mark.parametrize("serving,d", [
    ({}, dis()),
    ({"prefix_caching": True, "router": "least_outstanding"}, dis(2, 1)),
    ({"scheduler": "sarathi"}, dis(1, 2, decode_router="round_robin")),
    ({"max_num_batched_tokens": 512, "prefix_caching": True}, dis(1, 1, transfer={"link": "inter_node"})),
    ({"scheduler": "static", "max_num_seqs": 16}, dis()),
])
def test_disaggregated_runs_keep_the_invariants(wl, serving, d):
    res = run_disagg(wl, serving, d)
    reps = res.replicas
    assert [type(r) for r in reps] == [PrefillReplica] * d["prefill_replicas"] + [DecodeReplica] * d["decode_replicas"]
    for r in reps:
        assert not r.running_order and not r.waiting and not getattr(r, "arrived", ())
    m = res.metrics
    done = ~np.isnan(m.finish)
    assert np.all(m.replica[done] < d["prefill_replicas"])  # requests arrive at the prefill pool


def test_transfer_bytes_are_the_prompt_kv_of_the_transferred_requests():
    res = run_disagg(RANDOM_WORKLOADS[0], d=dis(decode_parallelism={"tp": 2}))
    run, reqs, m = res.run, res.metrics.reqs, res.metrics
    moved = [r for r in range(len(reqs)) if reqs.output[r] > 1 and not np.isnan(m.first_token[r])]
    want = sum(kv_bytes(run.model, 1, int(reqs.prompt[r]), run.kv_dtype, 2) * 2 for r in moved)
    s = res.summary["disaggregation"]
    assert s["kv_transfers"] == len(moved) > 0
    assert s["kv_transfer_bytes"] == pytest.approx(want, rel=1e-12)
    assert s["decode_gpus"] == 2 and s["prefill_gpus"] == 1
    assert s["kv_transfer_s_mean"] > 0


def test_a_decode_replica_prefills_only_to_recompute_what_it_preempted(monkeypatch):
    seen = record_chunks(monkeypatch)
    res = run_disagg(PREEMPTING, d=dis(), engine=SMALL)
    assert res.summary["preemptions"] > 0
    assert seen and all(seen)  # re-prefills after preemption, nothing else
    seen.clear()
    run_disagg(LONG)
    assert seen == []


def test_one_token_requests_finish_on_the_prefill_replica():
    wl = {**RANDOM_WORKLOADS[0], "output_tokens": {"dist": "fixed", "value": 1}}
    res = run_disagg(wl)
    assert res.summary["disaggregation"]["kv_transfers"] == 0
    assert res.replicas[1].iterations == 0


def test_a_slow_link_raises_tpot_but_not_ttft(monkeypatch):
    fast = run_disagg(LONG).summary
    monkeypatch.setattr(disagg, "schedule", lambda kind, nbytes, n, system, inter: Schedule("p2p", 1, nbytes / 1e9, "next"))
    slow = run_disagg(LONG).summary  # 1 GB/s: ~0.5 s per 4k-token prompt
    assert slow["ttft_s"] == fast["ttft_s"]  # the prefill pool does not see the link
    assert slow["tpot_s"]["p99"] > 2 * fast["tpot_s"]["p99"]
    assert slow["disaggregation"]["kv_transfer_s_mean"] > 100 * fast["disaggregation"]["kv_transfer_s_mean"]


def test_prefill_heavy_load_gets_better_tpot_disaggregated_than_colocated_at_the_same_gpus():
    split = run_disagg(LONG, {"router": "least_outstanding"}).summary
    colo = simulate(serving_run(LONG, {"router": "least_outstanding"}, parallelism={"dp": 2})).summary
    assert "disaggregation" not in colo
    assert split["tpot_s"]["p50"] < colo["tpot_s"]["p50"]
    assert split["tpot_s"]["p99"] < colo["tpot_s"]["p99"]
    assert split["itl_s"]["p99"] < 0.5 * colo["itl_s"]["p99"]  # no prefill chunk stalls a decode


def test_max_time_drops_what_is_in_flight():
    s = simulate(serving_run(LONG, {"max_time_s": 20.0, "disaggregation": dis()})).summary
    assert s["dropped_reasons"].get("unfinished at serving.max_time_s", 0) > 0
    assert s["requests_completed"] + s["requests_dropped"] + s["requests_not_arrived"] == LONG["requests"]


@pytest.mark.parametrize("d,extra,msg", [
    (dis(0, 1), {}, "prefill_replicas"),
    (dis(1, 0), {}, "decode_replicas"),
    (dis(1, 3), {"parallelism": {"dp": 2}}, "field 'parallelism.dp' = 2"),
    (dis(4, 5, transfer={"link": "intra_node"}), {}, "more than the 8 of one"),
    (dis(decode_parallelism={"tp": 3}), {}, "field 'serving.disaggregation.decode_parallelism.tp' = 3"),
    (dis(decode_router="nope"), {}, "serving.disaggregation.decode_router"),
])
def test_bad_pools_are_one_line_errors(d, extra, msg):
    with pytest.raises((SimcoreError, ValueError)) as err:
        simulate(serving_run(LONG, {"disaggregation": d}, **extra))
    assert msg in str(err.value)
    if isinstance(err.value, SimcoreError):
        assert "\n" not in str(err.value)


def test_more_replicas_than_a_node_go_over_the_network():
    res = run_disagg({**LONG, "requests": 40}, d=dis(4, 6))
    assert res.summary["disaggregation"]["inter_node"] is True
    assert run_disagg({**LONG, "requests": 40}).summary["disaggregation"]["inter_node"] is False
