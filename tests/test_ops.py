"""Hand-computed FLOPs and bytes for small cases, and the every-byte-once invariant."""

import pytest

from simcore.cost.roofline import Pricer
from simcore.ops.builder import StageBuilder, attended_pairs
from simcore.ops.kv import kv_bytes, kv_layer_bytes
from simcore.ops.passes import decode, prefill, stage_layers
from tests.helpers import make_run


def ops_by_name(ops, layer=0):
    return {op.name: op for op in ops if op.layer == layer}


@pytest.mark.parametrize(
    "past, new, window, pairs",
    [(0, 4, None, 10), (0, 4, 2, 7), (5, 1, 4, 4), (5, 1, None, 6), (3, 3, 5, 4 + 5 + 5), (0, 1, None, 1)],
)
def test_attended_pairs(past, new, window, pairs):
    # brute force: the token at absolute position p sees min(p + 1, window) keys
    brute = sum(min(p + 1, window or 10**9) for p in range(past, past + new))
    assert attended_pairs(past, new, window) == pairs == brute


def test_llama_3_2_1b_decode_layer_by_hand():
    run = make_run("llama-3.2-1b", batch=2, prompt=10, output=2)
    ops = ops_by_name(StageBuilder(run, 0).ops(decode(2, past=10)))
    # hidden 2048, 32 q heads, 8 kv heads, head_dim 64, bf16
    qkv = ops["qkv_proj"]
    assert qkv.shape == (2, (32 + 16) * 64, 2048)
    assert qkv.flops == 2 * 2 * 2048 * 3072
    assert qkv.weight_bytes == 2048 * 3072 * 2
    assert qkv.bytes == 2048 * 3072 * 2 + 2 * (2048 + 3072) * 2
    store, fetch, attn = ops["kv_cache_store"], ops["kv_cache_fetch"], ops["attention"]
    assert store.kind == "kv_cache_store" and fetch.kind == "kv_cache_fetch"
    assert store.kv_bytes == store.bytes == 2 * 1 * (2 * 8 * 64) * 2  # one new token per sequence
    assert fetch.kv_bytes == fetch.bytes == 2 * 11 * (2 * 8 * 64) * 2  # 10 cached + the new one
    assert not fetch.kernel  # the attention kernel's own read stream
    assert attn.flops == 2 * 32 * (2 * 11) * (64 + 64)
    assert attn.bytes == 2 * 32 * (64 + 64) * 2  # q and o only: the cache bytes are the fetch's
    down = ops["down_proj"]
    assert down.flops == 2 * 2 * 8192 * 2048


def test_prefill_stores_every_prompt_token_and_fetches_nothing():
    run = make_run("llama-3.2-1b", batch=3, prompt=64, output=2)
    ops = StageBuilder(run, 0).ops(prefill(3, 64))
    stores = [op for op in ops if op.kind == "kv_cache_store"]
    assert len(stores) == 16 and not [op for op in ops if op.kind == "kv_cache_fetch"]
    assert sum(op.kv_bytes for op in stores) == kv_bytes(run.model, 3, 64, "bf16")
    attn = ops_by_name(ops)["attention"]
    assert attn.flops == 2 * 32 * 3 * (64 * 65 // 2) * 128


def test_every_kv_byte_counted_once_across_a_decode_pass():
    run = make_run("llama-3.1-8b", batch=4, prompt=100, output=2)
    ops = StageBuilder(run, 0).ops(decode(4, past=100))
    fetched = sum(op.kv_bytes for op in ops if op.kind == "kv_cache_fetch")
    assert fetched == kv_bytes(run.model, 4, 101, "bf16")
    assert sum(op.kv_bytes for op in ops if op.kind not in ("kv_cache_fetch", "kv_cache_store")) == 0
    attn_bytes = sum(op.bytes for op in ops if op.name == "attention")
    assert attn_bytes == 32 * 4 * 32 * 256 * 2  # layers x batch x heads x (q + o) x 2 B


def test_sliding_window_caps_the_fetch():
    run = make_run("mistral-7b", batch=1, prompt=5000, output=2)
    fetch = ops_by_name(StageBuilder(run, 0).ops(decode(1, past=5000)))["kv_cache_fetch"]
    assert fetch.kv_bytes == 4096 * 2 * 8 * 128 * 2
    assert kv_layer_bytes(run.model, 0, 1, 5001, "bf16") == fetch.kv_bytes


def test_tp_shards_kv_heads_and_replicates_beyond_them():
    m = make_run("llama-3.1-70b", batch=1, prompt=8, output=2, parallelism={"tp": 8}).model
    assert kv_layer_bytes(m, 0, 1, 1, "bf16", tp=8) == 2 * 1 * 128 * 2
    assert kv_layer_bytes(m, 0, 1, 1, "bf16", tp=16) == 2 * 1 * 128 * 2  # replicated, not halved
    ds = make_run("deepseek-v3", hardware="h200-sxm", parallelism={"tp": 8}).model
    assert kv_layer_bytes(ds, 0, 1, 1, "bf16", tp=8) == 576 * 2  # MLA latent is not sharded


def test_fp8_kv_halves_cache_traffic():
    bf = make_run("llama-3.1-8b", batch=2, prompt=64, output=2)
    f8 = make_run("llama-3.1-8b", batch=2, prompt=64, output=2, inference={"kvcache_precision": "fp8"})
    total = lambda r: sum(o.kv_bytes for o in StageBuilder(r, 0).ops(decode(2, 64)))  # noqa: E731
    assert total(f8) == total(bf) / 2


def test_tp_all_reduces_carry_the_hidden_state():
    run = make_run("llama-3.1-70b", batch=4, prompt=8, output=2, parallelism={"tp": 8})
    ops = ops_by_name(StageBuilder(run, 0).ops(decode(4, past=8)))
    ar = ops["attn_all_reduce"]
    assert ar.kind == "comm" and ar.group == 8 and ar.bytes == 4 * 8192 * 2 and not ar.inter_node
    assert ops["qkv_proj"].shape[1] == (64 // 8 + 2 * 8 // 8) * 128


def test_w8a8_quantizes_gemm_inputs_only():
    # fp8 linear layers return bf16: norms, attention and the TP all-reduce move 16-bit activations,
    # the GEMM math and weights are fp8, and the unquantized LM head keeps 16-bit weights
    fp8 = {"weights": "fp8", "activations": "fp8"}
    run = make_run("llama-3.1-70b", batch=4, prompt=8, output=2, parallelism={"tp": 8}, precision=fp8)
    ops = ops_by_name(StageBuilder(run, 0).ops(decode(4, past=8)))
    assert ops["attn_all_reduce"].bytes == 4 * 8192 * 2
    assert ops["input_norm"].bytes == 4 * 4 * 8192 * 2
    qkv = ops["qkv_proj"]
    assert qkv.dtype == "fp8" and qkv.weight_bytes == 8192 * (10 * 128) * 1
    assert qkv.act_bytes == 4 * (8192 + 10 * 128) * 2
    head = ops_by_name(StageBuilder(run, 0).ops(decode(4, past=8)), layer=80)["lm_head"]
    assert head.weight_bytes == 8192 * (128256 // 8) * 2


def test_w8a8_linear_quantizes_its_input_in_a_kernel_of_its_own():
    # Llama-3.1-70B tp8, 4 decode tokens: each fp8 linear first reads its input rows in bf16 (2 bytes)
    # and writes them in fp8 (1 byte), one small kernel priced at the elementwise floor plus bytes
    fp8 = {"weights": "fp8", "activations": "fp8"}
    run = make_run("llama-3.1-70b", batch=4, prompt=8, output=2, parallelism={"tp": 8}, precision=fp8)
    ops = StageBuilder(run, 0).ops(decode(4, past=8))
    layer0 = [op.name for op in ops if op.layer == 0]
    by = ops_by_name(ops)
    for name, k in (("qkv_proj", 8192), ("o_proj", 64 // 8 * 128), ("gate_up_proj", 8192),
                    ("down_proj", 28672 // 8)):
        quant = by[f"{name}_input_quant"]
        assert layer0.index(f"{name}_input_quant") == layer0.index(name) - 1  # right before its GEMM
        assert quant.bytes == 4 * k * (2 + 1)
        assert quant.family == "memory" and quant.kernel
    pricer = Pricer(run.system)
    eff = run.system.efficiency
    bw = run.system.gpu.memory.bandwidth * eff.memory
    assert pricer.time(by["qkv_proj_input_quant"]) == pytest.approx(eff.elementwise_floor + 4 * 8192 * 3 / bw)
    assert "lm_head_input_quant" not in {op.name for op in ops}  # the 16-bit head needs none
    # bf16 linears, and weight-only int4 (a 16-bit GEMM that dequantizes in the kernel), quantize nothing
    for precision in ({"weights": "bf16"}, {"weights": "int4"}):
        plain = make_run("llama-3.1-70b", batch=4, prompt=8, output=2, parallelism={"tp": 8}, precision=precision)
        assert not [op for op in StageBuilder(plain, 0).ops(decode(4, past=8)) if op.name.endswith("_input_quant")]


def test_routed_experts_quantize_in_the_moe_chain_not_per_linear():
    run = make_run("qwen3-235b-a22b", batch=4, prompt=8, output=2, parallelism={"tp": 4, "ep": 4},
                   precision={"weights": "fp8", "activations": "fp8"})
    names = {op.name for op in StageBuilder(run, 0).ops(decode(4, past=8)) if op.layer == 0}
    assert {"qkv_proj_input_quant", "o_proj_input_quant"} <= names
    assert not {"experts_gate_up_input_quant", "experts_down_input_quant", "router_input_quant"} & names


def test_moe_reads_only_activated_experts():
    run = make_run("mixtral-8x7b", batch=1, prompt=8, output=2)
    ops = ops_by_name(StageBuilder(run, 0).ops(decode(1, past=8)))
    up = ops["experts_gate_up"]
    # one token activates exactly top-2 of 8 experts: 2 x (4096 x 2 x 14336) weights
    assert up.weight_bytes == pytest.approx(2 * 4096 * 2 * 14336 * 2)
    assert up.flops == 2 * 2 * 4096 * 2 * 14336


def test_mla_decode_runs_in_latent_space():
    run = make_run("deepseek-v3", hardware="h200-sxm", batch=2, prompt=16, output=2, parallelism={"tp": 8})
    ops = ops_by_name(StageBuilder(run, 0).ops(decode(2, past=16)))
    assert ops["kv_cache_fetch"].kv_bytes == 2 * 17 * 576 * 2
    assert ops["attention"].flops == 2 * 16 * (2 * 17) * (576 + 512)  # 128 heads / tp 8 = 16
    assert "kv_b_proj" not in ops and "q_absorb" in ops and "v_absorb" in ops


def test_stage_split_even_with_remainder_first():
    assert [len(r) for r in stage_layers(10, 4)] == [3, 3, 2, 2]
    assert stage_layers(80, 1) == [range(0, 80)]


def test_pipeline_stages_split_the_ops():
    run = make_run("llama-3.1-8b", batch=1, prompt=8, output=2, parallelism={"pp": 2})
    first = StageBuilder(run, 0).ops(decode(1, 8))
    last = StageBuilder(run, 1).ops(decode(1, 8))
    assert first[0].name == "embedding" and first[-1].name == "pp_send"
    assert last[-1].name == "sampling" and "embedding" not in {o.name for o in last}
    assert sum(o.kind == "kv_cache_store" for o in first + last) == 32


def test_mixed_batch_prices_one_kernel_per_phase_and_sums_the_cache():
    from simcore.ops.passes import Batch, Group

    run = make_run("llama-3.1-8b", batch=1, prompt=8, output=2)
    b = StageBuilder(run, 0)
    mixed = Batch((Group("prefill", 1, 256, 512), Group("decode", 3, 1, 100), Group("decode", 2, 1, 900)), emitting=5)
    ops = [op for op in b.ops(mixed) if op.layer == 0]
    names = [op.name for op in ops]
    assert names.count("attention") == 2  # one varlen prefill kernel, one decode kernel
    qkv = next(op for op in ops if op.name == "qkv_proj")
    assert qkv.shape[0] == 256 + 3 + 2  # GEMMs see every token of the iteration
    fetch = next(op for op in ops if op.kind == "kv_cache_fetch")
    per_token = 2 * 8 * 128 * 2
    assert fetch.kv_bytes == (512 + 3 * 101 + 2 * 901) * per_token  # chunk reads its prefix; decodes read all
    store = next(op for op in ops if op.kind == "kv_cache_store")
    assert store.kv_bytes == (256 + 5) * per_token
    decode_attn = next(op for op in ops if op.name == "attention" and op.family == "attn_decode")
    assert decode_attn.flops == 2 * 32 * (3 * 101 + 2 * 901) * 256
    head = next(op for op in b.ops(mixed) if op.name == "lm_head")
    assert head.shape[0] == 5


def test_minimax_m2_router_is_an_fp32_gemm_on_the_cuda_cores():
    """vLLM's MiniMax-M2 gate is an fp32 linear fed fp32 hidden states, run at IEEE fp32 (ops/linears.py
    FP32_ROUTERS). tp 4 / ep 4, fp8, one 1,024-token prompt: 2 x 1024 x 3072 x 256 FLOPs, weights 3072 x 256 x 4
    bytes, rows 1024 x (3072 + 256) x 4 bytes; priced on the H100's 66.9 TFLOP/s fp32 peak x compute_max 0.735
    x 1024 / (1024 + m_half 24.1), plus the 4.73 us kernel floor: 38.26 us (a bf16 router: ~7 us)."""
    run = make_run("minimax-m2.5", parallelism={"tp": 4, "ep": 4}, precision={"weights": "fp8", "activations": "fp8"})
    router = ops_by_name(StageBuilder(run, 0).ops(prefill(1, 1024)))["router"]
    assert router.dtype == "fp32" and router.shape == (1024, 256, 3072)
    assert router.flops == 2 * 1024 * 3072 * 256
    assert router.weight_bytes == 3072 * 256 * 4 and router.bytes == 3072 * 256 * 4 + 1024 * (3072 + 256) * 4
    t = 2 * 1024 * 3072 * 256 / (66.9e12 * 0.735 * 1024 / (1024 + 24.1)) + 4.73e-6
    assert Pricer(run.system).time(router) == pytest.approx(t, rel=1e-6)
    # other MoE architectures keep a bf16 router
    qwen = make_run("qwen3-30b-a3b", parallelism={"tp": 4, "ep": 4})
    assert ops_by_name(StageBuilder(qwen, 0).ops(prefill(1, 1024)))["router"].dtype == "bf16"


def test_trtllm_per_tensor_fp8_gemm_pays_the_scaled_mm_fixed_cost():
    # Qwen3-32B tp 8, 8 decode tokens, TensorRT-LLM: qkv_proj is 5120 x 1280 fp8 (64 + 2 x 8 heads of 128 / 8);
    # weights 5120 x 1280 x 1 B, activations 8 x (5120 + 1280) x 2 B = 6,656,000 bytes, weight-streaming
    fp8 = {"weights": "fp8", "activations": "fp8"}
    run = make_run("qwen3-32b", batch=8, prompt=8, output=2, parallelism={"tp": 8}, precision=fp8,
                   serving={"engine": "trtllm"})
    ops = StageBuilder(run, 0).ops(decode(8, past=8))
    by = ops_by_name(ops)
    qkv = by["qkv_proj"]
    assert qkv.scaled_mm and qkv.bytes == 5120 * 1280 + 8 * (5120 + 1280) * 2 == 6_656_000
    eff = run.system.efficiency
    assert eff.scaled_mm_fp8_us == 2.5
    bw = run.system.gpu.memory.bandwidth * eff.gemm.memory
    assert Pricer(run.system).time(qkv) == pytest.approx(6_656_000 / bw + eff.kernel_floor + 2.5e-6)
    assert not ops_by_name(ops, 64)["lm_head"].scaled_mm  # the bf16 head
    assert not by["qkv_proj_input_quant"].scaled_mm  # the quantize kernel is priced on its own
    # vLLM's fp8 linears (CUTLASS scaled_mm), bf16 weights, and block-scaled fp8 checkpoints (another kernel)
    # pay nothing extra
    for model, precision, engine in (("qwen3-32b", fp8, "vllm"), ("qwen3-32b", {"weights": "bf16"}, "trtllm"),
                                     ("qwen3-235b-a22b-fp8", fp8, "trtllm")):
        other = make_run(model, batch=8, prompt=8, output=2, parallelism={"tp": 8}, precision=precision,
                         serving={"engine": engine})
        assert not [op for op in StageBuilder(other, 0).ops(decode(8, past=8)) if op.scaled_mm]


def test_the_qwen3_235b_fp8_release_maps_to_its_block_scaled_config():
    # the serving rows' Qwen/Qwen3-235B-A22B-FP8 is block-scaled fp8 (128 x 128): no cublas_scaled_mm cost
    from simcore.config.model import load_model
    from simcore.serving.silicon import MODELS

    assert load_model(MODELS["Qwen/Qwen3-235B-A22B-FP8"]).quantization.block == (128, 128)
    assert load_model(MODELS["Qwen/Qwen3-32B"]).quantization is None  # per-tensor when the row says fp8
