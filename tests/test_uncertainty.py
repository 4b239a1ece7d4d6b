"""Honest uncertainty: every result says whether its GPU's efficiency profile was measured on it
or borrowed, and the recommender flags borrowed GPUs in the ranked rows themselves."""

from __future__ import annotations

import json

import pytest

from simcore.config.hardware import BORROWED_ERROR_BAND, load_gpu, profile_info
from simcore.planner.recommend import find_gpu_recommendations

MEASURED = {"name": "h100-calibrated", "measured_on": "h100-sxm", "borrowed": False, "error_band": None}
BORROWED = {"name": "h100-calibrated", "measured_on": "h100-sxm", "borrowed": True, "error_band": BORROWED_ERROR_BAND}


def test_profile_info_says_measured_or_borrowed():
    assert profile_info(load_gpu("h100-sxm")) == MEASURED
    assert profile_info(load_gpu("mi300x")) == BORROWED
    assert BORROWED_ERROR_BAND == 0.20  # derived in docs/calibration.md from facts.md §4


@pytest.mark.parametrize("gpu, want", [("h100-sxm", MEASURED), ("mi300x", BORROWED)])
def test_run_summary_and_table_carry_the_profile(cli, write_experiment, gpu, want):
    path = write_experiment(hardware=gpu)
    rc, out, _ = cli("run", str(path), "--json")
    assert rc == 0 and json.loads(out)["efficiency_profile"] == want
    rc, out, _ = cli("run", str(path))
    assert rc == 0 and ("efficiency borrowed from h100-sxm, +/-20%" in out) == want["borrowed"]


def test_plan_json_carries_the_profile(cli):
    rc, out, _ = cli("plan", "--model", "llama-3.1-8b", "--gpu", "l40s", "--json")
    assert rc == 0 and json.loads(out)["efficiency_profile"] == BORROWED


KW = dict(input_len=1024, output_len=64, concurrency=4, max_gpus=2, gpus="h100-sxm,mi300x", workers=1)


def test_recommend_marks_every_option_and_calibrated_only_keeps_measured_gpus():
    rec = find_gpu_recommendations("llama-3.1-8b", **KW)
    assert {o.gpu for o in rec.options} == {"h100-sxm", "mi300x"}
    for o in rec.options + rec.rejected:
        assert o.efficiency_profile == (MEASURED if o.gpu == "h100-sxm" else BORROWED)
    only = find_gpu_recommendations("llama-3.1-8b", calibrated_only=True, **KW)
    assert {o.gpu for o in only.options} == {"h100-sxm"} and only.request["calibrated_only"] is True
    assert only.request["gpus_considered"] == ["h100-sxm"]
    # the measured GPU's rows are the same whether or not the borrowed one was considered
    assert [o.cost_per_million_output_tokens_usd for o in only.options] == [
        o.cost_per_million_output_tokens_usd for o in rec.options if o.gpu == "h100-sxm"]


def test_recommend_table_flags_borrowed_rows_and_a_borrowed_first_rank(cli):
    argv = ["recommend", "--model", "llama-3.1-8b", "--input-len", "1024", "--output-len", "64", "--concurrency", "4",
            "--max-gpus", "2", "--gpus", "h100-sxm,mi300x"]
    rc, out, _ = cli(*argv)
    assert rc == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert rows and all(("BORROWED +/-20%" in r) == ("mi300x" in r) for r in rows)
    assert all("measured" in r for r in rows if "h100-sxm" in r)
    first = rows[0]
    if "mi300x" in first:  # mi300x's spec sheet makes it cheapest on borrowed efficiencies: said next to the table
        assert "#1 (mi300x) is ranked on efficiencies borrowed from h100-sxm" in out
    rc, out, _ = cli(*argv, "--calibrated-only")
    assert rc == 0 and "mi300x" not in out and "BORROWED" not in out


def test_calibrated_only_with_no_measured_gpu_is_a_one_line_error(cli):
    rc, out, err = cli("recommend", "--model", "llama-3.1-8b", "--input-len", "8", "--output-len", "8", "--gpus",
                       "mi300x,l4", "--calibrated-only")
    assert rc == 2 and err.startswith("error: calibrated_only: none of mi300x, l4") and "measured: h100-sxm" in err
    assert err.count("\n") == 1


def test_sweep_rows_say_which_gpus_borrow_their_profile(tmp_path):
    from simcore.sweep import Store, run_sweep, sweep_from_dict
    from simcore.sweep.report import value

    base = {"model": "llama-3.2-1b", "hardware": "h100-sxm", "precision": {"weights": "bf16", "activations": "bf16"},
            "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 64, "output_tokens": 4},
            "engine": {"decode_sample_steps": 2}}
    s = sweep_from_dict({"base": base, "grid": {"hardware": ["h100-sxm", "mi300x"]}}, source="t.yaml")
    run_sweep(s, tmp_path / "r.sqlite", workers=1, progress=False)
    with Store(tmp_path / "r.sqlite") as st:
        rows = st.rows()
    assert [value(r, "efficiency_profile.borrowed") for r in rows] == [False, True]
    assert rows[1].summary["efficiency_profile"] == BORROWED
