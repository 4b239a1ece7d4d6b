"""Capacity planner: KVCacheDetail, ModelArchitecture, the engine memory budget, `simcore plan`.

Expected values are computed by hand from the config dims (written as arithmetic here)."""

from __future__ import annotations

import json
import math

import pytest

from simcore.config.model import load_model, model_names
from simcore.errors import SimcoreError
from simcore.ops.linears import total_params
from simcore.planner import (KVCacheDetail, ModelArchitecture, find_possible_tp, model_memory_req, plan,
                             recommend_kv_precision)
from simcore.planner.kv_detail import kv_cache_detail

GIB = 2**30

# (model, per-token KV bytes in bf16 by hand, attention type)
PER_TOKEN = [
    ("llama-2-7b", 32 * 2 * 32 * 128 * 2, "MHA"),  # layers x (K+V) x kv_heads x head_dim x bytes
    ("llama-2-70b", 80 * 2 * 8 * 128 * 2, "GQA"),
    ("llama-3.1-8b", 32 * 2 * 8 * 128 * 2, "GQA"),  # 131072
    ("llama-3.1-70b", 80 * 2 * 8 * 128 * 2, "GQA"),
    ("llama-3.1-405b", 126 * 2 * 8 * 128 * 2, "GQA"),
    ("llama-3.2-1b", 16 * 2 * 8 * 64 * 2, "GQA"),
    ("mistral-7b", 32 * 2 * 8 * 128 * 2, "GQA"),  # before the 4096-token window cap
    ("mixtral-8x7b", 32 * 2 * 8 * 128 * 2, "GQA"),
    ("qwen2.5-7b", 28 * 2 * 4 * 128 * 2, "GQA"),
    ("qwen3-32b", 64 * 2 * 8 * 128 * 2, "GQA"),
    ("qwen3-30b-a3b", 48 * 2 * 4 * 128 * 2, "GQA"),
    ("deepseek-v3", 61 * (512 + 64) * 2, "MLA"),  # layers x (kv_lora_rank + qk_rope_head_dim) x bytes = 70272
    ("gpt-oss-120b", 36 * 2 * 8 * 64 * 2, "GQA"),  # before the 128-token window cap on half the layers
    ("gpt-oss-20b", 24 * 2 * 8 * 64 * 2, "GQA"),
    ("qwen3-235b-a22b-fp8", 94 * 2 * 4 * 128 * 2, "GQA"),  # KV stays 16-bit: fp8 weights only
    ("qwen3-235b-a22b", 94 * 2 * 4 * 128 * 2, "GQA"),
    ("minimax-m2.5", 62 * 2 * 8 * 128 * 2, "GQA"),
    ("deepseek-r1", 61 * (512 + 64) * 2, "MLA"),  # the DeepSeek-V3 architecture
    ("kimi-k2.5", 61 * (512 + 64) * 2, "MLA"),  # DeepSeek-V3 attention; int4 experts leave the KV 16-bit
    ("kimi-k2.5-nvfp4", 61 * (512 + 64) * 2, "MLA"),
    ("qwen3.5-397b-a17b", 15 * 2 * 2 * 256 * 2, "GQA"),  # KV on the 15 full layers; 45 linear layers keep a state
    ("glm-5", 78 * ((512 + 64) * 2 + 132), "MLA"),  # + the DSA indexer's fp8 key and fp32 scale (any KV dtype)
    ("glm-5-nvfp4", 78 * ((512 + 64) * 2 + 132), "MLA"),
]
FIXED_BYTES = {"glm-5": 78 * 132, "glm-5-nvfp4": 78 * 132}  # per-token bytes that do not follow the KV dtype


def test_every_catalog_model_has_a_hand_computed_row():
    assert {name for name, _, _ in PER_TOKEN} == set(model_names())


@pytest.mark.parametrize("name, per_token, kind", PER_TOKEN)
def test_per_token_kv_bytes_and_attention_type(name, per_token, kind):
    bf16 = ModelArchitecture(name, kv_dtype="bf16").get_kv_cache_detail(4096, 2)
    fp8 = ModelArchitecture(name, kv_dtype="fp8").get_kv_cache_detail(4096, 2)
    assert isinstance(bf16, KVCacheDetail)
    assert bf16.per_token_memory_bytes == per_token
    fixed = FIXED_BYTES.get(name, 0)
    assert fp8.per_token_memory_bytes == (per_token - fixed) // 2 + fixed  # the KV dtype is independent of the weights
    assert (bf16.precision_in_bytes, fp8.precision_in_bytes) == (2, 1)
    assert bf16.attention_type == kind and str(bf16.attention_type) == kind


def test_kv_detail_fields_for_llama_8b():
    kv = ModelArchitecture("llama-3.1-8b").get_kv_cache_detail(context_length=4096, batch_size=4)
    assert (kv.model, kv.kv_data_type, kv.model_architecture) == ("llama-3.1-8b", "bf16", "LlamaForCausalLM")
    assert (kv.num_hidden_layers, kv.hidden_size, kv.num_attention_heads, kv.num_key_value_heads) == (32, 4096, 32, 8)
    assert (kv.head_dimension, kv.num_attention_group, kv.context_len, kv.batch_size) == (128, 32 // 8, 4096, 4)
    assert kv.per_request_kv_cache_bytes == 131072 * 4096
    assert kv.per_request_kv_cache_gb == 131072 * 4096 / 1e9  # GB = 10^9 bytes
    assert kv.kv_cache_size_gb == 4 * 131072 * 4096 / 1e9
    assert ModelArchitecture("llama-3.1-8b").kv_cache_memory_gb(4096, 8) == 8 * 131072 * 4096 / 1e9


def test_sliding_window_layers_hold_at_most_the_window():
    mistral = ModelArchitecture("mistral-7b").get_kv_cache_detail(8192)  # every layer slides, window 4096
    assert mistral.per_request_kv_cache_bytes == 131072 * 4096
    oss = ModelArchitecture("gpt-oss-120b").get_kv_cache_detail(4096)  # 18 sliding (128) + 18 full layers
    per_layer_token = 2 * 8 * 64 * 2
    assert oss.per_request_kv_cache_bytes == 18 * per_layer_token * 128 + 18 * per_layer_token * 4096
    layers = ModelArchitecture("gpt-oss-120b").kv_cache_per_layer(4096)
    assert sum(x.bytes_per_request for x in layers) == oss.per_request_kv_cache_bytes
    assert sum(x.bytes_per_token for x in layers) == oss.per_token_memory_bytes
    assert (layers[0].kind, layers[0].cached_tokens, layers[1].kind, layers[1].cached_tokens) == (
        "sliding", 128, "full", 4096)


def test_attention_type_is_read_from_the_config_fields(tmp_path):
    base = {"hidden_size": 1024, "num_hidden_layers": 2, "num_attention_heads": 16, "vocab_size": 1000,
            "architectures": ["SomethingNewForCausalLM"], "max_position_embeddings": 4096}
    cases = {"mqa": ({"num_key_value_heads": 1}, "MQA", 2 * 2 * 1 * 64 * 2),
             "mha": ({}, "MHA", 2 * 2 * 16 * 64 * 2),
             "mla": ({"kv_lora_rank": 256, "qk_rope_head_dim": 32}, "MLA", 2 * (256 + 32) * 2)}
    for name, (extra, kind, per_token) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**base, **extra}))
        kv = ModelArchitecture(str(path)).get_kv_cache_detail(16)
        assert (kv.attention_type, kv.per_token_memory_bytes) == (kind, per_token)


def test_kv_cache_detail_is_memoized_per_model_context_and_batch():
    spec = load_model("llama-3.1-8b")
    assert kv_cache_detail(spec, 1024, 2) is kv_cache_detail(spec, 1024, 2)
    assert kv_cache_detail(spec, 1024, 2) is not kv_cache_detail(spec, 1024, 3)


@pytest.mark.parametrize("name", sorted(model_names()))
def test_num_parameters_billions_agrees_with_the_parameter_count(name):
    assert ModelArchitecture(name).num_parameters_billions == total_params(load_model(name)) / 1e9


def test_model_memory_by_dtype_and_quantization_config():
    m = load_model("llama-3.1-8b")
    p, v, h = total_params(m), m.vocab, m.hidden
    assert model_memory_req("llama-3.1-8b", "bf16") == p * 2
    sixteen_bit = 2 * v * h + 32 * 2 * h + h  # embedding, untied head, norms stay 16-bit
    assert model_memory_req("llama-3.1-8b", "fp8") == (p - sixteen_bit) * 1 + sixteen_bit * 2
    # 4-bit AWQ/GPTQ: an fp16 scale and a 4-bit zero point per group of 128 inputs and output channel
    linear = p - sixteen_bit
    assert model_memory_req("llama-3.1-8b", "int4") == linear * 0.5 + linear / 128 * 2.5 + sixteen_bit * 2
    assert ModelArchitecture("llama-3.1-8b").model_memory_gb() == p * 2 / 1e9
    ds = ModelArchitecture("deepseek-v3")  # quantization_config: fp8
    assert ds.model_memory_gb() < ds.model_memory_gb("bf16") / 1.95
    oss = ModelArchitecture("gpt-oss-120b")  # mxfp4 experts only, 4.25 bits each
    assert 60 < oss.model_memory_gb() < 68


def test_possible_tp_mirrors_the_experiment_check():
    assert find_possible_tp(load_model("llama-3.1-70b")) == [1, 2, 4, 8, 16, 32, 64]  # 64 heads, 8 KV heads
    assert find_possible_tp(load_model("qwen2.5-7b")) == [1, 2, 4, 28]  # 28 heads, 4 KV heads: 28 = 7 x 4 replicas
    assert find_possible_tp(load_model("deepseek-v3")) == [1, 2, 4, 8, 16, 32, 64, 128]  # MLA: heads only
    assert ModelArchitecture("llama-3.1-8b").max_context_length == 131072


# -- the engine budget ------------------------------------------------------------------


def llama_8b_h100_by_hand() -> tuple[float, float, float, float, float]:
    """(usable, weights, activations, overhead, KV capacity) of llama-3.1-8b on h100-sxm at 0.9, by hand."""
    usable = 79.2 * GIB * 0.9
    # bf16 weights plus vLLM's rotary cos/sin table (max_position x head_dim, bf16)
    weights = total_params(load_model("llama-3.1-8b")) * 2 + 131072 * 128 * 2
    # vLLM's profile run on an H100 (8192 tokens, 1024 sequences): the sampler's sort over 1024 x 128256
    # logits peaks at 38 B per element (bf16 2 + fp32 4 + sorted values 4 + indices 8 + iota 8 + CUB
    # buffers 12), while the forward's output (8192 x 4096 bf16) and the 1024 gathered rows stay alive,
    # plus cuBLAS's 32 MiB workspace
    acts = 38 * 1024 * 128256 + (8192 + 1024) * 4096 * 2 + 32 * 2**20
    overhead = 0.133 * GIB  # non-torch memory at tp 1 (fitted on the shared vLLM rows)
    return usable, weights, acts, overhead, usable - weights - acts - overhead


def test_plan_llama_8b_on_h100_by_hand():
    cp = plan("llama-3.1-8b", "h100-sxm", gpu_mem_util=0.9)
    b = cp.budget
    usable, weights, acts, overhead, kv = llama_8b_h100_by_hand()
    assert (b.capacity, b.weights, b.activations, b.overhead) == pytest.approx((usable, weights, acts, overhead))
    assert b.kv_capacity == pytest.approx(kv)
    d = cp.as_dict()
    assert d["kv_blocks"] == math.floor(kv / (16 * 131072))
    assert d["kv_tokens"] == 16 * d["kv_blocks"]
    assert d["max_model_len"] == 131072
    assert d["kv_bytes_per_request"] == 131072 * 131072
    assert d["max_concurrent_requests"] == math.floor(kv / (131072 * 131072)) == 3
    assert d["max_model_len_that_fits"] == 131072  # one request of the full context fits
    assert plan("llama-3.1-8b", "h100-sxm", max_model_len=8192).max_concurrent == math.floor(kv / (8192 * 131072))
    assert d["fits"] and d["verdict"].startswith("fits")


def test_max_model_len_that_fits_is_the_largest_context_one_request_can_hold():
    cp = plan("llama-3.1-70b", "h100-sxm", tp=2)
    kv = cp.budget.kv_capacity
    per_token = 327680 // 2  # KV heads sharded over 2 GPUs
    assert cp.max_model_len_fits == math.floor(kv / per_token) < 131072
    assert cp.max_concurrent == 0 and not cp.as_dict()["fits"] and "lower max_model_len" in cp.verdict


def test_kv_per_gpu_is_sharded_by_tp_replicated_past_the_kv_heads_and_mla_is_not_sharded():
    assert plan("llama-3.1-70b", "h100-sxm", tp=8).budget.kv_bytes_per_token() == 80 * 2 * (8 // 8) * 128 * 2
    one_head = 16 * 2 * 1 * 64 * 2  # llama-3.2-1b: 8 KV heads; tp 16 keeps one (replicated) head per GPU
    assert plan("llama-3.2-1b", "h100-sxm", tp=8).budget.kv_bytes_per_token() == one_head
    assert plan("llama-3.2-1b", "h100-sxm", tp=16).budget.kv_bytes_per_token() == one_head
    assert plan("deepseek-v3", "h200-sxm", tp=8).budget.kv_bytes_per_token() == 61 * (512 + 64) * 2
    stage = plan("llama-3.1-70b", "h100-sxm", tp=4, pp=2).budget.kv_bytes_per_token()
    assert stage == 40 * 2 * 2 * 128 * 2  # 40 layers per stage, 2 KV heads per GPU


@pytest.mark.parametrize("model, gpu", [("llama-3.1-70b", "h100-sxm"), ("deepseek-v3", "h200-sxm"),
                                        ("mixtral-8x7b", "a100-80gb-sxm")])
def test_more_gpus_never_reduce_kv_capacity_per_replica(model, gpu):
    tps = [t for t in find_possible_tp(load_model(model)) if t <= 8]
    tokens = {(t, p): plan(model, gpu, tp=t, pp=p, max_model_len=4096).budget.tokens() for t in tps for p in (1, 2, 4)}
    for (t, p), n in tokens.items():
        for (t2, p2), n2 in tokens.items():
            if t2 >= t and p2 >= p:
                assert n2 >= n, f"tp {t2} pp {p2} holds {n2} tokens < tp {t} pp {p} {n}"
    assert max(tokens.values()) > 0


def test_fp8_kv_doubles_token_capacity_and_concurrency():
    bf16 = plan("llama-3.1-70b", "h100-sxm", tp=4, max_model_len=8192)
    fp8 = plan("llama-3.1-70b", "h100-sxm", tp=4, max_model_len=8192, kv_dtype="fp8")
    assert fp8.budget.kv_capacity == bf16.budget.kv_capacity  # the weights did not change
    assert 2 * bf16.budget.tokens() <= fp8.budget.tokens() <= 2 * bf16.budget.tokens() + 16  # floors of blocks
    assert 2 * bf16.max_concurrent <= fp8.max_concurrent <= 2 * bf16.max_concurrent + 1
    advice = recommend_kv_precision("llama-3.1-70b", "h100-sxm", 8192, tp=4)
    assert advice.tokens == {"bf16": bf16.budget.tokens(), "fp8": fp8.budget.tokens()}
    assert advice.max_concurrent["fp8"] == fp8.max_concurrent and advice.gpu_has_fp8
    a100 = recommend_kv_precision("llama-3.1-8b", "a100-80gb-sxm", 8192)
    assert not a100.gpu_has_fp8 and "no fp8" in a100.advice


def test_a_model_too_big_for_the_gpu_does_not_fit():
    d = plan("llama-3.1-70b", "h100-sxm").as_dict()
    assert not d["fits"] and d["kv_blocks"] == 0 and d["verdict"].startswith("does not fit")


# -- the CLI ----------------------------------------------------------------------------


def test_plan_cli_prints_the_memory_table(cli):
    rc, out, err = cli("plan", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpu-mem-util", "0.9")
    assert rc == 0 and err == ""
    blocks = math.floor(llama_8b_h100_by_hand()[-1] / (16 * 131072))  # 16-token blocks of 128 KiB tokens
    for text in ("weights", "activations", "non-torch memory", "KV cache capacity", "KV blocks", f"{blocks:,}",
                 "max concurrent requests", "max model length that fits", "fp8"):
        assert text in out, text


PLAN_KEYS = {"model", "gpu", "tp", "pp", "gpus", "precision", "gpu_memory_utilization", "max_num_batched_tokens",
             "max_num_seqs", "block_size", "memory_per_gpu_bytes", "kv_bytes_per_token_per_gpu", "kv_blocks",
             "kv_tokens", "max_model_len", "kv_bytes_per_request", "max_concurrent_requests",
             "max_model_len_that_fits", "fits", "verdict", "kv_precision", "engine", "engine_memory",
             "efficiency_profile"}


def test_plan_json_has_the_documented_keys(cli):
    rc, out, _ = cli("plan", "--model", "llama-3.1-70b", "--gpu", "h200-sxm", "--tp", "2", "--kv-dtype", "fp8",
                         "--max-model-len", "32768", "--json")
    d = json.loads(out)
    assert rc == 0 and set(d) == PLAN_KEYS
    assert set(d["memory_per_gpu_bytes"]) == {"device", "usable", "weights", "activations", "runtime_overhead",
                                              "kv_cache"}
    assert d["precision"]["kv_cache"] == "fp8" and d["kv_bytes_per_token_per_gpu"] == 80 * 2 * 4 * 128 * 1


def test_plan_plot_writes_a_png(cli, tmp_path):
    out = tmp_path / "plan.png"
    rc, _, _ = cli("plan", "--model", "gpt-oss-120b", "--gpu", "h100-sxm", "--plot", out)
    assert rc == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, contains", [
    (["--model", "llama-3.1-8", "--gpu", "h100-sxm"], ["unknown model 'llama-3.1-8'", "did you mean"]),
    (["--model", "llama-3.1-8b", "--gpu", "h100"], ["unknown GPU 'h100'", "h100-sxm"]),
    (["--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "3"], ["tp = 3", "allowed tp: 1, 2, 4, 8"]),
    (["--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--tp", "0"], ["tp = 0", ">= 1"]),
    (["--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--pp", "-2"], ["pp = -2", ">= 1"]),
    (["--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--pp", "81"], ["pp = 81", "allowed pp: 1 to 80"]),
    (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--max-model-len", "200000"],
     ["max_model_len = 200000", "max_position_embeddings = 131072", "allowed: 1 to 131072"]),
    (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--max-model-len", "0"], ["max_model_len = 0"]),
    (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpu-mem-util", "1.5"], ["gpu_mem_util = 1.5", "(0, 1]"]),
    (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpu-mem-util", "0"], ["gpu_mem_util = 0.0"]),
    (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--kv-dtype", "fp4"], ["kv_dtype = 'fp4'", "fp8"]),
    (["--model", "llama-3.1-8b", "--gpu", "a100-80gb-sxm", "--kv-dtype", "fp8"], ["no fp8 support", "bf16"]),
    (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--block-size", "0"], ["block_size = 0"]),
    (["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--weights", "fp6"], ["weights = 'fp6'", "int4"]),
])
def test_plan_bad_input_is_one_line_and_exit_2(cli, argv, contains):
    rc, out, err = cli("plan", *argv)
    assert rc == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith("error: ")
    for piece in contains:
        assert piece in err, (piece, err)


def test_api_bad_sizes_raise_one_line_errors():
    m = ModelArchitecture("llama-2-7b")
    for call, text in ((lambda: m.get_kv_cache_detail(0), "context_length = 0"),
                       (lambda: m.get_kv_cache_detail(4097), "allowed: 1 to 4096"),
                       (lambda: m.get_kv_cache_detail(16, -1), "batch_size = -1"),
                       (lambda: ModelArchitecture("llama-3.1-8b", kv_dtype="int3"), "kv_dtype = 'int3'")):
        with pytest.raises(SimcoreError, match=text):
            call()


def test_plot_with_an_unknown_format_is_one_line_exit_2(cli, tmp_path):
    rc, out, err = cli("plan", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--plot", tmp_path / "x.foo")
    assert rc == 2 and err.startswith("error: --plot") and "not supported" in err and err.count("\n") == 1


def test_kv_plot_follows_the_binding_stage_with_pipeline_parallelism():
    from simcore.planner.plots import kv_vs_context
    from simcore.report.plotting import pyplot

    cp = plan("llama-3.1-70b", "h100-sxm", tp=4, pp=2)
    fig, ax = pyplot().subplots()
    kv_vs_context(ax, [cp.run.model.path], ("bf16",), 4096, 4, cp.budget.binding.layers)
    line = ax.get_lines()[0]
    # 40 of the 80 layers on one GPU: 40 x 2 x (8 kv heads / tp 4) x 128 x 2 B per token
    assert line.get_ydata()[-1] * 2**30 == pytest.approx(4096 * 40 * 2 * 2 * 128 * 2)
    assert line.get_ydata()[-1] * 2**30 == pytest.approx(cp.budget.request_bytes(4096))
    pyplot().close(fig)
