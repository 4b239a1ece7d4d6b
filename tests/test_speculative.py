"""Speculative decoding: acceptance arithmetic, the drafter's memory, static and serving pricing."""

from __future__ import annotations

import json

import pytest

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.config.speculative import Speculative, draft_run, expected_accepted, tokens_per_step
from simcore.engine.speculative import SpecPricer
from simcore.memory import kv_budget, stage_weight_bytes
from simcore.ops.passes import Batch, Group
from simcore.memory.speculative import blocks_with_draft, draft_kv_bytes_per_token, draft_weight_bytes
from tests.conftest import BASE_EXPERIMENT, _merge

SERVE = {"workload": {"kind": "requests", "requests": 4, "arrival": {"process": "closed", "concurrency": 1},
                      "prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 65}},
         "serving": {"iteration_overhead_us": 0}}
DROP = ("workload.batch_size",)


def _run(**changes):
    return resolve(experiment_from_dict(_merge(BASE_EXPERIMENT, changes)))


@pytest.mark.parametrize("acceptance, k, expected", [
    (0.5, 3, 0.5 + 0.25 + 0.125),  # a fixed rate: sum of a^j
    ([0.8, 0.5], 2, 0.8 + 0.8 * 0.5),  # per position: sum over j of prod_{i <= j} a_i
    ([1.0, 1.0, 1.0, 1.0], 4, 4.0),
    ({"accepted": [0.2, 0.3, 0.5]}, 2, 0.3 * 1 + 0.5 * 2),  # a distribution: sum of j p_j
    (0.0, 5, 0.0),
])
def test_expected_accepted_length(acceptance, k, expected):
    s = Speculative(method="ngram", k=k, acceptance=acceptance)
    assert expected_accepted(s) == pytest.approx(expected, rel=1e-12)
    assert tokens_per_step(s) == pytest.approx(1 + expected, rel=1e-12)


def test_k0_is_todays_static_run(cli, write_experiment):
    plain = json.loads(cli("run", write_experiment(), "--json").out)
    zero = json.loads(cli("run", write_experiment(speculative={"method": "eagle", "k": 0}), "--json").out)
    assert "speculative" not in zero
    assert zero == plain


def test_k0_is_todays_serving_run(cli, write_experiment):
    plain = json.loads(cli("run", write_experiment(**SERVE, drop=DROP), "--json").out)
    zero = json.loads(cli("run", write_experiment(**SERVE, drop=DROP, speculative={"method": "draft", "k": 0,
                                                                          "draft_model": "llama-3.2-1b"}), "--json").out)
    plain.pop("wall_s"), zero.pop("wall_s")
    assert zero == plain


def test_acceptance_one_free_draft_gives_k_plus_one_tokens_per_step(cli, write_experiment):
    k = 3
    d = json.loads(cli("run", write_experiment(speculative={"method": "ngram", "k": k, "acceptance": 1.0}),
                       "--json").out)["speculative"]
    assert d["tokens_per_step"] == k + 1
    assert d["accepted_tokens_per_step"] == k and d["acceptance_rate"] == 1.0
    assert d["verified_steps"] == pytest.approx(15 / (k + 1))  # 16 output tokens: 15 after the prefill's
    # batch 1 is memory-bound: verifying 4 positions reads the same weights, so nearly k + 1 times faster
    run = _run(speculative={"method": "ngram", "k": k, "acceptance": 1.0})
    p = SpecPricer(run)
    assert p.draft_time(1, 128) == 0.0
    ratio = (k + 1) * p.plain(1, 135) / p.verified(1, 135)
    assert 3.6 < d["speedup"] <= k + 1
    assert d["speedup"] == pytest.approx(ratio, rel=0.01)


def test_acceptance_zero_costs_the_verification(cli, write_experiment):
    d = json.loads(cli("run", write_experiment(speculative={"method": "draft", "draft_model": "llama-3.2-1b",
                                                            "k": 2, "acceptance": 0.0}), "--json").out)["speculative"]
    assert d["tokens_per_step"] == 1.0
    assert d["speedup"] < 1  # the draft's passes and the wider verification buy nothing


def test_draft_time_is_k_passes_of_the_draft_model():
    run = _run(speculative={"method": "draft", "draft_model": "llama-3.2-1b", "k": 4, "acceptance": 0.7})
    p = SpecPricer(run)
    one = p._time(p.dparts, Batch((Group("decode", 8, 1, 1001),), emitting=8))
    assert p.draft_time(8, 1000) == pytest.approx(4 * one, rel=1e-12)  # contexts 1000..1003 at their mean 1001
    # physics: one draft pass reads at least the 1B model's weights from HBM
    assert one >= draft_weight_bytes(run) / run.system.gpu.memory.bandwidth


def test_drafter_memory_hand_derived():
    run = _run(speculative={"method": "draft", "draft_model": "llama-3.2-1b", "k": 3})
    assert draft_kv_bytes_per_token(run) == 16 * 8 * 64 * 2 * 2  # layers x kv heads x head_dim x (K, V) x bf16
    eagle = _run(speculative={"method": "eagle", "k": 3})
    h, kv, inter = 4096, 1024, 14336
    layer = h * h * 2 + h * kv * 2 + 3 * h * inter + 2 * h  # q, o; k, v; gate, up, down; two norms
    assert draft_weight_bytes(eagle) == (layer + 2 * h * h) * 2  # + the 2h -> h fc, bf16
    assert draft_kv_bytes_per_token(eagle) == 8 * 128 * 2 * 2  # one layer of llama-3.1-8b
    b = kv_budget(run, 8192, 256, 16)
    w = stage_weight_bytes(draft_run(run), 0)
    assert draft_weight_bytes(run) == w
    cap = b.stages[0].kv_capacity
    assert blocks_with_draft(b) == int((cap - w) // (16 * (32 * 8 * 128 * 2 * 2 + 16 * 8 * 64 * 2 * 2)))
    assert blocks_with_draft(b) < b.blocks()


def test_serving_speculation_shortens_tpot(cli, write_experiment):
    plain = json.loads(cli("run", write_experiment(**SERVE, drop=DROP), "--json").out)
    spec = json.loads(cli("run", write_experiment(**SERVE, drop=DROP, speculative={"method": "ngram", "k": 3, "acceptance": 1.0}),
                          "--json").out)
    s = spec["speculative"]
    assert s["tokens_per_step"] == 4 and s["mean_decode_batch"] == 1.0
    ratio = plain["tpot_s"]["mean"] / spec["tpot_s"]["mean"]
    assert ratio == pytest.approx(s["decode_step_speedup"], rel=0.02)  # one request alone: the step speed-up
    assert 3.5 < ratio <= 4
    assert spec["requests_completed"] == 4


def test_serving_draft_takes_kv_blocks(cli, write_experiment):
    spec = json.loads(cli("run", write_experiment(**SERVE, drop=DROP, speculative={
        "method": "draft", "draft_model": "llama-3.2-1b", "k": 2, "acceptance": [0.8, 0.6]}), "--json").out)
    s = spec["speculative"]
    assert spec["kv_blocks"] < s["kv_blocks_without_draft"]
    assert s["accepted_tokens_per_step"] == pytest.approx(0.8 + 0.48)


@pytest.mark.parametrize("spec, contains", [
    ({"k": 3}, ["speculative", "needs a method"]),
    ({"method": "draft", "k": 3}, ["draft_model"]),
    ({"method": "eagle", "k": 3, "draft_model": "llama-3.2-1b"}, ["draft_model", "only used with method draft"]),
    ({"method": "eagle", "k": 3, "acceptance": [0.5, 0.5]}, ["k = 3 needs exactly 3"]),
    ({"method": "eagle", "k": 2, "acceptance": {"accepted": [0.5, 0.4, 0.3]}}, ["sums to 1.2"]),
    ({"method": "eagle", "k": 2, "acceptance": 1.5}, ["[0, 1]"]),
    ({"method": "medusa", "k": 2}, ["speculative.method", "medusa"]),
    ({"method": "draft", "k": 2, "draft_model": "llama-3.2-1bb"}, ["speculative.draft_model", "llama-3.2-1b"]),
    ({"method": "draft", "k": 2, "draft_model": "qwen2.5-7b"}, ["speculative.draft_model", "tokenizer"]),
])
def test_bad_speculative_input(bad, write_experiment, spec, contains):
    bad("run", write_experiment(speculative=spec), contains=contains)


def test_speedup_falls_below_one_as_batches_grow():
    """The sweep example's settings: memory-bound small batches gain, compute-bound large ones lose."""
    run = _run(speculative={"method": "draft", "draft_model": "llama-3.2-1b", "k": 4, "acceptance": 0.6})
    p = SpecPricer(run)
    assert p.tau == pytest.approx(1 + 0.6 + 0.36 + 0.216 + 0.1296)
    speed = {b: p.tau * p.plain(b, 384) / p.verified(b, 384) for b in (1, 32, 256)}
    assert speed[1] > 1.1 and speed[256] < 1
    assert speed[1] > speed[32] > speed[256]


def test_run_tables_show_speculation(cli, write_experiment):
    spec = {"method": "eagle", "k": 2, "acceptance": 0.5}
    static = cli("run", write_experiment(speculative=spec))
    assert static.rc == 0 and "eagle k 2: 1.75 tokens per step" in static.out
    serving = cli("run", write_experiment(**SERVE, drop=DROP, speculative=spec))
    assert serving.rc == 0 and "eagle k 2: acceptance 38%, 1.75 tokens per step" in serving.out


def test_static_memory_holds_the_drafter(cli, write_experiment):
    w = {"batch_size": 2, "prompt_tokens": 1000, "output_tokens": 24}
    plain = json.loads(cli("run", write_experiment(workload=w), "--json").out)["memory_per_gpu_bytes"]
    spec = json.loads(cli("run", write_experiment(workload=w, speculative={
        "method": "draft", "draft_model": "llama-3.2-1b", "k": 3}), "--json").out)["memory_per_gpu_bytes"]
    run = _run(speculative={"method": "draft", "draft_model": "llama-3.2-1b", "k": 3})
    assert spec["weights"] - plain["weights"] == draft_weight_bytes(run)
    assert spec["kv_cache"] - plain["kv_cache"] == 2 * 1024 * 16 * 8 * 64 * 2 * 2  # 2 seqs x 1,024 tokens in the 1B
