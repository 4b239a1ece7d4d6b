"""The discrete-event engine: graph, flattener, modes, overlap policies, invariants."""

import json

import pytest

from simcore.cost.roofline import Pricer
from simcore.engine.des import Event, critical_path, execute
from simcore.engine.policies import OverlapPolicy, get_policy, policy_names, register
from simcore.run.static import simulate
from simcore.errors import SimcoreError
from simcore.graph.build import build_graph, split_batch
from simcore.graph.flatten import flatten
from simcore.ops import builder as builder_module
from simcore.ops.passes import decode, prefill
from simcore.report.trace import write_trace
from tests.helpers import make_run

MODES = ("analytical", "hybrid", "flattened")


def run_modes(**kw):
    engine = kw.pop("engine", {})
    return {m: simulate(make_run(**kw, engine={**engine, "mode": m})) for m in MODES}


@pytest.mark.parametrize("policy", ["none", "kv_fetch", "all"])
def test_modes_agree_without_contention(policy):
    res = run_modes(model="llama-3.1-8b", batch=8, prompt=512, output=16,
                    engine={"overlap_policy": policy, "decode_sample_steps": 4})
    base = res["analytical"]
    for m in ("hybrid", "flattened"):
        assert res[m].ttft == pytest.approx(base.ttft, rel=0.01)
        assert res[m].e2e == pytest.approx(base.e2e, rel=0.01)


def test_modes_agree_exactly_on_tp8_when_nothing_overlaps():
    res = run_modes(model="llama-3.1-70b", batch=16, prompt=256, output=8, parallelism={"tp": 8},
                    engine={"decode_sample_steps": 3})
    assert res["flattened"].e2e == pytest.approx(res["analytical"].e2e, rel=1e-9)
    assert res["hybrid"].e2e == pytest.approx(res["analytical"].e2e, rel=1e-9)


def test_flattened_keeps_the_graphs_rank_count():
    run = make_run("llama-3.1-70b", batch=4, prompt=64, output=2, parallelism={"tp": 4, "pp": 2})
    g = build_graph(run, decode(4, 64), micro_batches=2)
    assert g.graph["ranks"] == 8
    plan = flatten(g, run, "flattened", Pricer(run.system), get_policy("none"), all_ranks=True)
    assert plan.ranks == 8 and {e.rank for e in plan.events} == set(range(8))
    assert flatten(g, run, "hybrid", Pricer(run.system), get_policy("none")).ranks == 2
    one = flatten(g, run, "flattened", Pricer(run.system), get_policy("none"))  # one rank stands for its TP group
    assert one.ranks == 2 and {e.rank for e in one.events} == {0, 1}
    assert len(plan.events) == 4 * len(one.events)


@pytest.mark.parametrize("policy", ["none", "kv_fetch", "tp_comm", "pp_comm", "all"])
def test_one_rank_per_tp_group_gives_every_ranks_times(policy):
    """TP peers run identical ops on identical links: simulating one per stage changes no time, critical
    path or bubble (ring and two-shot rounds, pipeline sends, HBM sharing with a prefetch)."""
    kw = dict(model="llama-3.1-70b", batch=8, prompt=512, output=3, parallelism={"tp": 4, "pp": 2})
    eng = {"mode": "flattened", "overlap_policy": policy, "micro_batches": 2}
    one = simulate(make_run(**kw, engine=eng))
    every = simulate(make_run(**kw, engine={**eng, "all_ranks": True}))
    assert (one.ranks, every.ranks) == (2, 8)
    assert every.events_simulated == 4 * one.events_simulated
    assert one.ttft == every.ttft and list(one.step_times) == list(every.step_times)
    assert one.critical_path == pytest.approx(every.critical_path, rel=1e-12)
    assert one.prefill.bubble == every.prefill.bubble


def test_graph_nodes_and_kv_cache_nodes():
    run = make_run("llama-3.2-1b", batch=4, prompt=32, output=2, parallelism={"pp": 2})
    g = build_graph(run, decode(4, 32), micro_batches=2, steps=2)
    kinds = [d["op"].kind for _, d in g.nodes(data=True)]
    assert kinds.count("kv_cache_store") == kinds.count("kv_cache_fetch") == 16 * 2 * 2  # layers x mbs x steps
    for _, d in g.nodes(data=True):
        assert d["kind"] == d["op"].kind and d["ranks"] == (d["stage"],)
        if d["kv_cache"]:
            assert d["op"].collective == "" and d["op"].group == 1  # compute-like, no comm metadata
    priced = build_graph(run, decode(4, 32), micro_batches=2, pricer=Pricer(run.system))
    store = next(d for _, d in priced.nodes(data=True) if d["kind"] == "kv_cache_store")
    # one new token per sequence of 2 (micro-batch of 4), 8 KV heads x 64 x 2 (K, V) x 2 B: a tiny
    # memory-bound kernel, so its time is the elementwise floor plus bytes over achieved bandwidth
    eff = run.system.efficiency
    assert store["bytes"] == 2 * 1 * 8 * 64 * 2 * 2
    assert store["duration"] == pytest.approx(eff.elementwise_floor + store["bytes"] / (3350e9 * eff.memory))
    # micro-batch 0's first op of step 1 waits for its last op of step 0
    last0 = max(n for n in g.nodes if n[:3] == (0, 0, 1))
    assert g.has_edge(last0, (1, 0, 0, 0))
    assert split_batch(10, 4) == [3, 3, 2, 2] and split_batch(2, 4) == [1, 1]


def test_contention_never_makes_a_run_faster():
    run = make_run("llama-3.1-70b", batch=32, prompt=1024, output=2, parallelism={"tp": 4, "pp": 2},
                   engine={"overlap_policy": "all"})
    pricer = Pricer(run.system)
    for ps in (prefill(32, 1024), decode(32, 1024)):
        for mode in ("hybrid", "flattened"):
            g = build_graph(run, ps, micro_batches=2)
            free = flatten(g, run, mode, pricer, get_policy("all"))
            busy = flatten(g, run, mode, pricer, get_policy("all"))
            t_free = execute(free.events, contention=False)
            t_busy = execute(busy.events, contention=True, hbm_gpus=busy.hbm_gpus)
            assert t_busy >= t_free * (1 - 1e-12)


def test_transfers_on_one_link_share_its_bandwidth():
    """A 4 s bucket starts at 0 on a NIC; a 1 s send joins at 1 s (after 1 s of compute on another stream).
    Sharing: the bucket has 3 s left when the send joins; both run at half rate, so the send ends at 3 s
    and the bucket at 5 s (queueing behind the bucket would end the send at 5 s)."""
    evs = [Event(0, 0, "dp", "bucket", "comm", 4.0, link="nic:0"),
           Event(1, 0, "main", "compute", "compute", 1.0),
           Event(2, 0, "main", "send", "comm", 1.0, link="nic:0", deps=[1]),
           Event(3, 0, "main", "next", "compute", 0.5, deps=[2])]
    assert execute(evs) == pytest.approx(5.0)
    assert (evs[2].start, evs[2].end) == (pytest.approx(1.0), pytest.approx(3.0))
    assert evs[0].end == pytest.approx(5.0) and evs[3].end == pytest.approx(3.5)
    crit = critical_path(evs)  # the bucket ends last: 4 s of its own work, 1 s stretched by the send
    assert crit == {"comm": pytest.approx(4.0), "contention": pytest.approx(1.0)}
    # without contention each transfer takes its own time
    free = [Event(e.id, e.rank, e.stream, e.name, e.kind, e.duration, link=e.link, deps=list(e.deps)) for e in evs]
    assert execute(free, contention=False) == pytest.approx(4.0) and free[3].end == pytest.approx(2.5)


def test_runs_are_bit_identical():
    kw = dict(model="mixtral-8x7b", batch=8, prompt=128, output=4, parallelism={"tp": 2, "dp": 2, "ep": 4, "pp": 2},
              engine={"mode": "flattened", "overlap_policy": "all"})
    a, b = simulate(make_run(**kw)), simulate(make_run(**kw))
    assert a.e2e == b.e2e
    assert [(e.start, e.end) for e in a.prefill.events] == [(e.start, e.end) for e in b.prefill.events]


def test_critical_path_sums_to_the_pass_time():
    for mode in MODES:
        res = simulate(make_run("llama-3.1-70b", batch=8, prompt=256, output=2, parallelism={"tp": 4, "pp": 2},
                                engine={"mode": mode, "overlap_policy": "all", "micro_batches": 2}))
        assert sum(critical_path(res.prefill.events).values()) == pytest.approx(res.ttft, rel=1e-9)
        assert sum(res.critical_path.values()) == pytest.approx(res.e2e, rel=1e-6)
        assert res.critical_path["comm"] > 0 and res.critical_path["kv_cache"] > 0


def test_kv_cache_delta_equals_the_cache_time_not_overlapped(monkeypatch):
    """Price a short decode with the cache ops, then with them forced to zero bytes."""
    for policy in ("none", "kv_fetch"):
        kw = dict(model="llama-3.1-8b", batch=16, prompt=2048, output=6,
                  engine={"overlap_policy": policy, "decode_sample_steps": 0, "mode": "flattened"})
        priced = simulate(make_run(**kw))
        original = builder_module.StageBuilder.kv_ops

        def zero_bytes(self, layer, ps):
            from dataclasses import replace
            return [replace(op, bytes=0.0, kv_bytes=0.0) for op in original(self, layer, ps)]

        monkeypatch.setattr(builder_module.StageBuilder, "kv_ops", zero_bytes)
        free = simulate(make_run(**kw))
        monkeypatch.undo()
        assert free.kv_read_per_rank == 0 and priced.kv_read_per_rank > 0
        for p, f in ((priced.decode_first, free.decode_first), (priced.prefill, free.prefill)):
            # not-overlapped cache time: the cache ops on the critical path, plus the HBM waits they cause
            cache = lambda r: r.critical.get("kv_cache", 0.0) + r.critical.get("contention", 0.0)  # noqa: E731
            assert p.time - f.time == pytest.approx(cache(p) - cache(f), rel=0.02, abs=1e-7)
        if policy == "kv_fetch":  # overlap hides part of the fetch, so the delta is smaller than its full time
            full = sum(t.duration for w in priced.decode_first.stages for t in w.ops if t.op.kind == "kv_cache_fetch")
            assert priced.decode_first.time - free.decode_first.time < full


def test_overlap_policies_only_help_in_analytical_mode():
    times = {}
    for policy in policy_names():
        res = simulate(make_run("llama-3.1-70b", batch=32, prompt=1024, output=4, parallelism={"tp": 8, "pp": 2},
                                engine={"overlap_policy": policy, "decode_sample_steps": 2}))
        times[policy] = res.e2e
    assert set(times) >= {"none", "kv_fetch", "tp_comm", "pp_comm", "all"}
    for policy, t in times.items():
        assert t <= times["none"] * (1 + 1e-12)
    assert times["all"] <= min(times.values()) * (1 + 1e-9)


def test_tp_comm_closed_form_matches_the_simulated_chunks():
    kw = dict(model="llama-3.1-70b", batch=64, prompt=512, output=2, parallelism={"tp": 8})
    a = simulate(make_run(**kw, engine={"overlap_policy": "tp_comm", "mode": "analytical"}))
    f = simulate(make_run(**kw, engine={"overlap_policy": "tp_comm", "mode": "flattened"}))
    assert f.ttft == pytest.approx(a.ttft, rel=0.03)


def test_policy_registry():
    with pytest.raises(SimcoreError, match="did you mean: kv_fetch"):
        get_policy("kv_fetc")
    with pytest.raises(SimcoreError, match="engine.overlap_policy"):
        make_run(engine={"overlap_policy": "bogus"})
    custom = register(OverlapPolicy("test_fetch_and_pp", "test", frozenset({"kv_fetch", "pp_comm"})))
    assert get_policy("test_fetch_and_pp") is custom
    with pytest.raises(ValueError):
        register(OverlapPolicy("bad", "x", frozenset({"teleport"})))


def test_trace_is_perfetto_json_with_kv_cache_apart(tmp_path):
    res = simulate(make_run("llama-3.2-1b", batch=2, prompt=64, output=3, parallelism={"pp": 2},
                            engine={"mode": "flattened", "overlap_policy": "kv_fetch"}))
    path = tmp_path / "trace.json"
    write_trace(res, path)
    events = json.loads(path.read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert {e["cat"] for e in spans} >= {"compute", "kv_cache", "comm"}
    assert {e["pid"] for e in spans} == {0, 1}
    kv = [e for e in spans if e["cat"] == "kv_cache"]
    assert all(e["cname"] in ("yellow", "olive") for e in kv)
    assert any(e["tid"] == 1 for e in kv)  # fetches on the copy stream under kv_fetch


@pytest.mark.parametrize("model, hardware, par", [
    ("llama-3.1-8b", "h100-sxm", {}), ("gpt-oss-120b", "h100-sxm", {"tp": 2}),
    ("deepseek-v3", "h200-sxm", {"tp": 8, "pp": 2}), ("mistral-7b", "h100-sxm", {"pp": 2}),
])
def test_stage_time_by_layer_class_equals_the_full_walk(model, hardware, par):
    from simcore.engine.walk import stage_time, walk
    from simcore.ops.builder import StageBuilder
    from simcore.ops.passes import Batch, Group

    run = make_run(model, hardware=hardware, batch=1, prompt=8, output=2, parallelism=par)
    pricer = Pricer(run.system)
    batch = Batch((Group("prefill", 2, 300, 64), Group("decode", 7, 1, 5000)), emitting=9)
    for stage in range(run.par.pp):
        b = StageBuilder(run, stage)
        for name, rel in (("none", 1e-9), ("kv_fetch", 0.01)):
            full = walk(b.ops(batch), pricer, get_policy(name)).time
            assert stage_time(b, batch, pricer, get_policy(name)) == pytest.approx(full, rel=rel)


@pytest.mark.parametrize("mode", ["hybrid", "flattened"])
def test_a_retimed_plan_equals_flattening_the_pass_anew(mode):
    """Decode steps of one shape share a plan whose durations are re-timed: the same times as a fresh flatten,
    and a kept result's events are its own (a later re-time does not change them)."""
    from simcore.run.static import StaticSimulator

    run = make_run("llama-3.1-70b", batch=8, prompt=512, output=2, parallelism={"tp": 4, "pp": 2},
                   engine={"mode": mode, "overlap_policy": "all"})
    sim = StaticSimulator(run)
    short = sim.pass_(decode(8, 512))
    ends = [e.end for e in short.events]
    long = sim.pass_(decode(8, 4096))  # longer context: slower attention, same events
    assert len(sim._plans) == 1 and long.time > short.time
    fresh = StaticSimulator(run).pass_(decode(8, 4096))
    assert long.time == fresh.time and long.critical == fresh.critical and long.bubble == fresh.bubble
    assert [(e.start, e.end, e.duration, e.memory_s, e.kinds) for e in long.events] == \
           [(e.start, e.end, e.duration, e.memory_s, e.kinds) for e in fresh.events]
    assert [e.end for e in short.events] == ends


def test_retime_refuses_a_pass_whose_collective_changes_algorithm():
    from dataclasses import replace

    from simcore.graph.build import pass_streams
    from simcore.graph.flatten import Flattener

    run = make_run("llama-3.1-70b", batch=8, prompt=512, output=2, parallelism={"tp": 4})
    streams = pass_streams(run, decode(8, 512))
    flat = Flattener(run, "flattened", Pricer(run.system), get_policy("none"))
    flat.flatten(streams)
    assert flat.retime(streams)
    flat._schedules = {k: replace(v, steps=v.steps + 1) for k, v in flat._schedules.items()}  # as if the size moved
    assert not flat.retime(streams)


def test_all_ranks_flag_simulates_every_gpu_with_the_same_result(cli, write_experiment):
    path = write_experiment(model="llama-3.1-70b", parallelism={"tp": 4, "pp": 2},
                            workload={"batch_size": 4, "prompt_tokens": 256, "output_tokens": 3})
    rc, out, _ = cli("run", path, "--mode", "flattened", "--json")
    rc_all, out_all, _ = cli("run", path, "--mode", "flattened", "--all-ranks", "--json")
    one, every = json.loads(out), json.loads(out_all)
    assert rc == rc_all == 0
    assert (one["ranks_simulated"], every["ranks_simulated"]) == (2, 8)
    assert every["events_simulated"] == 4 * one["events_simulated"]
    for key in ("ttft_s", "e2e_s", "critical_path_s"):
        assert one[key] == every[key]


def test_all_ranks_outside_flattened_mode_is_an_error(cli, write_experiment):
    rc, out, err = cli("run", write_experiment(), "--all-ranks", "--json")
    assert rc == 2 and out == ""
    assert err.startswith("error: field 'engine.all_ranks' = true: only flattened mode") and "'analytical'" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("model, hardware, par, graphs", [
    ("llama-3.1-70b", "h100-sxm", {"tp": 4, "pp": 2}, True),
    ("gpt-oss-120b", "h100-sxm", {"tp": 2}, False),  # sliding and full attention layers alternate; MoE
    ("deepseek-v3", "h200-sxm", {"tp": 8}, True),  # dense first layers, then MoE
    ("mixtral-8x7b", "h100-sxm", {"tp": 2, "dp": 2, "ep": 4}, False),
])
def test_pricing_one_layer_per_class_equals_the_whole_stage(model, hardware, par, graphs):
    """Where nothing overlaps the analytical stage time is a sum, so each class of identical layers is priced once
    and counted: the same time and split by kind as summing every op (to rounding), the same pipeline send."""
    from simcore.engine.walk import class_totals, walk_totals
    from simcore.ops.builder import StageBuilder
    from simcore.ops.passes import as_batch

    run = make_run(model, hardware, batch=4, prompt=512, output=2, parallelism=par,
                   engine={"cuda_graphs": graphs, "kernel_launch_us": 400.0})
    pricer, policy = Pricer(run.system), get_policy("none")
    launch = 0.0 if graphs else 400e-6  # without CUDA graphs the host's launches outlast the GPU's work
    for stage in range(run.par.pp):
        b = StageBuilder(run, stage)
        for ps in (prefill(4, 512), decode(4, 700)):
            ops = b.ops(ps)
            send = ops[-1] if ops[-1].collective == "send_recv" else None
            (time, kinds), got_send = class_totals(b, as_batch(ps), pricer, launch)
            want_time, want_kinds = walk_totals(ops[:-1] if send else ops, pricer, policy, launch)
            assert time == pytest.approx(want_time, rel=1e-12)
            assert kinds == pytest.approx(want_kinds, rel=1e-12)
            assert got_send == send and (send is not None) == (stage < run.par.pp - 1)
            assert ("host_launch" in kinds) == (not graphs)


@pytest.mark.parametrize("model, par", [("gpt-oss-120b", {"tp": 2}), ("llama-3.1-70b", {"tp": 4, "pp": 2}),
                                        ("deepseek-v3", {"tp": 8})])
def test_kv_bytes_counted_per_layer_class_equal_every_ops_sum(model, par):
    from simcore.run.static import StaticSimulator

    run = make_run(model, "h200-sxm", batch=4, prompt=4096, output=2, parallelism=par)
    sim = StaticSimulator(run)
    for ps in (prefill(4, 4096), decode(4, 5000)):
        res = sim.pass_(ps)
        for kind in ("kv_cache_fetch", "kv_cache_store"):
            every = sum(op.kv_bytes for stage in res.ops() for op in stage if op.kind == kind)
            assert every > 0 or (kind == "kv_cache_fetch" and ps.phase == "prefill")
            assert res.kv_bytes(kind) == pytest.approx(every, rel=1e-12)
