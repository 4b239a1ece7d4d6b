"""benchmarks/fit_reissue.py: the overrides each candidate runs with, one small fit, and its bad command lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, SILICON_ROWS, load_benchmark

SCRIPT = REPO / "benchmarks" / "fit_reissue.py"
ROWS = SILICON_ROWS


@pytest.fixture(scope="module")
def fr():
    return load_benchmark("fit_reissue")


def test_a_zero_delay_is_the_fixed_client(fr):
    assert fr.overrides(0.04, "exponential") == ("workload.arrival.reissue_delay_s=0.04",
                                                  "workload.arrival.reissue_delay_dist=exponential",
                                                  "workload.arrival.reissue_delay_cv=null")
    # exponential needs a mean above 0: the no-delay candidate runs the fixed client
    assert fr.overrides(0.0, "exponential") == ("workload.arrival.reissue_delay_s=0.0",
                                                 "workload.arrival.reissue_delay_dist=fixed",
                                                 "workload.arrival.reissue_delay_cv=null")
    # the lognormal candidates carry their spread; the no-delay one drops it with the distribution
    assert fr.overrides(0.04, "lognormal", cv=3.0)[1:] == ("workload.arrival.reissue_delay_dist=lognormal",
                                                          "workload.arrival.reissue_delay_cv=3.0")
    assert fr.overrides(0.0, "lognormal", cv=3.0)[1:] == ("workload.arrival.reissue_delay_dist=fixed",
                                                         "workload.arrival.reissue_delay_cv=null")


def test_lognormal_candidates_pair_each_mean_with_each_cv(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--rows", str(ROWS), "--delays", "0.04", "--dist", "lognormal",
                        "--cv", "1,3", "--rounds", "2", "--jobs", "1"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("mean delay  40.0 ms (lognormal, cv 1): TTFT median |error|")
    assert lines[1].startswith("mean delay  40.0 ms (lognormal, cv 3): TTFT median |error|")
    assert lines[2].startswith("best: mean delay 40 ms (lognormal, cv ")


def test_fit_prints_each_candidate_and_the_best(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--rows", str(ROWS), "--delays", "0,0.04", "--rounds", "2",
                        "--jobs", "1"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("mean delay   0.0 ms (none): TTFT median |error|")
    assert lines[1].startswith("mean delay  40.0 ms (exponential): TTFT median |error|")
    # the three aggregated rows and the DeepSeek-V3 disagg row (its load and layout from silicon_disagg.json)
    assert "(4 records)" in lines[0] and lines[2].startswith("best: mean delay ")


def test_frontend_candidates_pair_with_each_delay(fr, tmp_path):
    """Each (delay, frontend loop) pair is one line; the loop's field replaces the rows' own value."""
    assert fr.overrides(0.04, "exponential", 110.0)[-1] == "serving.frontend_token_us=110.0"
    r = subprocess.run([sys.executable, str(SCRIPT), "--rows", str(ROWS), "--delays", "0.04", "--rounds", "2",
                        "--jobs", "1", "--frontend-us", "0,110"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("mean delay  40.0 ms (exponential), frontend 0 us/token: TTFT median |error|")
    assert lines[1].startswith("mean delay  40.0 ms (exponential), frontend 110 us/token: TTFT median |error|")
    assert lines[2].startswith("best: mean delay 40 ms (exponential), frontend ")


def test_client_keeps_the_rows_of_that_benchmark(tmp_path):
    """Every test row runs aiperf's client: the three aggregated rows match no InferenceX configuration, and the
    disagg row, an InferenceX export by its source (silicon_disagg.json), keeps aiperf as disagg exports do."""
    r = subprocess.run([sys.executable, str(SCRIPT), "--rows", str(ROWS), "--delays", "0", "--rounds", "2",
                        "--jobs", "1", "--client", "aiperf"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "(4 records)" in r.stdout


@pytest.mark.parametrize("argv, text", [
    (["--rows", str(ROWS), "--client", "inferencex"],
     "error: --client: inferencex: no selected row was measured with it"),
    (["--delays", "a,b"], "error: --delays: 'a,b': allowed: seconds from 0 to 10"),
    (["--frontend-us", "-5"], "error: --frontend-us: '-5': allowed: microseconds from 0 to 100000"),
    (["--frontend-us", ""], "error: --frontend-us: '': allowed: microseconds from 0 to 100000"),
    (["--delays", "-0.01"], "error: --delays: '-0.01': allowed: seconds from 0 to 10"),
    (["--rows", "missing-rows.json"], "no such file"),
    (["--dist", "lognormal"], "error: --cv: needed with --dist lognormal, and used by it only"),
    (["--cv", "2"], "error: --cv: '2': used by --dist lognormal only (here exponential)"),
    (["--dist", "lognormal", "--cv", "0"], "error: --cv: '0': allowed: ratios from 0.01 to 100, comma separated"),
])
def test_bad_command_lines_are_one_line_errors(argv, text, tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and text in r.stderr and len(r.stderr.strip().splitlines()) == 1
