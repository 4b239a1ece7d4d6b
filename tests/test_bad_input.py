"""Bad input never gives a traceback: one line 'error: ...' naming the field, the value and what is
allowed (with close matches for unknown names), and exit status 2.

Every test goes through simcore.cli.main in-process (the `bad` fixture checks the contract: exit 2,
empty stdout, exactly one stderr line starting with 'error:'); one test runs `python -m simcore` in a
subprocess to prove that no traceback reaches stderr.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

GIB = 2**30


# -- unknown catalog names ------------------------------------------------------------------------


def test_unknown_model_suggests_the_close_name(bad, write_experiment):
    line = bad("run", write_experiment(model="llama-3.1-8"),
               contains=["field 'model'", "'llama-3.1-8'", "known:", "qwen3-32b"])
    assert "did you mean: llama-3.1-8b," in line  # the closest match comes first


def test_unknown_gpu_suggests_the_close_name(bad, write_experiment):
    line = bad("run", write_experiment(hardware="h100-sxn"),
               contains=["field 'hardware'", "unknown GPU 'h100-sxn'", "known:", "a100-80gb-sxm"])
    assert "did you mean: h100-sxm," in line


def test_unknown_cluster_suggests_the_close_name(bad, write_experiment):
    line = bad("run", write_experiment(cluster="hgx-h10"),
               contains=["field 'cluster'", "unknown cluster 'hgx-h10'", "known:", "dgx-a100-80gb"])
    assert "did you mean: hgx-h100," in line


def test_cluster_of_another_gpu_lists_the_clusters_that_fit(bad, write_experiment):
    bad("run", write_experiment(cluster="hgx-h200"),
        contains=["field 'cluster'", "'hgx-h200'", "h200-sxm", "allowed clusters for h100-sxm: hgx-h100"])


def test_unknown_name_given_on_the_command_line(bad, write_experiment):
    line = bad("run", write_experiment(), "--set", "model=mixtrl-8x7b",
               contains=["field 'model'", "'mixtrl-8x7b'"])
    assert "did you mean: mixtral-8x7b" in line


# -- model given as a path to a config.json --------------------------------------------------------


def test_model_as_path_to_a_config_json_runs_like_the_catalog_entry(cli, write_experiment, tmp_path):
    folder = tmp_path / "my-llama"
    folder.mkdir()
    config = folder / "config.json"
    config.write_text((REPO / "models" / "llama-3.1-8b.json").read_text())

    catalog = cli("run", write_experiment(), "--json")
    by_file = cli("run", write_experiment(model=str(config)), "--json")
    by_folder = cli("run", write_experiment(model=str(folder)), "--json")  # an HF-style folder works too
    assert (catalog.rc, by_file.rc, by_folder.rc) == (0, 0, 0), by_file.err + by_folder.err
    a, b, c = (json.loads(r.out) for r in (catalog, by_file, by_folder))
    assert b["model"] == c["model"] == "my-llama"  # named after its folder
    assert a["model"] == "llama-3.1-8b"
    assert b["ttft_s"] == pytest.approx(a["ttft_s"], rel=1e-12)
    assert c["e2e_s"] == pytest.approx(a["e2e_s"], rel=1e-12)
    assert b["memory_per_gpu_bytes"]["weights"] == a["memory_per_gpu_bytes"]["weights"]


def test_malformed_config_json_reports_line_and_column(bad, write_experiment, tmp_path):
    config = tmp_path / "broken" / "config.json"
    config.parent.mkdir()
    config.write_text('{\n  "hidden_size": 4096,\n  "num_layers" 32\n}\n')
    bad("run", write_experiment(model=str(config)),
        contains=["field 'model'", str(config), "malformed JSON at line 3, column 16", "Expecting ':' delimiter"])


def test_config_json_that_is_not_an_object(bad, write_experiment, tmp_path):
    config = tmp_path / "list.json"
    config.write_text("[1, 2]")
    bad("run", write_experiment(model=str(config)), contains=[str(config), "got a JSON array"])


@pytest.mark.parametrize(
    "field, value, expect",
    [
        ("num_key_value_heads", 0, "field 'num_key_value_heads' = 0: must be an integer >= 1"),
        ("num_key_value_heads", "eight", "field 'num_key_value_heads' = 'eight': must be an integer >= 1"),
        ("num_hidden_layers", -2, "field 'num_hidden_layers' = -2: must be a positive integer"),
        ("quantization_config", "fp8", "field 'quantization_config' = 'fp8': must be a JSON object"),
    ],
)
def test_config_json_with_a_bad_field(bad, write_experiment, tmp_path, field, value, expect):
    raw = json.loads((REPO / "models" / "llama-3.1-8b.json").read_text())
    raw[field] = value
    config = tmp_path / f"bad-{field}.json"
    config.write_text(json.dumps(raw))
    bad("run", write_experiment(model=str(config)), contains=["field 'model'", str(config), expect])


def test_config_json_missing_a_required_field(bad, write_experiment, tmp_path):
    raw = json.loads((REPO / "models" / "llama-3.1-8b.json").read_text())
    del raw["vocab_size"]
    config = tmp_path / "novocab.json"
    config.write_text(json.dumps(raw))
    bad("run", write_experiment(model=str(config)), contains=["missing field 'vocab_size'"])


def test_model_path_that_does_not_exist(bad, write_experiment, tmp_path):
    missing = tmp_path / "nowhere" / "config.json"
    bad("run", write_experiment(model=str(missing)),
        contains=["field 'model'", str(missing), "does not exist", "catalog name", "llama-3.1-8b"])


# -- the experiment file itself ---------------------------------------------------------------------


def test_malformed_yaml_reports_line_and_column(bad, write_experiment):
    path = write_experiment(text="model: llama-3.1-8b\nhardware: h100-sxm\nworkload:\n  batch_size: 1\n"
                                 "   prompt_tokens: 128\n")
    bad("run", path, contains=[str(path), "malformed YAML at line 5, column 17", "mapping values are not allowed"])


def test_unclosed_flow_mapping_reports_where(bad, write_experiment):
    path = write_experiment(text="model: llama-3.1-8b\nworkload: {batch_size: 1, prompt_tokens: 128\n")
    bad("run", path, contains=["malformed YAML at line 3, column 1", "expected ',' or '}'"])


def test_tab_indentation_is_malformed_yaml(bad, write_experiment):
    path = write_experiment(text="model: llama-3.1-8b\n\thardware: h100-sxm\n")
    bad("run", path, contains=["malformed YAML at line 2, column 1", "'\\t'"])


def test_yaml_list_instead_of_mapping(bad, write_experiment):
    path = write_experiment(text="- model: llama-3.1-8b\n- hardware: h100-sxm\n")
    bad("run", path, contains=[str(path), "expected a mapping of experiment fields", "got a list"])


def test_empty_yaml(bad, write_experiment):
    path = write_experiment(text="# nothing here\n")
    bad("run", path, contains=[str(path), "expected a mapping", "empty"])


def test_missing_experiment_file(bad, tmp_path):
    missing = tmp_path / "no-such-experiment.yaml"
    bad("run", missing, contains=["experiment file not found", str(missing)])


def test_binary_experiment_file(bad, tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x80\x81\xfe\xff")
    bad("run", path, contains=[str(path), "not a UTF-8 text file"])


# -- wrong types, unknown and missing fields ----------------------------------------------------------


@pytest.mark.parametrize(
    "changes, expect",
    [
        ({"workload": {"batch_size": "abc"}}, "field 'workload.batch_size' = 'abc': expected a whole number"),
        ({"workload": {"batch_size": 1.5}}, "field 'workload.batch_size' = 1.5: expected a whole number"),
        ({"parallelism": {"tp": True}}, "field 'parallelism.tp' = true: expected a whole number"),
        ({"inference": {"kvcache_fetch_overlap": "maybe"}},
         "field 'inference.kvcache_fetch_overlap' = 'maybe': expected true or false"),
        ({"engine": {"gpu_memory_utilization": "most"}},
         "field 'engine.gpu_memory_utilization' = 'most': expected a number"),
        ({"model": 8}, "field 'model' = 8: expected a string"),
        ({"workload": [1, 2]}, "field 'workload' = [1, 2]: expected a mapping of fields"),
        ({"inference": {"kvcache_type": "ssd"}}, "field 'inference.kvcache_type' = 'ssd': allowed: 'hbm' or 'host'"),
        ({"precision": {"weights": "fp6"}}, "field 'precision.weights' = 'fp6': allowed: 'auto', 'bf16'"),
        ({"workload": {"kind": "poisson"}}, "field 'workload.kind' = 'poisson': allowed: 'static'"),
    ],
)
def test_wrong_type_names_field_value_and_expectation(bad, write_experiment, changes, expect):
    bad("run", write_experiment(**changes), contains=[expect])


def test_enum_errors_list_the_allowed_values(bad, write_experiment):
    line = bad("run", write_experiment(inference={"kvcache_type": "ssd"}))
    assert "'hbm'" in line and "'host'" in line
    line = bad("run", write_experiment(precision={"weights": "fp6"}))
    for allowed in ("'bf16'", "'fp8'", "'int4'", "'mxfp4'"):
        assert allowed in line


def test_unknown_top_level_field_suggests_the_real_one(bad, write_experiment):
    line = bad("run", write_experiment(parallelisms={"tp": 2}),
               contains=["unknown field 'parallelisms'", "did you mean: parallelism?", "allowed:", "workload"])
    assert "parallelism," in line.split("allowed:")[1]


def test_unknown_nested_field_suggests_the_real_one(bad, write_experiment):
    bad("run", write_experiment(workload={"batchsize": 4}),
        contains=["unknown field 'workload.batchsize'", "did you mean: batch_size?",
                  "allowed: batch_size, kind, output_tokens, prompt_tokens"])


def test_several_errors_say_how_many_more(bad, write_experiment):
    bad("run", write_experiment(workload={"batch_size": 0, "prompt_tokens": -1}), contains=["(and 1 more error)"])


@pytest.mark.parametrize("field", ["workload.prompt_tokens", "workload.output_tokens", "model", "hardware"])
def test_missing_required_field(bad, write_experiment, field):
    bad("run", write_experiment(drop=(field,)), contains=[f"missing required field '{field}'"])


def test_missing_workload_section(bad, write_experiment):
    bad("run", write_experiment(drop=("workload",)), contains=["missing required field 'workload'"])


# -- zero and negative sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field, value",
    [
        ({"workload": {"batch_size": 0}}, "workload.batch_size", "0"),
        ({"workload": {"prompt_tokens": -5}}, "workload.prompt_tokens", "-5"),
        ({"workload": {"output_tokens": 0}}, "workload.output_tokens", "0"),
        ({"parallelism": {"tp": 0}}, "parallelism.tp", "0"),
        ({"parallelism": {"pp": -1}}, "parallelism.pp", "-1"),
        ({"parallelism": {"dp": 0}}, "parallelism.dp", "0"),
    ],
)
def test_zero_and_negative_sizes(bad, write_experiment, changes, field, value):
    bad("run", write_experiment(**changes), contains=[f"field '{field}' = {value}: must be greater than 0"])


@pytest.mark.parametrize(
    "changes, expect",
    [
        ({"engine": {"gpu_memory_utilization": 1.5}},
         "field 'engine.gpu_memory_utilization' = 1.5: must be less than or equal to 1"),
        ({"engine": {"gpu_memory_utilization": 0}}, "field 'engine.gpu_memory_utilization' = 0: must be greater than 0"),
        ({"engine": {"decode_sample_steps": -1}},
         "field 'engine.decode_sample_steps' = -1: must be greater than or equal to 0"),
        ({"engine": {"runtime_overhead_gib": -0.5}},
         "field 'engine.runtime_overhead_gib' = -0.5: must be greater than or equal to 0"),
    ],
)
def test_engine_settings_out_of_range(bad, write_experiment, changes, expect):
    bad("run", write_experiment(**changes), contains=[expect])


# -- parallelism that the model cannot take ------------------------------------------------------------


def test_tp_that_does_not_divide_heads_lists_allowed_tp(bad, write_experiment):
    bad("run", write_experiment(parallelism={"tp": 3}),
        contains=["field 'parallelism.tp' = 3", "num_attention_heads = 32", "allowed tp: 1, 2, 4, 8, 16, 32"])


def test_tp_that_does_not_divide_kv_heads(bad, write_experiment):
    # qwen2.5-7b: 28 query heads, 4 KV heads; tp 7 divides 28 but neither divides nor is a multiple of 4
    line = bad("run", write_experiment(model="qwen2.5-7b", parallelism={"tp": 7}),
               contains=["field 'parallelism.tp' = 7", "num_key_value_heads = 4", "allowed tp: 1, 2, 4, 28"])
    assert "7," not in line.split("allowed tp:")[1]


def test_ep_that_does_not_divide_experts(bad, write_experiment):
    bad("run", write_experiment(model="mixtral-8x7b", parallelism={"tp": 2, "dp": 2, "ep": 3}),
        contains=["field 'parallelism.ep' = 3", "8 experts", "mixtral-8x7b", "1, 2, 4"])


def test_ep_larger_than_the_gpus_of_a_stage(bad, write_experiment):
    bad("run", write_experiment(model="mixtral-8x7b", parallelism={"tp": 2, "dp": 2, "ep": 8}),
        contains=["field 'parallelism.ep' = 8", "tp x dp = 4", "allowed ep: 1, 2, 4"])


def test_ep_on_a_dense_model(bad, write_experiment):
    bad("run", write_experiment(parallelism={"tp": 2, "ep": 2}),
        contains=["field 'parallelism.ep' = 2", "llama-3.1-8b", "no experts", "allowed ep: 1"])


def test_pp_above_the_layer_count(bad, write_experiment):
    bad("run", write_experiment(parallelism={"pp": 33}),
        contains=["field 'parallelism.pp' = 33", "num_hidden_layers = 32", "allowed pp: 1 to 32"])


def test_context_above_max_position_embeddings(bad, write_experiment):
    bad("run", write_experiment(workload={"prompt_tokens": 131072, "output_tokens": 16}),
        contains=["workload.prompt_tokens", "workload.output_tokens", "131072 + 16 = 131088",
                  "max_position_embeddings = 131072", "at most 131072"])


def test_context_exactly_at_the_limit_is_allowed(cli, write_experiment):
    # mistral-7b's sliding window keeps this cheap; 32768 is its max_position_embeddings
    r = cli("run", write_experiment(model="mistral-7b", workload={"prompt_tokens": 32760, "output_tokens": 8}),
            "--json")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["workload"]["prompt_tokens"] == 32760


# -- memory and precision --------------------------------------------------------------------------------


def test_model_that_does_not_fit_says_needed_and_available(bad, write_experiment):
    line = bad("run", write_experiment(model="llama-3.1-70b"),
               contains=["llama-3.1-70b", "does not fit", "h100-sxm", "GiB"])
    needed = float(re.search(r"needs ([\d.]+) GiB", line).group(1))
    available = float(re.search(r"([\d.]+) GiB (?:is )?available", line).group(1))
    assert needed > 131  # 70.6e9 bf16 weights alone are 131.4 GiB
    assert available == pytest.approx(79.2 * 0.9, abs=0.1)  # H100 SXM usable at gpu_memory_utilization 0.9
    assert needed > available


def test_same_model_fits_at_tp8(cli, write_experiment):
    r = cli("run", write_experiment(model="llama-3.1-70b", parallelism={"tp": 8}), "--json")
    assert r.rc == 0, r.err
    mem = json.loads(r.out)["memory_per_gpu_bytes"]
    assert mem["weights"] / GIB == pytest.approx(131.4 / 8, rel=0.03)


def test_fp8_kv_cache_on_a_gpu_without_fp8(bad, write_experiment):
    bad("run", write_experiment(hardware="a100-80gb-sxm", inference={"kvcache_precision": "fp8"}),
        contains=["field 'inference.kvcache_precision' = 'fp8'", "a100-80gb-sxm has no fp8",
                  "allowed on a100-80gb-sxm: bf16, fp16"])


def test_fp8_activations_on_a_gpu_without_fp8(bad, write_experiment):
    bad("run", write_experiment(hardware="a100-40gb", precision={"activations": "fp8"},
                                inference={"kvcache_precision": "auto"}),
        contains=["field 'precision.activations' = 'fp8'", "a100-40gb", "allowed on a100-40gb: bf16, fp16"])


# -- --set overrides ---------------------------------------------------------------------------------------


def test_set_without_equals(bad, write_experiment):
    bad("run", write_experiment(), "--set", "workload.batch_size",
        contains=["--set 'workload.batch_size'", "expected path.to.field=value"])


def test_set_with_an_empty_field_name(bad, write_experiment):
    bad("run", write_experiment(), "--set", "workload..batch_size=2", contains=["--set", "empty field name"])


def test_set_unknown_path_suggests_the_real_one(bad, write_experiment):
    bad("run", write_experiment(), "--set", "workload.batchsize=2",
        contains=["unknown field 'workload.batchsize'", "did you mean: batch_size?"])


def test_set_unknown_section(bad, write_experiment):
    bad("run", write_experiment(), "--set", "enigne.mode=analytical",
        contains=["unknown field 'enigne'", "did you mean: engine?"])


def test_set_a_field_under_a_scalar(bad, write_experiment):
    bad("run", write_experiment(), "--set", "model.name=x",
        contains=["--set 'model.name=x'", "'model' is a value, not a section"])


def test_set_value_of_the_wrong_type(bad, write_experiment):
    bad("run", write_experiment(), "--set", "workload.batch_size=lots",
        contains=["field 'workload.batch_size' = 'lots'", "expected a whole number"])


# -- other command-line mistakes -----------------------------------------------------------------------------


def test_out_pointing_at_a_file(bad, write_experiment, tmp_path):
    exp = write_experiment()
    bad("run", exp, "--out", exp, contains=[f"--out {exp}", "is a file", "folder"])


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["simulate"], "invalid choice: 'simulate'"),
        (["run"], "required: experiment"),
        ([], "required: command"),
        (["run", "x.yaml", "--jsn"], "unrecognized arguments: --jsn"),
        (["run", "x.yaml", "--set"], "--set: expected one argument"),
    ],
)
def test_argparse_errors_are_one_line_and_exit_2(bad, argv, expect):
    bad(*argv, contains=[expect, "--help"])


def test_help_exits_0(cli):
    r = cli("--help")
    assert r.rc == 0
    assert "usage: simcore" in r.out and "run" in r.out


# -- one real process: nothing but the one line reaches stderr -------------------------------------------------


def test_subprocess_prints_one_line_and_no_traceback(write_experiment, tmp_path):
    # A config.json with a zero KV-head count used to end in ZeroDivisionError inside the model parser.
    raw = json.loads((REPO / "models" / "llama-3.1-8b.json").read_text())
    raw["num_key_value_heads"] = 0
    config = tmp_path / "zero-kv" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(raw))
    exp = write_experiment(model=str(config))
    proc = subprocess.run([sys.executable, "-m", "simcore", "run", str(exp)], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: field 'model': ")
    assert "field 'num_key_value_heads' = 0" in lines[0]
