"""Issue 16: every defect a hostile tester found is a test. Each once gave a traceback, a hang, a
memory blow-up, or exit 0 with a wrong answer; now each is one 'error: ...' line and exit 2 (or a
correct run). The `bad` fixture (tests/conftest.py) checks that contract.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import BASE_EXPERIMENT

REPO = Path(__file__).resolve().parent.parent

SERVING = {"workload": {"kind": "requests", "requests": 20, "arrival": {"process": "poisson", "rate": 50.0},
                        "prompt_tokens": {"dist": "fixed", "value": 64},
                        "output_tokens": {"dist": "fixed", "value": 8}}}


def serving(write_experiment, drop=(), **workload):
    """A small request-level experiment with `workload` fields replaced (nested dicts replace whole)."""
    data = {**SERVING["workload"], **workload}
    return write_experiment(workload=data, drop=tuple(f"workload.{d}" for d in drop) + ("workload.batch_size",))


def write_config(tmp_path, name="m", base="llama-3.1-8b", **fields) -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    raw = json.loads((REPO / "models" / f"{base}.json").read_text())
    for k, v in fields.items():
        if v is None:
            raw.pop(k, None)
        else:
            raw[k] = v
    (folder / "config.json").write_text(json.dumps(raw))
    return folder / "config.json"


# -- overflow reported as success ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["prompt_tokens", "output_tokens"])
def test_a_huge_fixed_length_is_refused_not_overflowed(bad, write_experiment, field):
    path = serving(write_experiment, **{field: {"dist": "fixed", "value": 10**20}})
    bad("run", path, contains=[f"'workload.{field}.value' = 100000000000000000000", "less than or equal to 16777216"])


@pytest.mark.parametrize("dist", [{"dist": "normal", "mean": float("inf"), "std": 10},
                                  {"dist": "lognormal", "mean": 100, "cv": float("inf")},
                                  {"dist": "normal", "mean": 100, "std": float("nan")}])
def test_non_finite_length_parameters_are_refused(bad, write_experiment, dist):
    bad("run", serving(write_experiment, prompt_tokens=dist), contains=["workload.prompt_tokens", "finite number"])


def test_sampled_lengths_stay_finite_and_bounded():
    from simcore.config.serving import MAX_TOKENS, Lengths
    from simcore.serving.workload import sample_lengths

    rng = np.random.default_rng(0)
    x = sample_lengths(Lengths(dist="lognormal", mean=MAX_TOKENS, cv=100), 10_000, rng, "f")
    assert x.min() >= 1 and x.max() <= MAX_TOKENS  # before: clipped to +inf, cast to int64, negative
    y = sample_lengths(Lengths(dist="normal", mean=10, std=MAX_TOKENS), 10_000, rng, "f")
    assert y.min() >= 1 and y.max() <= MAX_TOKENS


def test_a_length_past_the_models_context_is_an_error(bad, write_experiment):
    path = serving(write_experiment, prompt_tokens={"dist": "fixed", "value": 200_000})
    bad("run", path, contains=["workload.prompt_tokens", "max_position_embeddings = 131072"])


# -- non-finite floats -----------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["engine.kernel_launch_us=.inf", "engine.runtime_overhead_gib=.nan",
                                     "serving.iteration_overhead_us=.inf", "serving.host_tier.capacity_gib=.inf",
                                     "workload.arrival.rate=.nan", "serving.slo.ttft_s=.inf",
                                     "serving.max_time_s=.inf", "workload.sessions.think_time_s=.inf"])
def test_inf_and_nan_are_refused_everywhere(bad, write_experiment, setting):
    path = serving(write_experiment)
    if setting.startswith("engine"):
        path = write_experiment()
    if "host_tier" in setting:
        bad("run", path, "--set", "serving.prefix_caching=true", "--set", "serving.host_tier.enabled=true",
            "--set", setting, contains=[setting.split("=")[0], "finite number"])
        return
    bad("run", path, "--set", setting, contains=[setting.split("=")[0], "finite number"])


def test_a_vanishing_rate_is_refused(bad, write_experiment):
    bad("run", serving(write_experiment, arrival={"process": "poisson", "rate": 1e-320}),
        contains=["workload.arrival.rate", "greater than or equal to 0.000001"])


@pytest.mark.parametrize("where", ["memory.bandwidth_gbps", "memory.capacity_gib", "peak_tflops.bf16"])
@pytest.mark.parametrize("value,says", [(float("inf"), "finite number"), (1e-320, "greater than or equal to 0.001"),
                                        (1e300, "less than or equal to 10000000")])
def test_a_gpu_yaml_with_inf_or_absurd_numbers_is_refused(bad, write_experiment, tmp_path, where, value, says):
    gpu = yaml.safe_load((REPO / "hardware" / "gpus" / "h100-sxm.yaml").read_text())
    section, key = where.split(".")
    gpu[section][key] = value
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(gpu))
    bad("run", write_experiment(hardware=str(path)), contains=[where, says])


# -- unbounded sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["workload.requests=1000000000", "workload.sessions.turns=1000000000",
                                     "workload.shared_prefix={tokens: 10, groups: 1000000000}",
                                     "serving.max_num_seqs=1000000000", "workload.seed=-1",
                                     "workload.seed=100000000000000000000"])
def test_sizes_past_their_bound_are_refused(bad, write_experiment, setting):
    bad("run", serving(write_experiment), "--set", setting, contains=["error: ", "less than or equal" if "=-1" not in
                                                                      setting else "greater than or equal to 0"])


def test_a_million_layers_is_refused(bad, write_experiment, tmp_path):
    config = write_config(tmp_path, num_hidden_layers=1_000_000)
    bad("run", write_experiment(model=str(config)), contains=["num_hidden_layers", "1000000", "at most 1024"])


def test_a_huge_sweep_is_counted_before_it_is_expanded(bad, tmp_path):
    axes = {f"parallelism.{p}": list(range(1, 101)) for p in ("tp", "pp", "dp", "ep")}
    axes["workload.batch_size"] = list(range(1, 101))  # 10^10 points
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": BASE_EXPERIMENT, "grid": axes}))
    bad("sweep", path, "--db", tmp_path / "r.sqlite", contains=["10,000,000,000 points", "at most 10,000",
                                                                  "--max-points"])


def test_max_points_raises_the_limit():
    from simcore.sweep.expand import expand
    from simcore.sweep.spec import sweep_from_dict

    s = sweep_from_dict({"base": BASE_EXPERIMENT, "grid": {"workload.batch_size": [1, 2, 3]}})
    with pytest.raises(Exception, match="expands to 3 points; allowed: at most 2"):
        expand(s, max_points=2)
    assert len(expand(s, max_points=3)) == 3


# -- YAML alias bombs and long values --------------------------------------------------------------

BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
                 + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)])


def test_an_alias_bomb_in_an_experiment_is_refused(bad, write_experiment):
    text = yaml.safe_dump(BASE_EXPERIMENT).replace("name: base", "name: *a8")
    bad("run", write_experiment(text=BOMB.replace("a0:", "x0:") + "\n" + text),
        contains=["malformed YAML", "alias *a", "not allowed"])


def test_an_alias_bomb_through_set_is_refused(bad, write_experiment):
    bad("run", write_experiment(), "--set", "name=[&a [1,1,1,1,1,1,1,1,1], [*a,*a,*a,*a,*a,*a,*a,*a,*a]]",
        contains=["--set", "alias *a"])


@pytest.mark.parametrize("part", ["set", "grid", "points"])
def test_an_alias_bomb_in_a_sweep_is_refused(bad, tmp_path, part):
    body = {"set": "set: {name: *a8}\ngrid: {workload.batch_size: [1]}",
            "grid": "grid: {name: *a8}",
            "points": "points: [{name: *a8}]"}[part]
    path = tmp_path / "s.yaml"
    path.write_text(f"{BOMB}\nbase: {json.dumps(BASE_EXPERIMENT)}\n{body}\n".replace("a0:", "x0:"))
    bad("sweep", path, "--db", tmp_path / "r.sqlite", contains=["alias", "not allowed"])


def test_values_in_errors_are_cut_to_a_few_hundred_characters(bad, write_experiment):
    line = bad("run", write_experiment(name=["x" * 10_000] * 5), contains=["field 'name'", "characters)"])
    assert len(line) < 600


# -- sweep filter expressions ----------------------------------------------------------------------


@pytest.mark.parametrize("expr,says", [("9 ** 9 ** 9", "exponent"), ("'a' * 10 ** 10", "past 10,000 items"),
                                       ("not " * 20_000 + "1", "at most 1,000"), ("2.0 ** 10000 > 1", "exponent"),
                                       ("1 + " * 50_000 + "1", "at most 1,000"),
                                       ("not " * 100 + "1", "nested deeper than 32"),
                                       ("10 ** 400 / 3 > 1", "too large")])
def test_hostile_filter_expressions_are_one_line(bad, tmp_path, expr, says):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": BASE_EXPERIMENT, "grid": {"workload.batch_size": [1]},
                                    "filters": [{"expr": expr}]}, width=10**9))
    line = bad("sweep", path, "--db", tmp_path / "r.sqlite", "--workers", "1", contains=[says])
    assert len(line) < 1100


# -- model config.json -----------------------------------------------------------------------------


@pytest.mark.parametrize("fields,says", [
    ({"sliding_window": -5}, "'sliding_window' = -5: must be an integer >= 1"),
    ({"sliding_window": 4096.5}, "'sliding_window' = 4096.5"),
    ({"tie_word_embeddings": "no"}, "'tie_word_embeddings' = 'no': must be true or false"),
    ({"hidden_size": 4097, "head_dim": None}, "hidden_size = 4097 is not a multiple of num_attention_heads = 32"),
    ({"layer_types": ["full_attention"] * 5}, "'layer_types' has 5 entries; num_hidden_layers = 32"),
    ({"attention_bias": "false"}, "'attention_bias'"),
    ({"architectures": "LlamaForCausalLM"}, "'architectures'"),
])
def test_config_json_fields_are_checked_at_load(bad, write_experiment, tmp_path, fields, says):
    bad("run", write_experiment(model=str(write_config(tmp_path, **fields))), contains=[says])


@pytest.mark.parametrize("field", ["moe_intermediate_size", "n_shared_experts"])
def test_negative_moe_sizes_are_refused(bad, write_experiment, tmp_path, field):
    config = write_config(tmp_path, base="mixtral-8x7b", **{field: -14336})
    bad("run", write_experiment(model=str(config)), contains=[f"'{field}' = -14336"])


def test_deeply_nested_config_json_is_one_line(bad, write_experiment, tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    (folder / "config.json").write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    bad("run", write_experiment(model=str(folder)), contains=["nested too deeply"])


def test_nan_in_config_json_is_refused(bad, write_experiment, tmp_path):
    folder = tmp_path / "nan"
    folder.mkdir()
    (folder / "config.json").write_text((REPO / "models" / "llama-3.1-8b.json").read_text()
                                        .replace('"rms_norm_eps": 1e-05', '"rms_norm_eps": NaN'))
    bad("run", write_experiment(model=str(folder)), contains=["NaN is not a number"])


# -- readers ---------------------------------------------------------------------------------------

TRACE_CSV = "arrival_s,prompt_tokens,output_tokens\n0,100,10\n0.5,200,20\n"


def trace_run(write_experiment, tmp_path, body: bytes | str, name="t.csv"):
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return serving(write_experiment, drop=("requests",), arrival={"process": "trace"}, trace=str(path))


def test_a_non_utf8_trace_is_one_line(bad, write_experiment, tmp_path):
    bad("run", trace_run(write_experiment, tmp_path, TRACE_CSV.encode() + b"\xff\xfe,1,1\n"),
        contains=["not a UTF-8 text file"])


def test_a_non_utf8_lengths_file_is_one_line(bad, write_experiment, tmp_path):
    (tmp_path / "l.csv").write_bytes(b"100\n\xff\n")
    bad("run", serving(write_experiment, prompt_tokens={"dist": "empirical", "path": str(tmp_path / "l.csv")}),
        contains=["not a UTF-8 text file"])


@pytest.mark.parametrize("value", ["10000000000000000000", "1e19"])
def test_a_huge_value_in_a_trace_is_refused(bad, write_experiment, tmp_path, value):
    bad("run", trace_run(write_experiment, tmp_path, TRACE_CSV + f"1,{value},5\n"),
        contains=["t.csv:4", "prompt_tokens", "<= 1.67772e+07"])


def test_a_huge_value_in_a_lengths_file_is_refused(bad, write_experiment, tmp_path):
    (tmp_path / "l.csv").write_text("100\n10000000000000000000\n")
    bad("run", serving(write_experiment, prompt_tokens={"dist": "empirical", "path": str(tmp_path / "l.csv")}),
        contains=["l.csv:2", "<= 16777216"])


def test_a_trace_saved_with_a_bom_runs(cli, write_experiment, tmp_path):
    r = cli("run", trace_run(write_experiment, tmp_path, b"\xef\xbb\xbf" + TRACE_CSV.encode()), "--json")
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    assert (s["workload"]["requests"], s["requests_completed"]) == (2, 2)  # the trace's rows, not the default 1000


def test_a_row_with_an_extra_cell_names_the_line(bad, write_experiment, tmp_path):
    bad("run", trace_run(write_experiment, tmp_path, TRACE_CSV + "1,5,5,7\n"),
        contains=["t.csv:4", "4 cells, but the header names 3 columns"])


def test_a_duplicate_csv_column_is_an_error(bad, write_experiment, tmp_path):
    bad("run", trace_run(write_experiment, tmp_path, "arrival_s,prompt_tokens,output_tokens,prompt_tokens\n0,1,1,2\n"),
        contains=["column 'prompt_tokens' appears twice"])


def test_jsonl_booleans_are_not_numbers(bad, write_experiment, tmp_path):
    body = '{"arrival_s": 0, "prompt_tokens": true, "output_tokens": 5}\n'
    bad("run", trace_run(write_experiment, tmp_path, body, "t.jsonl"), contains=["'prompt_tokens' = True"])


def test_deeply_nested_jsonl_is_one_line(bad, write_experiment, tmp_path):
    bad("run", trace_run(write_experiment, tmp_path, "[" * 50_000 + "]" * 50_000, "t.jsonl"),
        contains=["t.jsonl:1", "nested too deeply"])


def test_deeply_nested_yaml_is_one_line(bad, write_experiment):
    bad("run", write_experiment(text="name: " + "[" * 5000 + "]" * 5000 + "\n"), contains=["nested deeper than 32"])


def test_duplicate_yaml_keys_are_an_error(bad, write_experiment):
    text = yaml.safe_dump(BASE_EXPERIMENT) + "model: qwen3-32b\n"
    bad("run", write_experiment(text=text), contains=["duplicate key 'model'", "line"])


# -- paths -----------------------------------------------------------------------------------------


def test_a_model_folder_beside_the_experiment_is_a_path_not_a_name(cli, tmp_path, monkeypatch):
    write_config(tmp_path, name="llama-3.1-8b")  # a folder named like a catalog entry, holding a changed copy
    raw = json.loads((tmp_path / "llama-3.1-8b" / "config.json").read_text())
    raw["num_hidden_layers"] = 16
    (tmp_path / "llama-3.1-8b" / "config.json").write_text(json.dumps(raw))
    (tmp_path / "e.yaml").write_text(yaml.safe_dump({**BASE_EXPERIMENT, "model": "./llama-3.1-8b"}))
    monkeypatch.chdir(tmp_path)
    mine, catalog = (json.loads(cli("run", "e.yaml", "--json", *a).out) for a in ([], ["--set", "model=llama-3.1-8b"]))
    assert mine["memory_per_gpu_bytes"]["weights"] < 0.6 * catalog["memory_per_gpu_bytes"]["weights"]


def test_trace_and_lengths_paths_are_relative_to_the_experiment(cli, tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "t.csv").write_text(TRACE_CSV)
    (folder / "l.csv").write_text("length\n50\n60\n")
    w = {**SERVING["workload"], "arrival": {"process": "trace"}, "trace": "t.csv"}
    del w["requests"]
    (folder / "a.yaml").write_text(yaml.safe_dump({**BASE_EXPERIMENT, "workload": w}))
    w2 = {**SERVING["workload"], "prompt_tokens": {"dist": "empirical", "path": "l.csv"}}
    (folder / "b.yaml").write_text(yaml.safe_dump({**BASE_EXPERIMENT, "workload": w2}))
    monkeypatch.chdir(tmp_path)  # not the experiment's folder
    for name in ("a.yaml", "b.yaml"):
        r = cli("run", folder / name, "--json")
        assert r.rc == 0, r.err
    assert json.loads(r.out)["requests_completed"] == 20


def test_trace_path_is_checked_before_the_simulation(bad, write_experiment, tmp_path):
    bad("run", write_experiment(), "--trace", tmp_path / "nowhere" / "t.json",
        contains=["--trace", "folder", "does not exist"])
    bad("run", serving(write_experiment), "--trace", tmp_path / "nowhere" / "t.json",
        contains=["--trace", "does not exist"])


def test_a_folder_given_as_the_experiment_says_so(bad, tmp_path):
    bad("run", tmp_path, contains=["is a folder; give an experiment YAML file"])


# -- silently ignored input ------------------------------------------------------------------------


def test_a_trace_without_process_trace_is_an_error(bad, write_experiment, tmp_path):
    (tmp_path / "t.csv").write_text(TRACE_CSV)
    bad("run", serving(write_experiment, trace=str(tmp_path / "t.csv")),
        contains=["workload.trace is given but arrival.process is poisson"])


def test_a_serving_section_in_a_static_run_is_an_error(bad, write_experiment):
    bad("run", write_experiment(serving={"scheduler": "bogus"}), contains=["field 'serving'", "static"])


def test_mean_with_dist_fixed_is_an_error(bad, write_experiment):
    bad("run", serving(write_experiment, prompt_tokens={"dist": "fixed", "value": 100, "mean": 500}),
        contains=["mean is not used by dist fixed"])


def test_min_above_max_is_an_error(bad, write_experiment):
    bad("run", serving(write_experiment, prompt_tokens={"dist": "normal", "mean": 100, "std": 5, "min": 500,
                                                        "max": 10}), contains=["min 500 > max 10"])


def test_rate_for_a_closed_loop_is_an_error(bad, write_experiment):
    bad("run", serving(write_experiment, arrival={"process": "closed", "concurrency": 4, "rate": 3.0}),
        contains=["rate is not used by process closed"])


def test_simcore_catalog_at_an_empty_folder_is_an_error(bad, write_experiment, tmp_path, monkeypatch):
    from simcore.config.catalog import catalog_root

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SIMCORE_CATALOG", str(empty))
    catalog_root.cache_clear()
    try:
        bad("models", contains=["SIMCORE_CATALOG", "not a simcore catalog"])  # before: the built-in catalog
    finally:
        monkeypatch.delenv("SIMCORE_CATALOG")
        catalog_root.cache_clear()


# -- sweeps over serving fields --------------------------------------------------------------------


def test_serving_fields_sweep_and_report_percentiles(cli, tmp_path):
    base = {**BASE_EXPERIMENT, "workload": {**SERVING["workload"], "requests": 10,
                                            "arrival": {"process": "closed", "concurrency": 2}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "srv", "base": base, "grid": {
        "workload.arrival.concurrency": [1, 4], "workload.requests": [8, 12]},
        "points": [{"workload.requests": 6}]}))
    db = tmp_path / "r.sqlite"
    r = cli("sweep", path, "--db", db, "--workers", "1")
    assert r.rc == 0, r.err
    assert "5 points" in r.out and "5 ok" in r.out
    rep = cli("sweep", "report", db)
    assert rep.rc == 0, rep.err
    for column in ("ttft_s.p50", "ttft_s.p99", "tpot_s.p90", "e2e_s.p99"):
        assert column in rep.out
    assert "{'" not in rep.out and "'mean'" not in rep.out  # no Python dict reprs in cells


def test_check_path_knows_the_fields_of_every_workload_kind():
    from simcore.sweep.spec import check_path

    for path in ("workload.arrival.concurrency", "workload.arrival.rate", "workload.requests",
                 "workload.prompt_tokens", "workload.prompt_tokens.mean", "workload.batch_size"):
        check_path(path, "test")  # no error
    with pytest.raises(Exception, match="unknown field 'workload.arrival.bogus'"):
        check_path("workload.arrival.bogus", "test")


# -- progress bars only on a terminal --------------------------------------------------------------


def test_recommend_draws_no_progress_off_a_terminal(cli, monkeypatch):
    import simcore.planner.cli as pc

    monkeypatch.setattr(pc, "PROGRESS_AFTER_S", 0.0)  # as if the search ran long on a loaded machine
    r = cli("recommend", "--model", "llama-3.2-1b", "--input-len", "128", "--output-len", "16", "--gpus", "h100-sxm",
            "--max-gpus", "2")
    assert r.rc == 0, r.err
    assert r.err == ""


def test_sweep_draws_no_progress_off_a_terminal(tmp_path):
    import io

    from rich.console import Console

    from simcore.sweep.run import run_sweep
    from simcore.sweep.spec import sweep_from_dict

    buf = io.StringIO()
    s = sweep_from_dict({"name": "p", "base": BASE_EXPERIMENT, "grid": {"workload.batch_size": [1, 2]}})
    run_sweep(s, tmp_path / "r.sqlite", workers=1, progress=True, console=Console(file=buf))
    assert buf.getvalue() == ""


# -- the last-resort handler -----------------------------------------------------------------------


def test_an_unexpected_exception_is_one_line_naming_the_command(cli, write_experiment, monkeypatch):
    import simcore.runner

    def broken(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(simcore.runner, "run", broken)
    r = cli("run", write_experiment())
    assert r.rc == 1 and r.out == ""
    (line,) = r.err.splitlines()
    assert line.startswith("error: simcore run: internal error (ZeroDivisionError: boom)") and "--debug" in line
    from simcore.cli import main

    for argv in (["--debug", "run", str(write_experiment())], ["run", str(write_experiment()), "--debug"]):
        with pytest.raises(ZeroDivisionError):
            main(argv)


def test_shipped_experiments_still_load():
    from simcore.config.experiment import load_experiment, resolve

    for path in sorted((REPO / "experiments").rglob("*.yaml")):
        if path.parent.name != "sweeps":
            resolve(load_experiment(path))
    from simcore.sweep.expand import plan
    from simcore.sweep.spec import load_sweep

    for path in sorted((REPO / "experiments" / "sweeps").glob("*.yaml")):
        assert not plan(load_sweep(path)).invalid, path


def test_hardware_paths_are_relative_to_the_experiment(cli, tmp_path, monkeypatch):
    folder = tmp_path / "e"
    (folder / "gpus").mkdir(parents=True)
    shutil.copy(REPO / "hardware" / "gpus" / "h100-sxm.yaml", folder / "gpus" / "h100-sxm.yaml")
    (folder / "x.yaml").write_text(yaml.safe_dump({**BASE_EXPERIMENT, "hardware": "gpus/h100-sxm.yaml"}))
    monkeypatch.chdir(tmp_path)
    r = cli("run", folder / "x.yaml", "--json")
    assert r.rc == 0, r.err


def test_a_folder_given_as_a_sweep_or_results_file_says_so(bad, tmp_path):
    bad("sweep", tmp_path, contains=["is a folder; give a sweep YAML file"])
    bad("sweep", "report", tmp_path, contains=["is a folder; give a results file"])


def test_a_path_too_long_for_the_system_is_one_line(bad, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "a" * 5000, "grid": {"workload.batch_size": [1]}}))
    bad("sweep", path, "--db", tmp_path / "r.sqlite", contains=["File name too long"])
    bad("run", "b" * 5000, contains=["File name too long"])
