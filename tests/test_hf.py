"""Models named by Hugging Face id: the catalog's ids, a fixture HF cache, a stubbed download.
Nothing here touches the network: HF_HUB_OFFLINE is set, and the download test replaces
huggingface_hub's function and the reachability check."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from simcore.config import hf
from simcore.config.model import load_model, model_names

ROOT = Path(__file__).resolve().parent.parent
TINY = {  # a 2-layer GQA model: 2 x 2 x 2 heads x 64 x 2 B = 1,024 KV bytes per token in bf16
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 512, "num_hidden_layers": 2,
    "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 1024,
    "vocab_size": 1000, "max_position_embeddings": 4096, "torch_dtype": "bfloat16", "tie_word_embeddings": False,
}


def write_snapshot(hub: Path, hf_id: str, rev: str, config: dict, main: bool = True) -> Path:
    repo = hub / ("models--" + hf_id.replace("/", "--"))
    path = repo / "snapshots" / rev / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(config))
    if main:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(rev)
    return path


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "hub").mkdir()
    return tmp_path / "hub"


def test_every_catalog_model_carries_its_hugging_face_ids():
    ids = hf.catalog_hf_ids()
    assert set(ids) == set(model_names())
    for name, hfs in ids.items():
        source = json.loads((ROOT / "models" / f"{name}.json").read_text())["_source"]
        assert source.startswith(hfs[0]), (name, hfs[0], source)  # the first id is the one the config describes


@pytest.mark.parametrize("hf_id, name", [("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
                                         ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
                                         ("deepseek-ai/deepseek-v3", "deepseek-v3"),  # ids are case-insensitive
                                         ("Qwen/Qwen3-30B-A3B", "qwen3-30b-a3b")])
def test_catalog_ids_resolve_to_the_catalog_entry(hub, hf_id, name):
    spec = load_model(hf_id)
    assert spec.name == name and spec.path == str(ROOT / "models" / f"{name}.json")


def test_an_id_outside_the_catalog_reads_the_local_cache(hub):
    write_snapshot(hub, "acme/Tiny-2L", "0123abc", TINY)
    write_snapshot(hub, "acme/Tiny-2L", "old999", {**TINY, "num_hidden_layers": 7}, main=False)
    spec = load_model("acme/Tiny-2L")
    assert (spec.name, spec.layers, spec.kv_heads) == ("acme/Tiny-2L", 2, 2)  # refs/main wins over other snapshots
    from simcore.planner import ModelArchitecture

    kv = ModelArchitecture("acme/Tiny-2L").get_kv_cache_detail(context_length=1000)
    assert (kv.attention_type, kv.per_token_memory_bytes, kv.per_request_kv_cache_bytes) == ("GQA", 1024, 1024000)


def test_a_path_into_the_cache_is_named_by_its_id(hub):
    path = write_snapshot(hub, "acme/Tiny-Path", "feed01", TINY)
    assert load_model(str(path)).name == "acme/Tiny-Path"


def test_without_refs_main_the_newest_snapshot_is_read(hub):
    write_snapshot(hub, "acme/Tiny-NoRef", "r1", TINY, main=False)
    assert load_model("acme/Tiny-NoRef").layers == 2


def test_unknown_id_offline_is_one_error_with_close_matches(hub, bad):
    line = bad("plan", "--model", "meta-llama/Llama-3.1-8X", "--gpu", "h100-sxm",
               contains=["meta-llama/Llama-3.1-8X", "not in the catalog nor in the local Hugging Face cache",
                         "did you mean: meta-llama/Llama-3.1-8B"])
    assert "huggingface_hub" not in line  # offline on purpose: no advice to install the downloader


def test_plan_and_recommend_take_a_hugging_face_id(hub, cli):
    rc, out, _ = cli("plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "h100-sxm", "--json")
    assert rc == 0 and json.loads(out)["model"] == "llama-3.1-8b"
    write_snapshot(hub, "acme/Tiny-Plan", "aa11", TINY)
    rc, out, _ = cli("plan", "--model", "acme/Tiny-Plan", "--gpu", "h100-sxm", "--json")
    d = json.loads(out)
    assert rc == 0 and d["model"] == "acme/Tiny-Plan" and d["kv_bytes_per_token_per_gpu"] == 1024


def test_download_fetches_config_json_only_with_the_users_token(hub, monkeypatch):
    calls = []

    def fake_download(repo_id, filename, **kw):
        calls.append((repo_id, filename, kw))
        return str(write_snapshot(hub, repo_id, "dl01", TINY))

    class GatedRepoError(Exception):
        pass

    fake = types.ModuleType("huggingface_hub")
    fake.hf_hub_download = fake_download
    utils = types.ModuleType("huggingface_hub.utils")
    utils.GatedRepoError = GatedRepoError
    utils.HfHubHTTPError = utils.RepositoryNotFoundError = type("Other", (Exception,), {})
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    monkeypatch.setitem(sys.modules, "huggingface_hub.utils", utils)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf, "reachable", lambda timeout_s=3.0: True)
    assert load_model("acme/Tiny-Download").layers == 2
    assert [(r, f) for r, f, _ in calls] == [("acme/Tiny-Download", "config.json")]
    assert "token" not in calls[0][2]  # huggingface_hub reads the user's saved login / HF_TOKEN itself

    def gated(repo_id, filename, **kw):
        raise GatedRepoError("401")

    fake.hf_hub_download = gated
    with pytest.raises(hf.SimcoreError, match="gated on Hugging Face.*log in"):
        load_model("acme/Tiny-Gated")


def test_offline_download_attempt_says_the_hub_is_unreachable(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.ModuleType("huggingface_hub"))
    monkeypatch.setattr(hf, "reachable", lambda timeout_s=3.0: False)
    with pytest.raises(hf.SimcoreError, match="cannot be reached"):
        load_model("acme/Tiny-Unreachable")


SEED_API = '''
from simcore.planner import ModelArchitecture, KVCacheDetail

model = ModelArchitecture("meta-llama/Llama-3.1-8B")

# Get detailed KV cache information
kv_detail = model.get_kv_cache_detail(context_length=4096, batch_size=4)

print(f"Attention Type: {kv_detail.attention_type}")
print(f"Per-Token Memory: {kv_detail.per_token_memory_bytes} bytes")
print(f"Per-Request KV Cache: {kv_detail.per_request_kv_cache_gb:.2f} GB")
print(f"Total Batch KV Cache: {kv_detail.kv_cache_size_gb:.2f} GB")
'''


def test_the_seed_example_runs_with_only_its_import_line_changed(hub, capsys):
    """../shared/seeds/000_751891480a1384ef.txt, 'Public API': 8B GQA, 32 x 2 x 8 x 128 x 2 B per token;
    4,096 tokens x 131,072 B = 0.54 GB per request, x 4 = 2.15 GB."""
    exec(compile(SEED_API, "seed", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "Attention Type: GQA", "Per-Token Memory: 131072 bytes", "Per-Request KV Cache: 0.54 GB",
        "Total Batch KV Cache: 2.15 GB"]


SEED_ANALYSIS = '''
from simcore.planner import ModelArchitecture

model = ModelArchitecture("meta-llama/Llama-3.1-70B")
kv_detail_2k = model.get_kv_cache_detail(context_length=2048)
kv_detail_4k = model.get_kv_cache_detail(context_length=4096)
print(f"Model: {model.model_id}")
print(f"Attention Type: {kv_detail_2k.attention_type}")
print(f"KV Data Type: {kv_detail_2k.kv_data_type}")
print(f"Per-Token Memory: {kv_detail_2k.per_token_memory_bytes} bytes\\n")
print(f"  Per-Request KV Cache: {kv_detail_2k.per_request_kv_cache_gb:.3f} GB")
print(f"  Batch Size 8: {kv_detail_4k.kv_cache_size_gb * 8:.2f} GB\\n")
'''


def test_the_seed_detailed_analysis_example_runs(hub, capsys):
    """The seed's 'Example: Detailed Model Analysis' (its fields, 70B): 80 x 2 x 8 x 128 x 2 = 327,680 B per
    token; 2,048 tokens = 0.671 GB; 4,096 tokens x 8 = 10.74 GB."""
    exec(compile(SEED_ANALYSIS, "seed", "exec"), {})
    out = capsys.readouterr().out
    for line in ("Model: llama-3.1-70b", "Attention Type: GQA", "KV Data Type: bf16", "Per-Token Memory: 327680 bytes",
                 "Per-Request KV Cache: 0.671 GB", "Batch Size 8: 10.74 GB"):
        assert line in out, (line, out)


SEED = ROOT.parent / "shared" / "seeds" / "000_751891480a1384ef.txt"


@pytest.mark.skipif(not SEED.is_file(), reason=f"the founding seed {SEED} is not beside this checkout")
def test_every_runnable_seed_example_runs_verbatim_but_its_import_line(hub, capsys):
    """The seed's code blocks that import config_explorer.recommender (the others are excerpts of
    its source), with only that import line pointed at simcore.planner."""
    import re

    blocks = [b for b in re.findall(r"```python\n(.*?)```", SEED.read_text(), re.S) if "import" in b]
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block.replace("from config_explorer.recommender import", "from simcore.planner import"),
                     "seed", "exec"), {})
    out = capsys.readouterr().out
    assert "Per-Token Memory: 131072 bytes" in out and "Model: llama-3.1-70b" in out and "Batch Size 8: 10.74 GB" in out
