"""Perfetto trace of a short serving run: iterations per replica, tier moves on the host link."""

import json


def test_serving_trace_shows_iterations_and_tier_transfers(cli, tmp_path):
    trace = tmp_path / "serve.json"
    r = cli("run", "experiments/serving/shared-prefix-zipf-lfu.yaml", "--set", "workload.requests=120",
            "--set", "serving.host_tier.enabled=true", "--json", "--trace", trace)
    assert r.rc == 0, r.err
    summary = json.loads(r.out)
    events = json.loads(trace.read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    iterations = [e for e in spans if e["cat"] == "iteration"]
    moves = [e for e in spans if e["cat"] == "kv_cache"]
    assert len(iterations) == summary["iterations"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"engine", "host link"} <= names
    stored = sum(e["args"]["bytes"] for e in moves if e["name"].startswith("kv_cache_store"))
    loaded = sum(e["args"]["bytes"] for e in moves if e["name"].startswith("kv_cache_fetch"))
    assert stored == summary["kv_tier_bytes"]["hbm_to_host"] > 0
    assert loaded == summary["kv_tier_bytes"]["host_to_hbm"]
    for e in iterations:  # a replica runs one iteration at a time
        assert e["dur"] > 0
    per_replica = sorted((e["pid"], e["ts"], e["ts"] + e["dur"]) for e in iterations)
    for (p1, _, end), (p2, start, _) in zip(per_replica, per_replica[1:]):
        assert p1 != p2 or start >= end - 1e-6
