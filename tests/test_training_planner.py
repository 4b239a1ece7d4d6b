"""`simcore plan --training` and `simcore recommend --training`: hand-derived memory, a small
search with hand-checked rejections, and bad flags as one line (exit 2)."""

from __future__ import annotations

import json

import pytest

from simcore.planner.training_plan import plan_training, training_experiment
from simcore.planner.training_search import recommend_training

GIB = 1024**3

# h 64, 4 heads (MHA), 2 layers, gated MLP of 128, vocabulary 256, untied embeddings.
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 4, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 256,
        "max_position_embeddings": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
# per layer: qkv 64 x 192 + o 64 x 64 + gate/up 64 x 256 + down 128 x 64 + two norms of 64 = 41,088;
# two layers, embedding 256 x 64, LM head 64 x 256 and the final norm: 115,008 parameters
TINY_PARAMS = 2 * (64 * 192 + 64 * 64 + 64 * 256 + 128 * 64 + 2 * 64) + 2 * 256 * 64 + 64


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def test_plan_breakdown_by_hand_and_zero_sharding(tiny):
    assert TINY_PARAMS == 115_008
    dp = 4
    plans = {z: plan_training(training_experiment(tiny, "h100-sxm", dp=dp, global_batch=8, seq_len=32, zero_stage=z))
             for z in range(4)}
    m0 = plans[0].memory
    assert m0.weights == 2 * TINY_PARAMS  # bf16
    assert m0.gradients == 4 * TINY_PARAMS  # fp32 main grads
    assert m0.optimizer_state == 12 * TINY_PARAMS  # AdamW: fp32 master, m and v
    m1 = plans[1].memory
    assert m1.optimizer_state == 12 * TINY_PARAMS / dp  # ZeRO-1 shards only the optimizer state over dp
    assert (m1.weights, m1.gradients) == (m0.weights, m0.gradients)
    assert plans[2].memory.gradients == 4 * TINY_PARAMS / dp
    assert plans[2].memory.weights == m0.weights
    assert plans[3].memory.weights == 2 * TINY_PARAMS / dp
    for p in plans.values():
        m = p.memory
        assert m.activations == m0.activations > 0  # ZeRO does not touch activations
        assert m.runtime == 1.5 * GIB
        assert m.total == pytest.approx(m.weights + m.gradients + m.optimizer_state + m.activations + m.runtime)
        assert p.fits
    sgd = plan_training(training_experiment(tiny, "h100-sxm", dp=dp, global_batch=8, seq_len=32, zero_stage=0,
                                            optimizer="sgd")).memory
    assert sgd.optimizer_state == 8 * TINY_PARAMS  # fp32 master + momentum


def test_plan_matches_the_driver_and_names_the_largest_part_when_it_does_not_fit():
    from simcore.run.training import TrainingSimulator

    data = training_experiment("llama-3.1-70b", "h100-sxm", tp=8, pp=4, dp=2, global_batch=16, seq_len=4096,
                               recompute="selective")
    plan = plan_training(data)
    from simcore.planner.training_plan import training_run

    assert plan.memory == TrainingSimulator(training_run(data)).memory()  # one accounting
    assert len(plan.ranks) == 4 and plan.memory.total == max(m.total for m in plan.ranks)
    # 70B on 8 GPUs with plain data parallelism: 12 bytes of optimizer state per parameter per GPU
    big = plan_training(training_experiment("llama-3.1-70b", "h100-sxm", dp=8, global_batch=8, zero_stage=0))
    assert not big.fits
    assert big.as_dict()["largest"] == "optimizer_state"
    assert big.verdict.startswith("does not fit") and "largest: optimizer_state" in big.verdict


def test_plan_training_cli_table_and_json(cli, tiny):
    r = cli("plan", "--training", "--model", tiny, "--cluster", "hgx-h100", "--dp", "4", "--global-batch", "8",
            "--seq-len", "32", "--json")
    assert r.rc == 0
    d = json.loads(r.out)
    assert d["kind"] == "training" and d["gpu"] == "h100-sxm" and d["cluster"] == "hgx-h100"
    assert d["parallelism"] == {"tp": 1, "pp": 1, "dp": 4, "ep": 1, "cp": 1, "gpus": 4}
    assert d["memory_per_gpu_bytes"]["optimizer_state"] == 12 * TINY_PARAMS / 4
    assert d["fits"] is True and d["largest"] == "gradients"  # 4 bytes per parameter beat 12 / dp = 3
    assert [r["pipeline_rank"] for r in d["pipeline_ranks"]] == [0]
    r = cli("plan", "--training", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--dp", "8", "--global-batch",
            "8", "--zero", "0")
    assert r.rc == 0
    assert "does not fit" in r.out and "largest: optimizer_state" in r.out


def test_search_over_a_small_candidate_set(tiny):
    rec = recommend_training(tiny, 8, "h100-sxm", global_batch=8, seq_len=32, tp=(1, 2, 16), pp=(1, 2, 4),
                             micro_batch=(1, 2), recompute=("full", "none"))
    # tp 16: 16, 32, 64 GPUs, more than 8 (every pp)
    gpus = [(o.tp, o.pp) for o in rec.rejected if o.check == "gpus"]
    assert gpus == [(16, 1), (16, 2), (16, 4)]
    # pp 4 > the tiny model's 2 layers: tp 1 and 2, micro-batch 1 and 2, both recomputes
    assert sum(o.check == "pp" for o in rec.rejected) == 8
    # micro-batch 2 on dp 8 needs a global batch of 16: tp 1 pp 1, both recomputes
    gb = [(o.tp, o.pp, o.dp, o.recompute) for o in rec.rejected if o.check == "global_batch"]
    assert gb == [(1, 1, 8, "none"), (1, 1, 8, "full")]
    # every other cell fits with no recomputation: full recomputation only adds work, so it is not simulated
    cells = {(1, 1, 1), (1, 2, 1), (1, 2, 2), (2, 1, 1), (2, 1, 2), (2, 2, 1), (2, 2, 2)}
    assert {(o.tp, o.pp, o.micro_batch) for o in rec.options} == cells
    assert all(o.recompute == "none" for o in rec.options)
    assert sum(o.check == "recompute" for o in rec.rejected) == len(cells)
    assert rec.candidates_evaluated == 3 + 2 * 3 * 2 * 2 == len(rec.options) + len(rec.rejected)
    assert rec.simulated == len(cells)
    steps = [o.step_time_s for o in rec.options]
    assert steps == sorted(steps)
    assert all(o.dp * o.tp * o.pp == 8 for o in rec.options)
    best = rec.options[0]
    assert best.tokens_per_s_per_gpu == pytest.approx(8 * 32 / best.step_time_s / 8)
    calls = []
    ex = recommend_training(tiny, 8, "h100-sxm", global_batch=8, seq_len=32, tp=(2,), pp=(2,), micro_batch=(1,),
                            recompute=("none", "full"), exhaustive=True, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]  # one tick per candidate, ending at the total
    by = {o.recompute: o.step_time_s for o in ex.options}
    assert set(by) == {"none", "full"} and by["full"] > by["none"]


def test_search_rejects_what_does_not_fit_with_the_memory_error():
    rec = recommend_training("llama-3.1-70b", 8, "h100-sxm", global_batch=8, seq_len=2048, tp=(8,), pp=(1,),
                             micro_batch=(1,))
    assert rec.options == []
    assert [o.recompute for o in rec.rejected] == ["none", "selective", "full"]
    for o in rec.rejected:
        # 70B / 8 x (2 + 4 + 12) bytes is 147 GiB before activations: nothing recomputation saves helps
        assert o.check == "memory" and "largest: optimizer_state" in o.reason


def test_recommend_training_cli(cli, tiny):
    r = cli("recommend", "--training", "--model", tiny, "--gpus", "4", "--gpu", "h100-sxm", "--global-batch", "8",
            "--seq-len", "32", "--tp", "1,2", "--pp", "1", "--micro-batch", "1", "--recompute", "none", "--json")
    assert r.rc == 0
    d = json.loads(r.out)
    assert d["kind"] == "training" and d["gpus"] == 4 and d["search"]["tp"] == [1, 2]
    assert [(o["rank"], o["dp"]) for o in d["recommendations"]] in ([(1, 4), (2, 2)], [(1, 2), (2, 4)])
    for key in ("step_time_s", "tokens_per_s_per_gpu", "mfu", "memory_per_gpu_bytes", "pipeline_bubble_s"):
        assert key in d["recommendations"][0]
    r = cli("recommend", "--training", "--model", tiny, "--gpus", "4", "--gpu", "h100-sxm", "--global-batch", "8",
            "--seq-len", "32", "--tp", "1,8", "--pp", "1", "--micro-batch", "1", "--show-rejected")
    assert r.rc == 0
    assert "1 gpus" in r.out and "more than the 4 GPUs" in r.out
    assert "timings:" not in r.out  # h100-sxm is priced with its own measured profile
    r = cli("recommend", "--training", "--model", tiny, "--gpus", "2", "--gpu", "a100-80gb-sxm", "--global-batch", "4",
            "--seq-len", "32", "--tp", "1", "--pp", "1", "--micro-batch", "1", "--recompute", "none")
    assert r.rc == 0 and "timings:" in r.out and "not measured on them" in r.out


@pytest.mark.parametrize("argv, contains", [
    (["plan", "--training", "--zero", "5"], ["--zero", "0, 1, 2, 3"]),
    (["plan", "--training", "--recompute", "ful"], ["--recompute", "did you mean: full"]),
    (["plan", "--training", "--dp", "x"], ["--dp", "positive integer"]),
    (["plan", "--global-batch", "8"], ["--global-batch", "add --training"]),
    (["plan", "--training", "--engine", "sglang"], ["--engine", "serving flag"]),
    (["plan", "--training", "--sequence-parallel", "maybe"], ["--sequence-parallel", "on, off"]),
    (["recommend", "--training", "--gpus", "h100-sxm", "--global-batch", "8"], ["--gpus", "number of GPUs"]),
    (["recommend", "--training", "--gpus", "8"], ["--global-batch", "none given"]),
    (["recommend", "--training", "--gpus", "8", "--global-batch", "8", "--schedule", "1f1c"], ["did you mean: 1f1b"]),
    (["recommend", "--training", "--gpus", "8", "--global-batch", "8", "--input-len", "5"], ["--input-len", "serving"]),
    (["recommend", "--training", "--gpus", "8", "--global-batch", "8", "--max-gpus", "32"], ["--max-gpus", "serving"]),
    (["recommend", "--output-len", "3"], ["--input-len", "required"]),
    (["recommend", "--input-len", "3", "--output-len", "3", "--tp", "2"], ["--tp", "add --training"]),
])
def test_bad_training_planner_flags_are_one_line(bad, argv, contains):
    model = ["--model", "llama-3.1-8b"] + (["--gpu", "h100-sxm"] if "--training" in argv else [])
    bad(*argv[:1], *model, *argv[1:], contains=contains)
