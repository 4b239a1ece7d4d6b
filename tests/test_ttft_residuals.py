"""benchmarks/ttft_residuals.py: the grouping and the OSL test on hand-made rows (hand-computed medians),
and its bad command lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, SILICON_ROWS, load_benchmark

SCRIPT = REPO / "benchmarks" / "ttft_residuals.py"
ROWS = SILICON_ROWS


@pytest.fixture(scope="module")
def tr():
    return load_benchmark("ttft_residuals")


def row(engine, tp, osl, c, ttft, ttft_pred, tpot=10.0, tpot_pred=10.0, isl=1024, model="m"):
    return {"engine": engine, "model": model, "precision": "bf16", "version": "?", "tp": tp, "isl": isl,
            "osl": osl, "c": c, "ttft": ttft, "ttft_pred": ttft_pred, "tpot": tpot, "tpot_pred": tpot_pred}


def test_groups_take_medians_of_errors_and_gaps(tr):
    rows = [row("vllm", 2, 128, 8, 100.0, 80.0, tpot_pred=11.0), row("vllm", 2, 512, 8, 200.0, 250.0),
            row("vllm", 2, 1024, 8, 300.0, 240.0, tpot_pred=9.0), row("sglang", 4, 128, 16, 50.0, 40.0)]
    g = tr.grouped(rows, ("engine", "tp"))
    assert [(x["engine"], x["tp"], x["n"]) for x in g] == [("sglang", 4, 1), ("vllm", 2, 3)]
    v = g[1]
    # errors -0.2, +0.25, -0.2 -> -0.2; gaps +20, -50, +60 -> +20; TPOT errors +0.1, 0, -0.1 -> 0
    assert v["error"] == pytest.approx(-0.2) and v["gap_ms"] == pytest.approx(20.0)
    assert v["ttft"] == 200.0 and v["ttft_pred"] == 240.0 and v["tpot_error"] == pytest.approx(0.0)
    assert g[0]["error"] == pytest.approx(-0.2) and g[0]["gap_ms"] == pytest.approx(10.0)
    # absolute errors 0.2, 0.25, 0.2 -> 0.2 (the signed median can hide errors of both signs: here it is -0.2 too);
    # TPOT 0.1, 0, 0.1 -> 0.1 while its signed median is 0
    assert v["abs_error"] == pytest.approx(0.2) and v["tpot_abs_error"] == pytest.approx(0.1)


def test_osl_test_compares_longest_with_shortest_osl(tr):
    rows = [row("trtllm", 1, 128, 8, 100.0, 100.0), row("trtllm", 1, 256, 8, 150.0, 300.0),
            row("trtllm", 1, 512, 8, 200.0, 500.0),  # measured 2.0, predicted 5.0
            row("trtllm", 2, 128, 8, 100.0, 100.0), row("trtllm", 2, 512, 8, 100.0, 300.0),  # 1.0 and 3.0
            row("trtllm", 4, 128, 8, 100.0, 100.0)]  # one OSL only: not a set
    (g,) = tr.osl_growth(rows)
    assert (g["engine"], g["model"], g["sets"]) == ("trtllm", "m", 2)
    assert g["measured"] == pytest.approx(1.5) and g["predicted"] == pytest.approx(4.0)


@pytest.mark.parametrize("argv, text", [
    (["--by", "engine,gpu"], "error: --by: gpu: allowed keys: engine, model"),
    (["--rounds", "0"], "error: --rounds: 0: allowed: 1 or more"),
    (["--rows", "missing-rows.json"], "no such file"),
    (["--rows", str(ROWS), "--set", "workload.arrival.reissue_delay_s=-1"], "'workload.arrival.reissue_delay_s' = -1"),
    (["--rows", str(ROWS), "--set", "nonsense"], "expected path.to.field=value"),
])
def test_bad_command_lines_are_one_line_errors(argv, text, tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and text in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_closed_loop_by_littles_law(tr):
    # 128 clients, OSL 512, TTFT 2,000 ms, TPOT 10 ms, 40 ms re-issue delay: cycle 2.0 + 5.11 + 0.04 = 7.15 s
    m = tr.loop_of(128, 512, 2000.0, 10.0, 40.0)
    x = 128 / 7.15
    assert m["req_s"] == pytest.approx(x) and m["tok_s"] == pytest.approx(512 * x)
    assert m["decoding"] == pytest.approx(x * 5.11) and m["waiting"] == pytest.approx(2.0 * x)
    # 17.9 req/s against one step per 10 ms: a prompt enters 17.9% of the steps
    assert m["prompts_per_step"] == pytest.approx(0.01 * x)
    # decoding + waiting + re-issuing = c
    assert m["decoding"] + m["waiting"] + 0.04 * x == pytest.approx(128)
    # no delay: c 8, OSL 101, TTFT 100 ms, TPOT 9 ms: cycle 1.0 s, 8 req/s, 7.2 decoding, 0.8 waiting
    assert tr.loop_of(8, 101, 100.0, 9.0) == pytest.approx(
        {"req_s": 8.0, "tok_s": 808.0, "decoding": 7.2, "waiting": 0.8, "prompts_per_step": 0.072})


def test_closed_loop_groups_take_medians_measured_and_predicted(tr):
    rows = [{**row("trtllm", 8, 101, 8, 100.0, 100.0, tpot=9.0, tpot_pred=9.0), "delay_ms": 0.0},
            {**row("trtllm", 8, 101, 8, 300.0, 100.0, tpot=7.0, tpot_pred=9.0), "delay_ms": 0.0},
            {**row("trtllm", 8, 101, 8, 500.0, 100.0, tpot=5.0, tpot_pred=9.0), "delay_ms": 0.0}]
    (g,) = tr.loop_grouped(rows, ("engine", "tp"))
    # every measured cycle is 1.0 s (0.1 + 0.9, 0.3 + 0.7, 0.5 + 0.5): 8 req/s; waiting 0.8, 2.4, 4.0 -> 2.4
    assert g["n"] == 3 and g["req_s"] == pytest.approx(8.0) and g["waiting"] == pytest.approx(2.4)
    assert g["decoding"] == pytest.approx(8 * 0.7) and g["prompts_per_step"] == pytest.approx(8 * 0.007)
    assert g["waiting_pred"] == pytest.approx(0.8) and g["decoding_pred"] == pytest.approx(7.2)


def test_tpot_split_solves_step_and_stall_from_two_osls(tr):
    # measured step 10 ms, X 256 ms: TPOT(129) = 10 + 256 / 128 = 12, TPOT(513) = 10 + 256 / 512 = 10.5;
    # predicted step 12, X 512: 12 + 4 = 16 and 12 + 1 = 13; c 5: stall X / 4 = 64 and 128 ms
    rows = [row("trtllm", 4, 129, 5, 1.0, 1.0, tpot=12.0, tpot_pred=16.0),
            row("trtllm", 4, 257, 5, 1.0, 1.0, tpot=99.0, tpot_pred=99.0),  # a middle OSL is not used
            row("trtllm", 4, 513, 5, 1.0, 1.0, tpot=10.5, tpot_pred=13.0),
            row("trtllm", 8, 129, 1, 1.0, 1.0, tpot=11.0, tpot_pred=11.0),  # c 1: no other client, no stall
            row("trtllm", 8, 513, 1, 1.0, 1.0, tpot=11.0, tpot_pred=11.0),
            row("trtllm", 2, 1, 5, 1.0, 1.0), row("trtllm", 2, 513, 5, 1.0, 1.0)]  # OSL 1 has no decode life
    a, b = tr.tpot_split(rows)
    assert (a["tp"], a["osl_lo"], a["osl_hi"]) == (4, 129, 513)
    assert a["step"] == pytest.approx(10.0) and a["stall"] == pytest.approx(64.0)
    assert a["step_pred"] == pytest.approx(12.0) and a["stall_pred"] == pytest.approx(128.0)
    assert b["tp"] == 8 and b["step"] == pytest.approx(11.0) and b["stall"] is None
