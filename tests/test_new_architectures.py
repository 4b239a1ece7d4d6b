"""Architectures added for the held-out rows of issue 11: Kimi-K2.5 (int4 group-quantized experts),
Qwen3.5 (Gated DeltaNet linear attention), GLM-5 (DeepSeek Sparse Attention). Hand-computed bytes,
state sizes and FLOPs on the catalog configs, and their synthetic silicon rows run without refusal."""

from __future__ import annotations

import pytest

from simcore.config.model import load_model, parse_config
from simcore.memory.engines import CUDA_CONTEXT, engine_memory, state_pool_bytes
from simcore.memory.weights import linear_bytes
from simcore.ops.builder import StageBuilder
from simcore.errors import SimcoreError
from simcore.ops.kv import index_bytes_per_token, kv_bytes, state_bytes, state_bytes_per_seq
from simcore.ops.linears import Linear, Sharding, active_params, mlp_linears, total_params
from simcore.ops.passes import decode, prefill
from simcore.ops.weight_format import int4_bytes_per_weight, int4_matrix_bytes
from simcore.serving.silicon import experiment_for_row
from simcore.validate.compare import experiments, run as run_records
from simcore.validate.readers import read
from tests.helpers import make_run

from conftest import REPO

ROWS = REPO / "tests" / "data" / "validate" / "newarch_rows.json"


# -- Kimi-K2.5: int4 routed experts -------------------------------------------------------------
def test_kimi_reads_its_compressed_tensors_int4_experts():
    q = load_model("kimi-k2.5").quantization
    assert (q.method, q.weight_dtype, q.experts_only, q.group, q.zero_point) == (
        "compressed-tensors", "int4", True, 32, False)
    run = make_run("kimi-k2.5", hardware="h200-sxm", parallelism={"tp": 8})
    assert (run.weight_dtype, run.expert_dtype) == ("bf16", "int4")  # attention, shared experts stay 16-bit


def assert_runs_published_nvfp4(backend: str, model_path: str, tp: int, checkpoint: str) -> dict:
    """An fp4 B200 row of model_path runs NVIDIA's NVFP4 checkpoint as published, with fp8 KV; returns the row."""
    row = {"system": "b200_sxm", "backend": backend, "model_path": model_path, "precision": "fp4",
           "isl": "128", "osl": "8", "batch_size": "1", "tp_size": str(tp), "moe_tp_size": str(tp)}
    exp = experiment_for_row(row, limits="aiconfigurator")
    assert (exp["model"], exp["precision"], exp["inference"]) == (
        checkpoint, {"weights": "auto"}, {"kvcache_precision": "fp8"})
    return row


def test_an_fp4_kimi_row_runs_nvidias_nvfp4_checkpoint():
    # nvidia/Kimi-K2.5-NVFP4 (ModelOpt): NVFP4 everywhere but attention (its ignore list), fp8 KV cache
    q = load_model("kimi-k2.5-nvfp4").quantization
    assert (q.method, q.weight_dtype, q.experts_only, q.mlp_quantized) == ("modelopt", "nvfp4", True, True)
    assert not load_model("kimi-k2.5").quantization.mlp_quantized  # its int4 ignore list keeps shared experts 16-bit
    row = assert_runs_published_nvfp4("vllm", "moonshotai/Kimi-K2.5", 4, "kimi-k2.5-nvfp4")
    run = make_run("kimi-k2.5-nvfp4", hardware="b200", parallelism={"tp": 4})
    assert (run.weight_dtype, run.expert_dtype) == ("bf16", "nvfp4")
    ops = {op.name: op for op in StageBuilder(run, 0).ops(decode(1, past=8)) if op.layer == 5}
    assert ops["experts_gate_up"].dtype == "fp4" and ops["q_b_proj"].dtype == "bf16"
    # the shared expert and layer 0's dense MLP are NVFP4 too: 4.5 bits a weight
    assert ops["shared_gate_up"].dtype == "fp4" and ops["shared_gate_up"].weight_bytes == 7168 * 2 * 512 * 4.5 / 8
    dense = {op.name: op for op in StageBuilder(run, 0).ops(decode(1, past=8)) if op.layer == 0}
    assert dense["gate_up_proj"].weight_bytes == 7168 * 2 * (18432 // 4) * 4.5 / 8
    # a gpt-oss MXFP4 row keeps its own KV default, as before
    gpt = dict(row, model_path="openai/gpt-oss-120b", tp_size="2", moe_tp_size="2")
    assert "inference" not in experiment_for_row(gpt, limits="aiconfigurator")


def test_compressed_tensors_fp8_stays_fp8():
    raw = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100,
           "quantization_config": {"quant_method": "compressed-tensors", "config_groups": {"g": {
               "weights": {"num_bits": 8, "type": "float"}}}}}
    assert parse_config(raw, "x", "x").quantization.weight_dtype == "fp8"


def test_compressed_tensors_int4_per_channel_and_asymmetric_groups():
    def q(weights):
        raw = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100,
               "quantization_config": {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
                   "num_bits": 4, "type": "int", **weights}}}}}
        return parse_config(raw, "x", "x").quantization
    channel = q({"strategy": "channel", "symmetric": True})
    assert (channel.weight_dtype, channel.group, channel.zero_point, channel.experts_only) == ("int4", 2**20, False,
                                                                                               False)
    assert (q({"strategy": "group", "group_size": 64, "symmetric": False}).group, ) == (64, )
    assert q({"strategy": "group", "group_size": 64, "symmetric": False}).zero_point


def test_int4_group_bytes_by_hand():
    # symmetric group 32: 64 x 10 values at 4 bits = 320 B, plus 2 groups x 10 outputs x 2 B bf16 scale = 40 B
    assert int4_matrix_bytes(64, 10, group=32, zero_point=False) == 360
    # AWQ / GPTQ: groups of 128 with an fp16 scale and a 4-bit zero point: 256 x 10 / 2 + 2 x 10 x 2.5
    assert int4_matrix_bytes(256, 10) == 1280 + 50
    assert int4_bytes_per_weight(32, False) == 0.5 + 2 / 32
    assert linear_bytes(Linear("x", 64, 10, "int4"), int4_group=32, int4_zero=False) == 360


def test_kimi_expert_weights_on_a_gpu_by_hand():
    # tp 8, no ep: each of the 384 experts sliced to 2048 / 8 = 256 intermediate columns; gate_up 7168 -> 512,
    # down 256 -> 7168, all at 0.5 + 2/32 B per weight (7168 and 256 are multiples of 32)
    m = load_model("kimi-k2.5")
    lins = [l for l in mlp_linears(m, 5, Sharding(tp=8), "bf16", "int4") if l.routed]
    got = sum(linear_bytes(l, int4_group=32, int4_zero=False) for l in lins)
    assert got == 384 * 3 * 7168 * 256 * 0.5625


def test_kimi_decode_streams_int4_experts_into_a_bf16_gemm():
    run = make_run("kimi-k2.5", hardware="h200-sxm", batch=1, prompt=8, output=2, parallelism={"tp": 8})
    ops = {op.name: op for op in StageBuilder(run, 0).ops(decode(1, past=8)) if op.layer == 5}
    up, shared = ops["experts_gate_up"], ops["shared_gate_up"]
    # one token, top-8 of 384 experts: 8 x (1 - (1 - 8/384)^1) ... the builder's active-expert estimate
    active = 384 * (1 - (1 - 8 / 384) ** 1)
    assert up.weight_bytes == pytest.approx(active * 7168 * 512 * 0.5625)
    assert (up.dtype, up.upcast) == ("bf16", True)  # weight-only: dequantized in the kernel (Marlin MoE)
    assert shared.weight_bytes == 7168 * 512 * 2 and not shared.upcast


def test_an_int4_row_runs_a_published_int4_checkpoint_as_published():
    row = {"system": "h200_sxm", "backend": "vllm", "model_path": "moonshotai/Kimi-K2.5", "precision": "int4",
           "isl": "128", "osl": "8", "batch_size": "1", "tp_size": "8"}
    assert experiment_for_row(row)["precision"] == {"weights": "auto"}
    row["model_path"] = "meta-llama/Llama-3.1-8B-Instruct"  # a 16-bit checkpoint quantized to int4 throughout
    assert experiment_for_row(row)["precision"] == {"weights": "int4"}


# -- Qwen3.5: Gated DeltaNet linear attention + gated full attention ---------------------------------
def test_qwen35_layers_and_parameter_counts():
    m = load_model("qwen3.5-397b-a17b")
    assert m.layer_kinds.count("linear") == 45 and m.layer_kinds[3] == "full" and m.layer_kinds[0] == "linear"
    la = m.linear_attention
    assert (la.key_heads, la.value_heads, la.key_dim, la.value_dim, la.conv_kernel, la.state_dtype) == (
        16, 64, 128, 128, 4, "fp32")
    assert (m.shared_experts, m.shared_intermediate, m.attn_output_gate) == (1, 1024, True)
    # the name's 397B total / 17B active (the vision tower and the MTP layer are not counted here)
    assert total_params(m) == pytest.approx(397e9, rel=0.01)
    assert active_params(m) == pytest.approx(17e9, rel=0.03)


def test_qwen35_state_is_fixed_per_sequence_and_kv_only_on_full_layers():
    m = load_model("qwen3.5-397b-a17b")
    # tp 8: 64 / 8 = 8 value heads x 128 x 128 fp32 state; conv keeps 3 inputs of 2 x 2 x 128 + 8 x 128 channels
    assert state_bytes_per_seq(m, 0, tp=8) == 8 * 128 * 128 * 4 + 3 * (2 * 2 * 128 + 8 * 128) * 2
    assert state_bytes_per_seq(m, 3, tp=8) == 0  # a full-attention layer
    assert state_bytes(m, tp=8) == 45 * state_bytes_per_seq(m, 0, tp=8)
    # KV only on the 15 full layers: K + V of 2 kv heads x head_dim 256, bf16
    assert kv_bytes(m, 1, 1, "bf16") == 15 * 2 * 2 * 256 * 2
    assert kv_bytes(m, 1, 1000, "bf16") == 1000 * kv_bytes(m, 1, 1, "bf16")


def test_qwen35_linear_layer_ops_by_hand():
    run = make_run("qwen3.5-397b-a17b", hardware="h200-sxm", batch=2, prompt=8, output=2, parallelism={"tp": 8})
    builder = StageBuilder(run, 0)
    ops = {op.name: op for op in builder.ops(decode(2, past=100)) if op.layer == 0}
    assert "kv_cache_store" not in ops and "kv_cache_fetch" not in ops
    # in_proj: q, k (2 key heads x 128), v, z (8 value heads x 128), beta, alpha (8 each) per GPU
    assert ops["in_proj"].shape[1:] == (2 * 2 * 128 + 2 * 8 * 128 + 2 * 8, 4096)
    step = ops["gdn_recurrent"]
    state = 8 * 128 * 128 * 4
    assert step.flops == 7 * 2 * 8 * 128 * 128  # 2 tokens, 8 value heads, 7 x dk x dv each
    assert step.bytes == 2 * 2 * state + 2 * (2 * 2 * 128 + 2 * 8 * 128 + 2 * 8) * 2  # state read + write, q k v o
    pre = {op.name: op for op in builder.ops(prefill(1, 1024)) if op.layer == 0}["gdn_chunked"]
    assert pre.flops == 1024 * 8 * (6 * 128 * 128 + 2 * 64 * (3 * 128 + 2 * 128))
    chunks = 1024 // 64
    assert pre.bytes == 1024 * (2 * 2 * 128 + 2 * 8 * 128 + 16) * 2 + 2 * chunks * 8 * 128 * 128 * 2 + state
    full = {op.name: op for op in builder.ops(decode(2, past=100)) if op.layer == 3}
    # gated attention: q (4 heads x 256) + its gate (same width) + K, V (one kv head each, replicated past tp 2)
    assert full["qkv_proj"].shape[1:] == (1024 + 1024 + 2 * 256, 4096) and "attn_gate" in full


def test_qwen35_decode_step_is_flat_in_context_on_linear_layers():
    run = make_run("qwen3.5-397b-a17b", hardware="h200-sxm", batch=1, prompt=8, output=2, parallelism={"tp": 8})
    builder = StageBuilder(run, 0)
    short = [op for op in builder.ops(decode(1, past=100)) if op.layer == 0]
    long = [op for op in builder.ops(decode(1, past=100_000)) if op.layer == 0]
    assert [(o.name, o.bytes, o.flops) for o in short] == [(o.name, o.bytes, o.flops) for o in long]


def test_linear_attention_is_priced_by_its_bytes_and_flops():
    # the linear_attn family obeys the roofline: never faster than its bytes at HBM bandwidth nor its FLOPs at peak
    from simcore.cost.roofline import Pricer

    run = make_run("qwen3.5-397b-a17b", hardware="h200-sxm", batch=1, prompt=8, output=2, parallelism={"tp": 8})
    pricer, gpu = Pricer(run.system), run.system.gpu
    builder = StageBuilder(run, 0)
    for ps, name in ((decode(64, past=4000), "gdn_recurrent"), (prefill(4, 4096), "gdn_chunked")):
        (op,) = [o for o in builder.ops(ps) if o.layer == 0 and o.name == name]
        t = pricer.time(op)
        assert t >= op.bytes / gpu.memory.bandwidth and t >= op.flops / gpu.peak_flops("bf16") > 0


def test_engines_reserve_the_state_of_their_request_slots():
    run = make_run("qwen3.5-397b-a17b", hardware="h200-sxm", parallelism={"tp": 8})
    mem = engine_memory(run, "vllm", max_num_seqs=64)
    (s,) = mem.stages
    assert mem.budget - s.weights - s.activation - s.non_torch - s.kv == pytest.approx(
        64 * state_bytes(run.model, 8))
    # SGLang: state pool / KV pool = mamba_full_memory_ratio 0.9
    sg = engine_memory(run, "sglang")
    (s,) = sg.stages
    left = sg.device - CUDA_CONTEXT - s.non_torch - s.weights - s.activation  # caches' share of the static pool
    assert s.kv == pytest.approx(left / 1.9) and s.kv > 0
    assert s.state == pytest.approx(left * 0.9 / 1.9) and sg.as_dict()["state_bytes"] == s.state
    assert state_pool_bytes(run, range(60), 10) == 10 * state_bytes(run.model, 8)
    assert state_pool_bytes(make_run("llama-3.1-8b"), range(32), 10) == 0


# -- GLM-5: MLA with DeepSeek Sparse Attention ------------------------------------------------------
def test_glm5_reads_its_indexer_and_lands_on_its_size():
    m = load_model("glm-5")
    sa = m.sparse_attention
    assert (sa.index_heads, sa.index_dim, sa.topk) == (32, 128, 2048) and m.is_mla
    assert (m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim, m.kv_lora_rank) == (192, 64, 256, 512)
    assert total_params(m) == pytest.approx(744e9, rel=0.01)  # GLM-5: 744B total, 40B active
    assert active_params(m) == pytest.approx(40e9, rel=0.05)


def test_glm5_cache_bytes_per_token_by_hand():
    m = load_model("glm-5")
    # the indexer key: 128 fp8 values + one fp32 scale per 128, whatever the KV dtype
    assert index_bytes_per_token(m, 0) == 132
    assert kv_bytes(m, 1, 1, "bf16") == 78 * ((512 + 64) * 2 + 132)
    assert kv_bytes(m, 1, 1, "fp8") == 78 * ((512 + 64) + 132)
    assert index_bytes_per_token(load_model("deepseek-v3"), 0) == 0


def test_glm5_decode_reads_top_k_latents_and_scores_every_token():
    run = make_run("glm-5", hardware="h200-sxm", batch=2, prompt=8, output=2, parallelism={"tp": 8},
                   precision={"weights": "fp8"})
    builder = StageBuilder(run, 0)
    ops = {op.name: op for op in builder.ops(decode(2, past=10_000)) if op.layer == 5}
    # each sequence: 2048 latent rows of 576 bf16 + 10001 indexer keys of 132 B
    assert ops["kv_cache_fetch"].bytes == 2 * (576 * 2 * 2048 + 132 * 10_001)
    assert ops["kv_cache_store"].bytes == 2 * (576 * 2 + 132)
    # MLA decode in the latent space over the top-k only: 8 heads x 2048 keys x (576 + 512) x 2, per sequence
    assert ops["attention"].flops == 2 * 8 * 2 * 2048 * (576 + 512)
    assert ops["attention"].shape == (2, 8, 2048)
    # the indexer scores all 10001 cached tokens with 32 heads of 128, on fp8 math
    logits = ops["indexer_logits"]
    assert logits.flops == 2 * 32 * 128 * 2 * 10_001 and logits.dtype == "fp8"
    assert ops["indexer_topk"].bytes == 2 * 10_001 * 4 + 2 * 2048 * 4
    # replicated indexer projections: q latent 2048 -> 32 x 128, hidden 6144 -> 128 + 32
    assert ops["indexer_q"].shape[1:] == (4096, 2048) and ops["indexer_k"].shape[1:] == (160, 6144)


def test_glm5_below_top_k_attends_like_dense_mla():
    run = make_run("glm-5", hardware="h200-sxm", batch=1, prompt=8, output=2, parallelism={"tp": 8})
    ops = {op.name: op for op in StageBuilder(run, 0).ops(prefill(1, 1024)) if op.layer == 5}
    pairs = 1024 * 1025 // 2  # every causal pair: no query has more than 2048 keys
    assert ops["attention"].flops == 2 * 8 * pairs * (192 + 64 + 256)
    assert ops["indexer_logits"].flops == 2 * 32 * 128 * pairs
    long = {op.name: op for op in StageBuilder(run, 0).ops(prefill(1, 4096)) if op.layer == 5}
    capped = 2048 * 2049 // 2 + 2048 * 2048  # queries past 2048 keep their top 2048 keys
    assert long["attention"].flops == 2 * 8 * capped * (192 + 64 + 256)


def test_an_fp4_glm5_row_runs_nvidias_nvfp4_checkpoint():
    q = load_model("glm-5-nvfp4").quantization
    assert (q.method, q.weight_dtype, q.experts_only, q.mlp_quantized) == ("modelopt", "nvfp4", True, True)
    assert_runs_published_nvfp4("sglang", "zhipuai/GLM-5", 8, "glm-5-nvfp4")
    run = make_run("glm-5-nvfp4", hardware="b200", parallelism={"tp": 8})
    ops = {op.name: op for op in StageBuilder(run, 0).ops(decode(1, past=8)) if op.layer == 5}
    assert ops["experts_down"].dtype == "fp4" and ops["indexer_q"].dtype == "bf16" and ops["o_proj"].dtype == "bf16"


@pytest.mark.parametrize("extra, message", [
    ({"layer_types": ["linear_attention", "full_attention"]}, "'linear_num_key_heads' is missing"),
    ({"index_topk": 2048, "index_n_heads": 8, "index_head_dim": 64}, "needs MLA attention"),
])
def test_incomplete_new_architecture_fields_are_one_line_errors(extra, message):
    raw = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, **extra}
    with pytest.raises(SimcoreError) as err:
        parse_config(raw, "x", "x.json")
    assert message in str(err.value) and "\n" not in str(err.value)


# -- every new architecture: its synthetic rows run on H200 and B200 ----------------------------
def test_synthetic_rows_run_without_refusal_on_h200_and_b200():
    outs = run_records(experiments(read(ROWS)), 1)
    assert [o.refused for o in outs if o.refused] == []
    assert {o.record.gpu for o in outs} == {"h200_sxm", "b200_sxm"}
    for o in outs:
        assert o.result["latency"]["tpot"]["mean"] > 0
