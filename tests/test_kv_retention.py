"""Long-decode KV retention policies (simcore/ops/kv_retention/): kept tokens, bytes saved, bookkeeping."""

from __future__ import annotations

import json

import pytest

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.ops.builder import StageBuilder
from simcore.ops.passes import decode
from tests.conftest import BASE_EXPERIMENT, _merge

PER_TOKEN_LAYER = 8 * 128 * 2 * 2  # llama-3.1-8b: kv heads x head_dim x (K, V) x bf16, tp 1
Q_HEADS = 32


def ops_of(policy: dict, batch: int, past: int) -> dict:
    run = resolve(experiment_from_dict(_merge(BASE_EXPERIMENT, {"inference": {"kv_retention": policy}})))
    layer0 = [op for op in StageBuilder(run, 0).ops(decode(batch, past)) if op.layer == 0]
    return {op.name: op for op in layer0}


@pytest.mark.parametrize("policy, kept", [
    ({"policy": "sliding_window", "window": 1000}, 1000),
    ({"policy": "sink_recent", "sink": 4, "recent": 508}, 512),
    ({"policy": "heavy_hitter", "heavy": 256, "recent": 256}, 512),
])
def test_fetch_reads_only_the_kept_tokens(policy, kept):
    full = ops_of({"policy": "full"}, 4, 5000)
    mine = ops_of(policy, 4, 5000)
    assert full["kv_cache_fetch"].bytes == 4 * 5001 * PER_TOKEN_LAYER  # the whole cache incl. the new token
    assert mine["kv_cache_fetch"].bytes == 4 * kept * PER_TOKEN_LAYER
    assert mine["attention"].flops < full["attention"].flops
    short = ops_of(policy, 4, 100)  # below the cap nothing is evicted
    assert short["kv_cache_fetch"].bytes == 4 * 101 * PER_TOKEN_LAYER


def test_bookkeeping_hand_derived():
    hh = ops_of({"policy": "heavy_hitter", "heavy": 256, "recent": 256}, 4, 5000)
    assert hh["kv_scores"].bytes == 4 * 4 * 4 * 512 * Q_HEADS  # 4 passes x fp32 x seqs x kept x query heads
    sr = ops_of({"policy": "sink_recent", "sink": 4, "recent": 508}, 4, 5000)
    assert sr["kv_rerotate"].bytes == 2 * 4 * 512 * 8 * 128 * 2  # read + write of the kept keys, bf16
    sw = ops_of({"policy": "sliding_window", "window": 1000}, 4, 5000)
    assert "kv_scores" not in sw and "kv_rerotate" not in sw


def test_full_is_todays_run(cli, write_experiment):
    plain = json.loads(cli("run", write_experiment(), "--json").out)
    full = json.loads(cli("run", write_experiment(inference={"kv_retention": {"policy": "full"}}), "--json").out)
    assert full == plain and "kv_retention" not in full


def test_static_reports_bytes_and_time_saved(cli, write_experiment):
    w = {"batch_size": 2, "prompt_tokens": 4096, "output_tokens": 64}
    d = json.loads(cli("run", write_experiment(workload=w, inference={"kv_retention": {
        "policy": "sliding_window", "window": 1024}}), "--json").out)["kv_retention"]
    assert d["retained_tokens"] == 1024
    assert d["kv_cache_bytes_saved"] == pytest.approx(d["kv_cache_bytes_read_full"] - d["kv_cache_bytes_read"])
    # decode step i (1..63) reads 4096 + i tokens in full, 1024 with the window; 32 layers, 2 sequences
    decode_full = sum(2 * (4096 + i) for i in range(1, 64)) * 32 * PER_TOKEN_LAYER
    decode_kept = 63 * 2 * 1024 * 32 * PER_TOKEN_LAYER
    prefill_saved = d["kv_cache_bytes_saved"] - (decode_full - decode_kept)
    assert prefill_saved == pytest.approx(0, abs=1e-6 * decode_full)  # a fresh prompt reads no cache
    assert d["time_saved_s"] > 0 and d["bookkeeping_s_last_step"] == 0


def test_when_keeping_everything_does_not_fit_the_result_says_so(cli, write_experiment):
    w = {"batch_size": 16, "prompt_tokens": 16384, "output_tokens": 16}
    r = cli("run", write_experiment(workload=w, inference={"kv_retention": {"policy": "sink_recent", "sink": 4,
                                                                         "recent": 1020}}), "--json")
    assert r.rc == 0, r.err
    d = json.loads(r.out)["kv_retention"]
    assert "does not fit" in d["full"] and "time_saved_s" not in d


@pytest.mark.parametrize("ret, contains", [
    ({"policy": "streaming"}, ["inference.kv_retention.policy", "streaming"]),
    ({"policy": "sliding_window"}, ["needs window"]),
    ({"policy": "heavy_hitter", "heavy": 10}, ["needs recent"]),
    ({"policy": "full", "window": 10}, ["window not used by policy full"]),
    ({"policy": "sliding_window", "window": 0}, ["window"]),
])
def test_bad_retention_input(bad, write_experiment, ret, contains):
    bad("run", write_experiment(inference={"kv_retention": ret}), contains=contains)


def test_models_with_their_own_window_take_full_only(bad, write_experiment):
    bad("run", write_experiment(model="gpt-oss-20b", precision={"weights": "auto", "activations": "bf16"},
                                inference={"kv_retention": {"policy": "sliding_window", "window": 64}}),
        contains=["inference.kv_retention.policy", "already has sliding-window layers"])


def test_run_table_shows_the_saving(cli, write_experiment):
    r = cli("run", write_experiment(workload={"batch_size": 1, "prompt_tokens": 2048, "output_tokens": 8},
                                    inference={"kv_retention": {"policy": "sliding_window", "window": 512}}))
    assert r.rc == 0 and "KV retention" in r.out and "sliding_window keeps 512 tokens" in r.out
