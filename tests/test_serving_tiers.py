"""Cache policies, the host KV tier and preemption by swap (docs/serving.md)."""

from __future__ import annotations

import pytest

from simcore.ops.kv import kv_bytes_per_token
from simcore.serving.replica import Replica
from simcore.serving.simulate import simulate
from test_serving import RANDOM_WORKLOADS, check_invariants, run_checked, serving_run

SMALL = {"gpu_memory_utilization": 0.2345}  # 8B on one H100: ~1100 blocks of 16 tokens (vLLM accounting)
ZIPF = {"requests": 300, "seed": 3, "arrival": {"process": "poisson", "rate": 15.0},
        "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 16},
        "shared_prefix": {"tokens": 2048, "fraction": 1.0, "groups": 64, "zipf": 1.2}}
HOSTED = {"requests": 300, "seed": 1, "arrival": {"process": "poisson", "rate": 30.0},
          "prompt_tokens": {"dist": "lognormal", "mean": 300, "cv": 0.5, "max": 2000},
          "output_tokens": {"dist": "fixed", "value": 64},
          "shared_prefix": {"tokens": 1024, "fraction": 0.9, "groups": 40}}
PREEMPTING = {"requests": 40, "arrival": {"process": "closed", "concurrency": 32},
              "prompt_tokens": {"value": 1500}, "output_tokens": {"value": 600}}


def tier(policy="lru", **more):
    return {"prefix_caching": True, "host_tier": {"enabled": True, "policy": policy, **more}}


def check_tiers(res) -> None:
    check_invariants(res)
    block = kv_bytes_per_token(res.run.model, res.run.kv_dtype) * res.run.experiment.serving.block_size
    out = into = 0
    for rep in res.replicas:
        t = rep.tier
        if t is None:
            continue
        assert t.stored_total - t.evicted_total == len(t.ready)  # host blocks: stored = evicted + present
        assert len(t.ready) == len(t.policy)
        assert t.pinned == 0  # every swapped-out block was swapped back in
        assert t.peak_used <= t.capacity
        assert t.block_bytes == block
        out, into = out + t.blocks_out, into + t.blocks_in
        assert not rep.loading and not rep.swapped
    assert res.summary["kv_tier_bytes"] == {"hbm_to_host": out * block, "host_to_hbm": into * block}


def test_lfu_beats_lru_on_skewed_prefix_popularity_under_a_small_cache():
    rate = {p: simulate(serving_run(ZIPF, {"prefix_caching": True, "cache_policy": p}, engine=SMALL))
            .summary["prefix_cache_hit_rate"] for p in ("lru", "lfu", "cost_aware")}
    assert rate["lfu"] > rate["lru"] + 0.02
    assert rate["cost_aware"] != rate["lru"]


@pytest.mark.parametrize("policy", ["lfu", "cost_aware"])
def test_cache_policies_keep_the_invariants(policy):
    for wl in RANDOM_WORKLOADS[:3]:
        run_checked(serving_run(wl, {"prefix_caching": True, "cache_policy": policy, "max_num_batched_tokens": 512}))


@pytest.mark.parametrize("serving", [tier(), tier("lfu", capacity_gib=0.5), tier("cost_aware", load="blocking"),
                                     {**tier(capacity_gib=1), "preemption": "swap"}, tier(prefetch="on_arrival"),
                                     {**tier("lfu", capacity_gib=1, prefetch="on_arrival"), "preemption": "swap"}])
def test_host_tier_keeps_the_invariants_on_random_workloads(serving):
    for wl in RANDOM_WORKLOADS:
        check_tiers(run_checked(serving_run(wl, serving)))


def test_small_host_tier_evicts_and_never_exceeds_its_capacity():
    res = run_checked(serving_run(HOSTED, tier(capacity_gib=0.5), engine=SMALL))
    check_tiers(res)
    t = res.replicas[0].tier
    assert t.capacity == 0.5 * 2**30 // (16 * 131072)  # 0.5 GiB of 16-token blocks at 128 KiB per token
    assert t.evicted_total > 0 and t.peak_used == t.capacity
    assert res.summary["kv_tier_bytes"]["hbm_to_host"] > 0


def test_host_tier_off_moves_nothing():
    s = simulate(serving_run(HOSTED, {"prefix_caching": True}, engine=SMALL)).summary
    assert s["kv_tier_bytes"] == {"hbm_to_host": 0.0, "host_to_hbm": 0.0}
    assert "host_cache_hit_rate" not in s


def _steps(monkeypatch, serving):
    """Per iteration: (clock advance, priced time, host->HBM blocks started in it)."""
    rows = []
    step = Replica.step

    def spy(self):
        t0, n0 = self.clock, self.tier.blocks_in
        priced = []
        time = self.cost.time
        self.cost.time = lambda *a: priced.append(time(*a)) or priced[-1]
        try:
            out = step(self)
        finally:
            self.cost.time = time
        if priced:
            rows.append((self.clock - t0, priced[0], self.tier.blocks_in - n0))
        return out

    monkeypatch.setattr(Replica, "step", spy)
    res = simulate(serving_run(HOSTED, serving, engine=SMALL), keep_series=True)
    check_tiers(res)
    assert res.summary["host_cache_hit_rate"] > 0
    return [r for r in rows if r[2]]


def test_async_host_load_never_adds_time_to_its_iteration(monkeypatch):
    loads = _steps(monkeypatch, tier())
    assert loads and all(dt == pytest.approx(priced, rel=1e-9) for dt, priced, _ in loads)


def test_blocking_host_load_adds_its_transfer_to_the_iteration(monkeypatch):
    loads = _steps(monkeypatch, tier(load="blocking"))
    assert loads and all(dt > priced * (1 + 1e-6) for dt, priced, _ in loads)


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
def test_swap_and_recompute_both_complete_every_request(preemption):
    res = run_checked(serving_run(PREEMPTING, {"preemption": preemption, "prefix_caching": True}, engine=SMALL))
    check_tiers(res)
    s = res.summary
    assert s["requests_completed"] == 40 and s["preemptions"] > 0
    if preemption == "swap":
        assert s["swaps"] > 0 and s["kv_tier_bytes"]["hbm_to_host"] == s["kv_tier_bytes"]["host_to_hbm"] > 0


def test_prefetch_on_admit_is_the_default_and_the_same_as_no_prefetch_hook(monkeypatch):
    """on_admit must be exactly the tier without any arrival-time hook (the code before prefetch policies)."""
    import simcore.serving.simulate as sim

    def summary(serving):
        s = simulate(serving_run(HOSTED, serving, engine=SMALL)).summary
        s.pop("wall_s")
        return s

    default, named = summary(tier()), summary(tier(prefetch="on_admit"))
    monkeypatch.setattr(sim, "get_prefetch_policy", lambda name: (lambda: None))
    hookless = summary(tier())
    assert default == named == hookless
    assert hookless["kv_tier_bytes"]["host_to_hbm"] > 0 and hookless["host_cache_hit_rate"] > 0


def test_prefetch_on_arrival_overlaps_host_loads_with_queueing():
    """Zipf shared prefixes, tier on, queue-heavy (mean TTFT ~0.6 s): loading on arrival is no slower and
    moves at least as many bytes host -> HBM (blocks loaded before HBM would have had them)."""
    wl = {**ZIPF, "arrival": {"process": "poisson", "rate": 60.0}}
    s = {}
    for pf in ("on_admit", "on_arrival"):
        res = run_checked(serving_run(wl, tier(prefetch=pf), engine=SMALL))
        check_tiers(res)
        s[pf] = res.summary
        assert s[pf]["requests_completed"] == 300 and s[pf]["ttft_s"]["mean"] > 0.3  # the queue dominates TTFT
    assert s["on_arrival"]["ttft_s"]["mean"] <= s["on_admit"]["ttft_s"]["mean"]
    assert s["on_arrival"]["kv_tier_bytes"]["host_to_hbm"] >= s["on_admit"]["kv_tier_bytes"]["host_to_hbm"] > 0


def test_host_tier_needs_prefix_caching_and_unknown_policies_are_listed(bad, write_experiment):
    for serving, contains in (({"host_tier": {"enabled": True}}, ["host_tier needs prefix_caching"]),
                              ({"cache_policy": "lfx"}, ["unknown cache policy", "'lfx'", "lfu", "lru", "cost_aware"]),
                              ({"prefix_caching": True, "host_tier": {"enabled": True, "prefetch": "on_arival"}},
                               ["unknown prefetch policy", "'on_arival'", "on_admit", "on_arrival"])):
        path = write_experiment(workload={"kind": "requests", "requests": 2}, serving=serving,
                                drop=("workload.batch_size", "workload.prompt_tokens", "workload.output_tokens"))
        bad("run", path, contains=contains)
