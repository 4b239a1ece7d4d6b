"""The CLI's happy paths: `run --json`, `run --out`, `--set`, `models`, `hardware`, and every example."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simcore.config.hardware import gpu_names
from simcore.config.model import model_names

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "experiments").glob("*.yaml"))


def run_json(cli, *argv) -> dict:
    r = cli("run", *argv, "--json")
    assert r.rc == 0, r.err
    assert r.err == ""
    return json.loads(r.out)  # stdout is exactly one JSON document


def test_run_json_has_the_documented_keys_and_consistent_values(cli, write_experiment):
    s = run_json(cli, write_experiment())
    for key in ("ttft_s", "decode_step_s", "e2e_s", "output_tokens_per_s", "kv_cache_bytes_read",
                "kv_cache_bytes_written", "memory_per_gpu_bytes", "model", "hardware", "parallelism"):
        assert key in s, key
    assert set(s["decode_step_s"]) >= {"first", "mean", "last"}
    assert set(s["memory_per_gpu_bytes"]) >= {"weights", "kv_cache", "activations"}
    assert s["model"] == "llama-3.1-8b"
    assert s["hardware"] == "h100-sxm"
    assert {k: s["parallelism"][k] for k in ("tp", "pp", "dp", "ep")} == {"tp": 1, "pp": 1, "dp": 1, "ep": 1}

    batch, prompt, output = 1, 128, 16
    step = s["decode_step_s"]
    assert 0 < s["ttft_s"] < 1
    assert 0 < step["first"] <= step["mean"] <= step["last"]  # the context only grows
    # e2e is prefill plus the decode steps (output - 1 or output of them, by the engine's convention)
    assert s["ttft_s"] + (output - 1) * step["first"] <= s["e2e_s"] * (1 + 1e-9)
    assert s["e2e_s"] <= (s["ttft_s"] + output * step["last"]) * (1 + 1e-9)
    assert s["output_tokens_per_s"] == pytest.approx(batch * output / s["e2e_s"], rel=1e-9)

    per_token = 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 KV heads of 128, bf16
    written = s["kv_cache_bytes_written"]
    assert written % per_token == 0
    assert prompt * per_token <= written <= (prompt + output) * per_token
    # every decode step reads at least the whole prompt's cache
    assert s["kv_cache_bytes_read"] >= (output - 1) * prompt * per_token

    mem = s["memory_per_gpu_bytes"]
    assert mem["weights"] == pytest.approx(2 * 8.03e9, rel=0.01)  # 8.03 B params in bf16
    assert mem["kv_cache"] == pytest.approx((prompt + output) * per_token, rel=0.01)
    assert 0 < mem["activations"] < mem["weights"]


def test_run_out_writes_summary_and_breakdown(cli, write_experiment, tmp_path):
    out = tmp_path / "results" / "nested"  # created, parents included
    exp = write_experiment()
    r = cli("run", exp, "--out", out, "--json")
    assert r.rc == 0, r.err
    printed = json.loads(r.out)
    written = json.loads((out / "summary.json").read_text())
    assert written == printed

    with (out / "breakdown.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows, "breakdown.csv has no rows"
    assert {"phase", "op", "kind", "duration_s", "kv_bytes"} <= set(rows[0])
    stores = [r for r in rows if r["op"] == "kv_cache_store"]
    fetches = [r for r in rows if r["op"] == "kv_cache_fetch"]
    assert {r["phase"] for r in stores} >= {"prefill", "decode_first_step"}
    assert {r["phase"] for r in fetches} >= {"decode_first_step", "decode_last_step"}
    assert sum(r["phase"] == "prefill" for r in stores) == 32  # one store per layer of llama-3.1-8b
    assert all(float(r["kv_bytes"]) > 0 for r in stores + fetches)
    assert all(float(r["duration_s"]) > 0 for r in rows if r["op"] in ("kv_cache_store", "kv_cache_fetch"))


def test_run_out_without_json_prints_tables_and_says_where(cli, write_experiment, tmp_path):
    out = tmp_path / "o"
    r = cli("run", write_experiment(), "--out", out)
    assert r.rc == 0, r.err
    assert f"wrote {out}/summary.json and {out}/breakdown.csv" in r.out
    assert "llama-3.1-8b" in r.out
    assert (out / "summary.json").is_file() and (out / "breakdown.csv").is_file()


def test_set_batch_size_changes_the_result(cli, write_experiment):
    exp = write_experiment()
    one = run_json(cli, exp)
    two = run_json(cli, exp, "--set", "workload.batch_size=2")
    assert one["workload"]["batch_size"] == 1 and two["workload"]["batch_size"] == 2
    # decode is bound by streaming the weights, so twice the sequences give nearly twice the tokens/s
    ratio = two["output_tokens_per_s"] / one["output_tokens_per_s"]
    assert 1.5 < ratio <= 2.0
    assert two["kv_cache_bytes_written"] == 2 * one["kv_cache_bytes_written"]


def test_set_hardware_switches_gpu_and_cluster(cli, write_experiment):
    exp = write_experiment()
    h100 = run_json(cli, exp)
    h200 = run_json(cli, exp, "--set", "hardware=h200-sxm")
    assert h200["hardware"] == "h200-sxm"
    assert h200["cluster"] == "hgx-h200"
    # same compute, 4.8 vs 3.35 TB/s of HBM: memory-bound decode steps get faster
    assert h200["decode_step_s"]["mean"] < 0.85 * h100["decode_step_s"]["mean"]
    assert h200["memory_per_gpu_bytes"]["capacity"] > h100["memory_per_gpu_bytes"]["capacity"]


def test_repeated_set_applies_in_order(cli, write_experiment):
    s = run_json(cli, write_experiment(), "--set", "parallelism.tp=2", "--set", "parallelism.tp=4",
                 "--set", "name=overridden")
    assert s["parallelism"]["tp"] == 4
    assert s["parallelism"]["gpus"] == 4
    assert s["name"] == "overridden"


def test_set_creates_a_missing_section(cli, write_experiment):
    exp = write_experiment()  # the base experiment has no engine section
    s = run_json(cli, exp, "--set", "engine.decode_sample_steps=0")
    assert s["decode_steps_priced"] == 15  # every one of the output - 1 decode steps


def test_models_lists_every_catalog_model(cli):
    r = cli("models")
    assert r.rc == 0, r.err
    names = model_names()
    assert len(names) >= 13
    for name in names:
        assert name in r.out, name
    for name in ("llama-3.1-8b", "deepseek-v3", "mixtral-8x7b", "gpt-oss-120b"):
        assert f" {name} " in r.out


def test_hardware_lists_every_catalog_gpu(cli):
    r = cli("hardware")
    assert r.rc == 0, r.err
    names = gpu_names()
    assert len(names) >= 9
    for name in names:
        assert name in r.out, name
    for name in ("h100-sxm", "a100-80gb-sxm", "mi300x", "b200", "hgx-h100"):
        assert f" {name} " in r.out


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_experiment_runs(cli, example):
    import yaml

    spec = yaml.safe_load(example.read_text())
    s = run_json(cli, example)
    assert s["model"] == spec["model"]
    assert s["hardware"] == spec["hardware"]
    assert s["output_tokens_per_s"] > 0
    assert s["memory_per_gpu_bytes"]["total"] <= s["memory_per_gpu_bytes"]["capacity"]
    # and the table view of the same run works too
    r = cli("run", example)
    assert r.rc == 0, r.err
    assert spec["model"] in r.out


def test_examples_exist():
    assert len(EXAMPLES) >= 4


def test_model_path_is_read_relative_to_the_experiment_file(tmp_path, cli):
    import shutil

    from simcore.config.model import load_model

    (tmp_path / "cfg").mkdir()
    shutil.copy(load_model("llama-3.2-1b").path, tmp_path / "cfg" / "config.json")
    exp = tmp_path / "exp.yaml"
    exp.write_text("model: cfg/config.json\nhardware: h100-sxm\n"
                   "workload: {kind: static, batch_size: 1, prompt_tokens: 16, output_tokens: 2}\n")
    r = cli("run", exp, "--json")
    assert r.rc == 0 and '"model": "cfg"' in r.out
