import json
from pathlib import Path

import pytest

from simcore.config.hardware import cluster_names, gpu_names, load_cluster, load_system
from simcore.config.model import load_model, model_names, parse_config
from simcore.ops.kv import kv_bytes_per_token
from simcore.ops.linears import total_params

PUBLISHED = json.loads((Path(__file__).parent / "data" / "published_params.json").read_text())
REQUIRED_MODELS = {
    "llama-2-7b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-3.2-1b", "qwen2.5-7b",
    "qwen3-32b", "mistral-7b", "mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3", "gpt-oss-120b",
    "qwen3-235b-a22b", "minimax-m2.5", "deepseek-r1",
}
REQUIRED_GPUS = {"h100-sxm", "h100-pcie", "h200-sxm", "a100-80gb-sxm", "a100-40gb", "l40s", "l4", "mi300x", "b200"}


def test_catalogs_hold_the_required_entries():
    assert REQUIRED_MODELS <= set(model_names())
    assert REQUIRED_GPUS <= set(gpu_names())


@pytest.mark.parametrize("name", sorted(REQUIRED_MODELS))
def test_parameter_count_within_one_percent_of_published(name):
    published = PUBLISHED[name]["params"]
    assert total_params(load_model(name)) == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize(
    "name, per_token, kind",
    [
        ("llama-3.1-8b", 131072, "GQA"),  # 32 layers x 2 x 8 heads x 128 x 2 B
        ("llama-2-7b", 524288, "MHA"),  # 32 x 2 x 32 x 128 x 2
        ("deepseek-v3", 70272, "MLA"),  # 61 x (512 + 64) x 2
        ("llama-3.1-70b", 327680, "GQA"),  # 80 x 2 x 8 x 128 x 2
        ("gpt-oss-120b", 73728, "GQA"),  # 36 x 2 x 8 x 64 x 2 (before the window cap)
    ],
)
def test_kv_bytes_per_token_and_attention_type(name, per_token, kind):
    m = load_model(name)
    assert kv_bytes_per_token(m, "bf16") == per_token
    assert kv_bytes_per_token(m, "fp8") == per_token / 2
    assert m.attention_type == kind


def test_layer_kinds_and_windows():
    oss = load_model("gpt-oss-120b")
    assert oss.layer_kinds.count("sliding") == 18 and oss.layer_kinds.count("full") == 18
    assert oss.layer_kinds[:2] == ("sliding", "full") and oss.sliding_window == 128
    mistral = load_model("mistral-7b")
    assert set(mistral.layer_kinds) == {"sliding"} and mistral.sliding_window == 4096
    assert load_model("mixtral-8x7b").sliding_window is None


def test_moe_fields_under_their_several_names():
    assert (load_model("mixtral-8x7b").num_experts, load_model("mixtral-8x7b").experts_per_token) == (8, 2)
    ds = load_model("deepseek-v3")
    assert (ds.num_experts, ds.experts_per_token, ds.shared_experts) == (256, 8, 1)
    assert ds.moe_layers[:4] == (False, False, False, True)  # first_k_dense_replace = 3
    assert load_model("qwen3-30b-a3b").num_experts == 128


def test_quantization_config_is_read():
    assert load_model("deepseek-v3").quantization.weight_dtype == "fp8"
    q = load_model("gpt-oss-120b").quantization
    assert q.weight_dtype == "mxfp4" and q.experts_only


def test_text_config_nesting_and_head_dim_fallback():
    raw = {
        "architectures": ["SomeVLM"],
        "vision_config": {"hidden_size": 1},
        "text_config": {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
                        "intermediate_size": 512, "tie_word_embeddings": True},
    }
    m = parse_config(raw, "vlm", "inline")
    assert (m.hidden, m.layers, m.heads, m.kv_heads, m.head_dim) == (256, 2, 4, 4, 64)
    assert m.tie_embeddings and m.attention_type == "MHA"
    # tied embeddings are counted once: 2 layers x (4*256*256 qkvo + 3*256*512 mlp + 2*256 norms) + 100*256 + 256
    assert total_params(m) == 2 * (4 * 256 * 256 + 3 * 256 * 512 + 2 * 256) + 100 * 256 + 256


def test_model_by_path(tmp_path):
    src = load_model("llama-3.2-1b").path
    (tmp_path / "my-model").mkdir()
    path = tmp_path / "my-model" / "config.json"
    path.write_text(Path(src).read_text())
    m = load_model(str(path))
    assert m.name == "my-model" and m.hidden == 2048


@pytest.mark.parametrize("name", sorted(REQUIRED_GPUS))
def test_every_gpu_loads_with_its_default_cluster(name):
    s = load_system(name)
    assert s.gpu.memory.bandwidth > 0 and s.cluster.gpu == name
    assert s.gpu.supports("bf16") or s.gpu.supports("fp16")


def test_every_cluster_names_a_known_gpu():
    for c in cluster_names():
        assert load_cluster(c).gpu in gpu_names()


def test_inter_node_link_is_per_gpu_share_of_the_nics():
    s = load_system("h100-sxm")  # 8 x 400 Gb/s NICs for 8 GPUs -> 50 GB/s per GPU per direction
    assert s.inter_link.bandwidth == pytest.approx(50e9)


def test_borrowed_efficiency_profiles_are_named_not_hidden():
    from simcore.config.hardware import calibration_note

    assert calibration_note(["h100-sxm"]) is None  # fitted on its own microbenchmarks
    note = calibration_note(["h100-sxm", "mi300x", "b200"])
    assert "b200, mi300x" in note and "h100-calibrated" in note and "h100-sxm" not in note.split(":")[0]
