"""parallelism.attention_dp: attention and KV per DP rank, experts shared by the replica's GPUs."""

import pytest

from simcore.ops.builder import StageBuilder, split_batch
from simcore.ops.passes import Batch, Group, decode
from simcore.ops.routing import expected_max_load
from simcore.memory import memory_per_gpu
from tests.helpers import make_run


def by_name(ops, layer=0):
    return {op.name: op for op in ops if op.layer == layer}


def test_sequences_are_dealt_round_robin_and_rank_0_is_the_busiest():
    b = Batch((Group("prefill", 1, 100, 0), Group("decode", 3, 1, 50)), emitting=4)
    mine = split_batch(b, 2)  # sequences 0..3: rank 0 gets 0 (the prompt) and 2 (a decode)
    assert mine.groups == (Group("prefill", 1, 100, 0), Group("decode", 1, 1, 50))
    assert mine.emitting == 2
    assert split_batch(Batch((Group("decode", 5, 1, 10),), 5), 2).groups == (Group("decode", 3, 1, 10),)


def test_kv_cache_per_gpu_is_the_ranks_share():
    # qwen3-30b-a3b: 48 layers x K,V x 4 KV heads x 128 x bf16 per token; 8 sequences over 4 attention
    # ranks at tp 1 -> 2 sequences of 1024 + 16 tokens cached per GPU
    run = make_run("qwen3-30b-a3b", batch=8, prompt=1024, output=16, parallelism={"attention_dp": 4, "ep": 4})
    mem = memory_per_gpu(run, 8, 1024, 1040)
    assert mem.kv_cache == pytest.approx(2 * 1040 * 48 * 2 * 4 * 128 * 2)


def test_ep_with_attention_dp_dispatches_local_tokens_and_routes_the_replicas():
    # tp 1, 8 attention ranks, ep 8 (16 experts per GPU): each GPU attends to 16 of the 128 sequences,
    # sends its 16 x top-8 x 2048 x 2 bytes by all-to-all, and its experts get 128 x 8 / 8 rows
    run = make_run("qwen3-30b-a3b", batch=128, prompt=512, output=4, parallelism={"attention_dp": 8, "ep": 8})
    ops = by_name(StageBuilder(run, 0).ops(decode(128, 512)))
    assert ops["moe_dispatch"].group == 8 and ops["moe_combine"].group == 8
    assert ops["moe_dispatch"].bytes == 16 * 8 * 2048 * 2
    # the busiest of the 8 ranks: E[max] of 1024 assignments over 8 ranks (routing.py), not the mean 128
    assert ops["experts_gate_up"].flops == pytest.approx(2 * expected_max_load(128 * 8, 8) * 2048 * 2 * 768)
    assert ops["attention"].shape[0] == 16  # decode attention over this rank's sequences
    assert "attn_all_reduce" not in ops and "moe_all_reduce" not in ops
    # once per step the 8 ranks agree on their token counts: an all-reduce of 8 x 8 bytes
    sync = by_name(StageBuilder(run, 0).ops(decode(128, 512)), layer=-1)["dp_sync"]
    assert (sync.group, sync.bytes, sync.collective) == (8, 64, "all_reduce")


def test_attention_dp_with_sliced_experts_gathers_and_reduce_scatters():
    # tp 2 x 4 attention ranks, no EP: experts sliced over all 8 GPUs; the replica's 64 tokens are
    # all-gathered before the experts and their partial sums reduce-scattered after
    run = make_run("qwen3-30b-a3b", batch=64, prompt=512, output=4, parallelism={"tp": 2, "attention_dp": 4})
    ops = by_name(StageBuilder(run, 0).ops(decode(64, 512)))
    assert ops["moe_all_gather"].group == 8 and ops["moe_all_gather"].bytes == 64 * 2048 * 2
    assert ops["moe_reduce_scatter"].bytes == 64 * 2048 * 2
    assert ops["attn_all_reduce"].group == 2 and ops["attn_all_reduce"].bytes == 16 * 2048 * 2
    up = ops["experts_gate_up"]
    assert up.shape[1] == 2 * 768 // 8  # each GPU holds 1/8 of every expert
    assert run.gpus == 8


def test_attention_dp_on_a_dense_model(bad, write_experiment):
    bad("run", write_experiment(parallelism={"attention_dp": 2}),
        contains=["field 'parallelism.attention_dp' = 2", "llama-3.1-8b", "dense", "allowed attention_dp: 1"])


def test_ep_must_divide_the_gpus_sharing_the_experts(bad, write_experiment):
    bad("run", write_experiment(model="mixtral-8x7b", parallelism={"tp": 1, "attention_dp": 2, "ep": 4}),
        contains=["field 'parallelism.ep' = 4", "tp x dp x attention_dp = 2", "allowed ep: 1, 2"])


def test_attention_dp_bounds(bad, write_experiment):
    bad("run", write_experiment(model="mixtral-8x7b", parallelism={"attention_dp": 0}),
        contains=["parallelism.attention_dp"])
    bad("run", write_experiment(model="mixtral-8x7b", parallelism={"attention_dp": 2048}),
        contains=["field 'parallelism.attention_dp' = 2048", "1 to 1024"])


def _moe_serving(par, requests=16):
    """A Qwen3-30B-A3B serving run on H100: 4 closed-loop clients, 256-token prompts, 8 output tokens."""
    from simcore.config.experiment import experiment_from_dict, resolve

    data = {"model": "qwen3-30b-a3b", "hardware": "h100-sxm", "parallelism": par,
            "workload": {"kind": "requests", "requests": requests, "arrival": {"process": "closed", "concurrency": 4},
                         "prompt_tokens": {"dist": "fixed", "value": 256},
                         "output_tokens": {"dist": "fixed", "value": 8}}}
    return resolve(experiment_from_dict(data))


def test_serving_replica_holds_every_attention_ranks_cache():
    from simcore.memory import kv_budget
    from simcore.report.serving import serving_summary
    from simcore.serving.simulate import simulate

    run = _moe_serving({"attention_dp": 4, "ep": 4}, requests=8)
    res = simulate(run)
    cfg = run.experiment.serving
    # the limits are the replica's: each of the 4 ranks profiles its memory with a quarter of them
    per_gpu = kv_budget(run, -(-cfg.max_num_batched_tokens // 4), -(-cfg.max_num_seqs // 4), cfg.block_size).blocks()
    assert res.summary["kv_blocks"] == 4 * per_gpu
    whole = kv_budget(run, cfg.max_num_batched_tokens, cfg.max_num_seqs, cfg.block_size).blocks()
    assert per_gpu > whole  # a smaller profile forward leaves more room for the cache
    par = serving_summary(res)["parallelism"]
    assert par["attention_dp"] == 4 and par["gpus"] == 4


def test_vllm_style_dispatch_gathers_over_the_dp_group_then_all_reduces_over_tp():
    # tp 2 x 4 attention ranks, ep 8, engine.moe_dispatch all_gather (vLLM allgather_reducescatter):
    # the 4 DP ranks gather their 4 x 16 tokens, each GPU runs its 16 whole experts on all 64, the
    # outputs are reduce-scattered back over the 4 DP ranks and summed over the 2 TP peers
    run = make_run("qwen3-30b-a3b", batch=64, prompt=512, output=4, parallelism={"tp": 2, "attention_dp": 4, "ep": 8},
                   engine={"moe_dispatch": "all_gather"})
    ops = by_name(StageBuilder(run, 0).ops(decode(64, 512)))
    assert (ops["moe_all_gather"].group, ops["moe_all_gather"].bytes) == (4, 64 * 2048 * 2)
    assert (ops["moe_reduce_scatter"].group, ops["moe_reduce_scatter"].bytes) == (4, 64 * 2048 * 2)
    assert (ops["moe_all_reduce"].group, ops["moe_all_reduce"].bytes) == (2, 16 * 2048 * 2)
    assert "moe_dispatch" not in ops



def test_serving_replicas_each_hold_all_their_experts():
    """dp serving replicas are independent servers: two tp 2 / ep 2 replicas each have the KV room and the
    step times of one (experts split over the replica's 2 GPUs, not over all 4)."""
    from simcore.memory import kv_budget
    from simcore.serving.simulate import simulate

    one, two = _moe_serving({"tp": 2, "ep": 2}), _moe_serving({"tp": 2, "ep": 2, "dp": 2})
    a, b = simulate(one), simulate(two)
    cfg = one.experiment.serving
    assert a.summary["kv_blocks"] == b.summary["kv_blocks"] == \
        kv_budget(one, cfg.max_num_batched_tokens, cfg.max_num_seqs, cfg.block_size).blocks()
    # 4 clients over 2 replicas run 2 at a time on each: never slower per token than 4 on one replica
    assert b.summary["tpot_s"]["mean"] <= a.summary["tpot_s"]["mean"]


def test_serving_ep_must_divide_a_replicas_gpus():
    from simcore.errors import SimcoreError
    from simcore.serving.simulate import simulate

    with pytest.raises(SimcoreError, match=r"field 'parallelism.ep' = 4: a serving replica holds every expert on its "
                                           r"own tp x attention_dp = 2 GPUs.*allowed ep: 1, 2.*attention_dp"):
        simulate(_moe_serving({"tp": 2, "ep": 4, "dp": 2}))
