"""Sweeps: expansion (grid, zip, points), filters, per-point validation, the store, the report."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import yaml

from simcore.errors import SimcoreError
from simcore.sweep import Store, expand, pareto_front, plan, point_key, run_sweep, sweep_from_dict
from simcore.cli import main
from simcore.sweep.spec import load_sweep
from simcore.sweep.store import Row

REPO = Path(__file__).resolve().parent.parent
BASE = {
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "precision": {"weights": "bf16", "activations": "bf16"},
    "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 128, "output_tokens": 8},
    "engine": {"decode_sample_steps": 2},
}


def sweep(**fields):
    return sweep_from_dict({"base": BASE, **fields}, source="test.yaml")


def sweep_file(tmp_path, text_or_data, name="s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text_or_data if isinstance(text_or_data, str) else yaml.safe_dump(text_or_data, sort_keys=False))
    return path


def cli(capsys, *argv):
    capsys.readouterr()
    rc = main(["sweep", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- expansion ---------------------------------------------------------------------------------

def test_grid_is_the_product_in_order_last_axis_fastest():
    pts = expand(sweep(grid={"workload.batch_size": [1, 8], "inference.kvcache_precision": ["bf16", "fp8", "auto"]}))
    assert [p.index for p in pts] == list(range(6))
    assert [p.overrides for p in pts] == [
        {"workload.batch_size": b, "inference.kvcache_precision": k} for b in (1, 8) for k in ("bf16", "fp8", "auto")
    ]


def test_zipped_axes_pair_up_and_cross_the_grid_then_points_are_appended():
    s = sweep(grid={"workload.batch_size": [1, 2]},
              zip={"workload.prompt_tokens": [64, 256, 1024], "workload.output_tokens": [4, 8, 16]},
              points=[{"parallelism.tp": 2}])
    pts = expand(s)
    assert len(pts) == 2 * 3 + 1
    pairs = [(p.overrides["workload.prompt_tokens"], p.overrides["workload.output_tokens"]) for p in pts[:6]]
    assert pairs == [(64, 4), (256, 8), (1024, 16)] * 2
    assert [p.overrides["workload.batch_size"] for p in pts[:6]] == [1, 1, 1, 2, 2, 2]
    assert pts[6].overrides == {"parallelism.tp": 2} and pts[6].index == 6


def test_two_zip_groups_cross_each_other():
    s = sweep(zip=[{"workload.batch_size": [1, 2]}, {"workload.prompt_tokens": [64, 128], "workload.output_tokens": [4, 8]}])
    got = [tuple(p.overrides.values()) for p in expand(s)]
    assert got == [(1, 64, 4), (1, 128, 8), (2, 64, 4), (2, 128, 8)]


def test_set_applies_to_every_point_and_keys_follow_the_resolved_experiment():
    p = plan(sweep(set={"engine.decode_sample_steps": 4}, grid={"workload.batch_size": [1, 2, 1]}))
    assert len(p.tasks) == 2 and p.duplicates == 1  # batch 1 twice: the same experiment, run once
    assert all(t.experiment["engine"]["decode_sample_steps"] == 4 for t in p.tasks)
    assert [t.experiment["workload"]["batch_size"] for t in p.tasks] == [1, 2]
    assert p.tasks[0].key == point_key(p.tasks[0].experiment)
    assert point_key(p.tasks[0].experiment, "9.9.9") != p.tasks[0].key  # the version is part of the key
    # a default written out is the same experiment: the key hashes the validated model_dump
    explicit = plan(sweep(points=[{"workload.batch_size": 1, "engine.decode_sample_steps": 4, "parallelism.dp": 1}]))
    assert explicit.tasks[0].key == p.tasks[0].key


# -- filters and validation --------------------------------------------------------------------

def test_filters_drop_points_and_count_reasons():
    s = sweep(grid={"parallelism.tp": [1, 2, 3, 4, 5, 8], "workload.batch_size": [1, 2]},
              filters=["allowed_tp", {"expr": "gpus * workload.batch_size <= 8", "reason": "over 8 seqs x gpus"}])
    p = plan(s)
    kept = sorted((t.experiment["parallelism"]["tp"], t.experiment["workload"]["batch_size"]) for t in p.tasks)
    assert kept == [(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1)]
    assert p.filtered == {
        "allowed_tp: tp 3 does not split the heads of llama-3.1-8b (allowed: 1, 2, 4, 8, 16, 32)": 2,
        "allowed_tp: tp 5 does not split the heads of llama-3.1-8b (allowed: 1, 2, 4, 8, 16, 32)": 2,
        "over 8 seqs x gpus": 1,
    }
    assert p.expanded == 12 and not p.invalid


def test_valid_and_fits_filters_count_by_field():
    s = sweep(grid={"parallelism.tp": [1, 3], "inference.kvcache_precision": ["bf16", "fp9"]},
              points=[{"workload.batch_size": 4096, "workload.prompt_tokens": 8192}], filters=["valid", "fits"])
    p = plan(s)
    assert [t.experiment["parallelism"]["tp"] for t in p.tasks] == [1]
    assert p.filtered == {"valid: inference.kvcache_precision": 2, "valid: parallelism.tp": 1,
                          "fits: does not fit in GPU memory": 1}


def test_a_bad_point_is_reported_with_its_field_and_the_others_run(tmp_path):
    s = sweep(grid={"parallelism.tp": [1, 3, 2], "workload.batch_size": [1]})
    r = run_sweep(s, tmp_path / "r.sqlite", workers=1, progress=False)
    assert (r.invalid, r.ran, r.ok, r.failed, r.failed_in_store) == (1, 2, 2, 0, 1)
    assert len(r.failures) == 1
    line = r.failures[0]
    assert line.startswith("point 1 (parallelism.tp=3")
    assert "field 'parallelism.tp' = 3" in line and "allowed tp: 1, 2, 4, 8, 16, 32" in line
    with Store(tmp_path / "r.sqlite") as st:
        rows = st.rows()
    assert [(x.point, x.status) for x in rows] == [(0, "ok"), (1, "failed"), (2, "ok")]
    assert rows[1].error == line and rows[1].summary is None
    assert rows[0].summary["parallelism"]["tp"] == 1 and rows[2].summary["parallelism"]["tp"] == 2
    assert rows[2].summary["output_tokens_per_s"] > 0


def test_a_point_failing_at_run_time_is_a_failed_row_and_the_sweep_goes_on(tmp_path, capsys):
    path = sweep_file(tmp_path, {"base": BASE, "grid": {"workload.batch_size": [1, 100000]}})
    rc, out, err = cli(capsys, path, "--db", tmp_path / "r.sqlite", "--workers", 1, "--no-progress")
    assert rc == 1  # some point failed
    assert "2 points, 2 ran: 1 ok, 1 failed" in out
    assert "failed: point 1 (workload.batch_size=100000): llama-3.1-8b does not fit" in err
    with Store(tmp_path / "r.sqlite") as st:
        assert [x.status for x in st.rows()] == ["ok", "failed"]


# -- bad sweep files ---------------------------------------------------------------------------

@pytest.mark.parametrize("data, pieces", [
    ({"base": BASE, "grid": {"workload.batch": [1, 2]}}, ["grid: unknown field 'workload.batch'", "workload.batch_size"]),
    ({"base": BASE, "grid": {}}, ["grid: no axes"]),
    ({"base": BASE}, ["no axes: give at least one of grid, zip or points"]),
    ({"base": BASE, "grid": {"workload.batch_size": []}}, ["axis 'workload.batch_size' has no values"]),
    ({"base": BASE, "grid": {"workload.batch_size": 4}}, ["expected a list of values, got a number"]),
    ({"base": BASE, "zip": {"workload.prompt_tokens": [1, 2], "workload.output_tokens": [1]}},
     ["zipped axes must have equal lengths", "'workload.prompt_tokens' has 2", "'workload.output_tokens' has 1"]),
    ({"base": BASE, "grid": {"workload": [1]}}, ["'workload' is a section"]),
    ({"base": BASE, "grid": {"workload.batch_size.x": [1]}}, ["'workload.batch_size' is a value, not a section"]),
    ({"base": BASE, "grid": {"workload.batch_size": [1]}, "zip": {"workload.batch_size": [2]}},
     ["'workload.batch_size' is given twice (grid and zip[0])"]),
    ({"base": BASE, "grids": {"workload.batch_size": [1]}}, ["unknown field 'grids' (did you mean: grid?)"]),
    ({"grid": {"workload.batch_size": [1]}}, ["missing required field 'base'"]),
    ({"base": "nope.yaml", "grid": {"workload.batch_size": [1]}}, ["base: experiment file not found: nope.yaml"]),
    ({"base": BASE, "grid": {"workload.batch_size": [1]}, "filters": ["fit"]}, ["unknown filter 'fit' (did you mean: fits?)"]),
    ({"base": BASE, "grid": {"workload.batch_size": [1]}, "filters": [{"expr": "__import__('os')"}]}, ["Call is not allowed"]),
    ({"base": BASE, "grid": {"workload.batch_size": [1]}, "filters": [{"expr": "parallelism.tpp > 1"}]},
     ["unknown field 'parallelism.tpp'"]),
    ("grid: [unclosed\n", ["malformed YAML at line"]),
    ("- just\n- a list\n", ["expected a mapping of sweep fields", "got a list"]),
])
def test_bad_sweep_files_give_one_line_errors(tmp_path, capsys, data, pieces):
    path = sweep_file(tmp_path, data)
    with pytest.raises(SimcoreError):
        load_sweep(path)
    rc, out, err = cli(capsys, path, "--db", tmp_path / "r.sqlite")
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for piece in pieces:
        assert piece in lines[0]
    assert not (tmp_path / "r.sqlite").exists()  # nothing ran, nothing was created


def test_every_point_filtered_is_an_error():
    with pytest.raises(SimcoreError, match="every point was filtered out"):
        plan(sweep(grid={"parallelism.tp": [3, 5]}, filters=["allowed_tp"]))


def test_existing_results_need_resume_and_the_same_sweep(tmp_path, capsys):
    path = sweep_file(tmp_path, {"name": "a", "base": BASE, "grid": {"workload.batch_size": [1, 2]}})
    db = tmp_path / "r.sqlite"
    assert cli(capsys, path, "--db", db, "--workers", 1, "--no-progress")[0] == 0
    rc, out, err = cli(capsys, path, "--db", db)
    assert rc == 2 and "already holds 2 points of sweep 'a'; pass --resume" in err and len(err.splitlines()) == 1
    rc, out, err = cli(capsys, path, "--db", db, "--resume", "--no-progress")
    assert rc == 0 and "2 already in" in out and "0 ran" in out
    other = sweep_file(tmp_path, {"name": "b", "base": BASE, "grid": {"workload.batch_size": [1]}}, "b.yaml")
    rc, out, err = cli(capsys, other, "--db", db, "--resume")
    assert rc == 2 and "holds sweep 'a', not 'b'" in err


def test_ray_missing_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, installed or not
    path = sweep_file(tmp_path, {"base": BASE, "grid": {"workload.batch_size": [1]}})
    rc, out, err = cli(capsys, path, "--db", tmp_path / "r.sqlite", "--executor", "ray")
    assert rc == 2 and err == "error: --executor ray: Ray is not installed; install it with pip install 'simcore[ray]'\n"


# -- store ---------------------------------------------------------------------------------------

def test_store_round_trips_rows_and_replaces_by_key(tmp_path):
    row = Row("k1", "s", 3, {"workload.batch_size": 8}, {"model": "m"}, "ok", None, {"ttft_s": 0.5, "x": {"y": 1}},
              "0.1.0", 0.25, 1700000000.0)
    with Store(tmp_path / "r.sqlite") as st:
        st.put(row)
        st.put(Row("k0", "s", 1, {}, {}, "failed", "boom", None, "0.1.0", None, 1.0))
        st.set_meta(sweep="s", axes=["workload.batch_size"])
    with Store(tmp_path / "r.sqlite", create=False) as st:
        assert st.rows() == [Row("k0", "s", 1, {}, {}, "failed", "boom", None, "0.1.0", None, 1.0), row]
        assert st.meta() == {"sweep": "s", "axes": ["workload.batch_size"]}
        st.put(Row("k0", "s", 1, {}, {}, "ok", None, {}, "0.1.0", 0.1, 2.0))  # a retried point replaces its row
        assert st.count() == 2 and st.statuses() == {"k0": "ok", "k1": "ok"}
        assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_report_of_a_missing_or_foreign_file_is_an_error(tmp_path, capsys):
    rc, _, err = cli(capsys, "report", tmp_path / "none.sqlite")
    assert rc == 2 and "results file not found" in err
    (tmp_path / "x.sqlite").write_text("not a database")
    rc, _, err = cli(capsys, "report", tmp_path / "x.sqlite")
    assert rc == 2 and "cannot open as a sweep results file" in err and len(err.splitlines()) == 1


# -- report --------------------------------------------------------------------------------------

def test_pareto_front_of_a_hand_made_set():
    pts = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (0.5, 0.5), (2.0, 3.0), (1.5, 4.0), (2.5, 1.0)]
    # maximize x and y: (3,2) and (1.5,4) and both copies of (2,3) are not beaten; the rest are
    assert pareto_front(pts, (True, True)) == [1, 2, 4, 5]
    # maximize x, minimize y: (3,2), (2.5,1), (0.5,0.5) and nothing else
    assert pareto_front(pts, (True, False)) == [2, 3, 6]
    # minimize both: (0.5,0.5) beats everything
    assert pareto_front(pts, (False, False)) == [3]


def test_example_sweep_runs_and_reports_csv_plots_and_pareto(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    rc, out, err = cli(capsys, REPO / "experiments/sweeps/batch-kv-8b.yaml", "--db", db, "--workers", 2)
    assert rc == 0, err
    assert out.strip() == f"sweep 'batch-kv-8b': 10 points, 3 filtered, 7 ran: 7 ok, 0 failed; results in {db}"
    assert "filtered: 3 x fits: does not fit in GPU memory" in err

    csv_path, png = tmp_path / "o.csv", tmp_path / "p.png"
    rc, out, err = cli(capsys, "report", db, "--csv", csv_path, "--pareto", "output_tokens_per_s_per_gpu,decode_step_s.mean",
                       "--plot", png)
    assert rc == 0, err
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 7  # one row per point
    assert [(int(r["workload.batch_size"]), r["inference.kvcache_precision"]) for r in rows] == [
        (1, "bf16"), (1, "fp8"), (8, "bf16"), (8, "fp8"), (32, "bf16"), (32, "fp8"), (128, "fp8")]
    with Store(db) as st:
        summaries = {r.point: r.summary for r in st.rows()}
    for r in rows:
        s = summaries[int(r["point"])]
        assert float(r["e2e_s"]) == s["e2e_s"]
        assert float(r["memory_per_gpu_bytes.total"]) == s["memory_per_gpu_bytes"]["total"]
    # the frontier recomputed by hand from the CSV: no other point has more throughput and a shorter step
    tput = {r["point"]: float(r["output_tokens_per_s_per_gpu"]) for r in rows}
    step = {r["point"]: float(r["decode_step_s.mean"]) for r in rows}
    expect = {p for p in tput if not any(tput[q] >= tput[p] and step[q] <= step[p] and (tput[q], step[q]) != (tput[p], step[p])
                                         for q in tput)}
    assert {r["point"] for r in rows if r["pareto"] == "true"} == expect
    assert expect == {"1", "3", "5", "7"}  # fp8 cache: fewer bytes per step at every batch size
    assert "Pareto frontier of output_tokens_per_s_per_gpu (max) and decode_step_s.mean (min): 4 points" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    lines = tmp_path / "l.png"
    rc, out, err = cli(capsys, "report", db, "--x", "workload.batch_size", "--y", "output_tokens_per_s",
                       "--hue", "inference.kvcache_precision", "--plot", lines)
    assert rc == 0, err
    assert lines.stat().st_size > 10_000 and "output_tokens_per_s" in out

    rc, out, err = cli(capsys, "report", db, "--y", "output_tokens_per_sec")
    assert rc == 2 and out == ""
    assert err.startswith("error: --y 'output_tokens_per_sec': unknown metric (did you mean: output_tokens_per_s,")
    rc, out, err = cli(capsys, "report", db, "--x", "workload.batchsize", "--y", "e2e_s", "--plot", lines)
    assert rc == 2 and "did you mean: workload.batch_size" in err and out == ""
    rc, out, err = cli(capsys, "report", db, "--workers", 2)
    assert rc == 2 and "--workers: options for running a sweep" in err


def test_parallelism_sweep_keeps_the_16_gpu_splits_that_fit():
    p = plan(load_sweep(REPO / "experiments/sweeps/parallelism-405b.yaml"))
    splits = [(t.experiment["parallelism"]["tp"], t.experiment["parallelism"]["pp"]) for t in p.tasks]
    assert splits == [(2, 8), (4, 4), (8, 2), (16, 1)]
    assert p.filtered == {"not 16 GPUs": 20, "fits: does not fit in GPU memory": 1}  # tp 1 pp 16 does not fit



def test_axis_values_keep_their_type_exponent_floats_included(tmp_path):
    """Axis values are set as they are, not printed and parsed back (YAML reads '1e-05' as a string)."""
    from simcore.sweep.expand import check

    path = tmp_path / "s.yaml"
    path.write_text(
        "name: floats\nbase: " + str(Path(__file__).parent.parent / "experiments" / "llama-3.1-8b-h100.yaml") + "\n"
        "grid:\n  engine.kernel_launch_us: [1.0e-05, 5.0]\n")
    sweep = load_sweep(path)
    for point in expand(sweep):
        drop, data, error = check(sweep, point)
        assert error is None and data["engine"]["kernel_launch_us"] == point.overrides["engine.kernel_launch_us"]


def test_request_stream_fields_are_sweep_paths():
    """`workload` dispatches on its kind: request-stream fields are axes too, static ones stay values."""
    from simcore.sweep.spec import check_path

    check_path("workload.arrival.concurrency", "grid")
    check_path("workload.prompt_tokens.value", "grid")
    check_path("workload.prompt_tokens", "grid")  # a static batch's prompt length (an int)
    check_path("speculative.k", "grid")
    with pytest.raises(SimcoreError, match="unknown field 'workload.arrival.concurency'"):
        check_path("workload.arrival.concurency", "grid")


def test_speculative_sweep_example_plans():
    p = plan(load_sweep(REPO / "experiments/sweeps/speculative-concurrency.yaml"))
    points = [(t.experiment["speculative"]["k"], t.experiment["workload"]["arrival"]["concurrency"]) for t in p.tasks]
    assert points == [(k, c) for k in (0, 4) for c in (1, 8, 32, 64, 128, 256, 512)]
