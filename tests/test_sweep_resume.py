"""A sweep killed with SIGKILL and restarted with --resume runs only the missing points:
none lost, none run twice. The kill is real: a `python -m simcore sweep` subprocess."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from simcore.sweep import Store, plan, run_sweep, sweep_from_dict

REPO = Path(__file__).resolve().parent.parent

# 40 points of llama-3.1-8b pricing every decode step (decode_sample_steps 0): long enough each
# (about 0.1 to 0.3 s) that the sweep is still running when it is killed.
SLOW = {
    "name": "slow",
    "base": {
        "model": "llama-3.1-8b",
        "hardware": "h100-sxm",
        "precision": {"weights": "bf16", "activations": "bf16"},
        "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 256, "output_tokens": 32},
        "engine": {"decode_sample_steps": 0},
    },
    "grid": {"workload.batch_size": [1, 2, 3, 4, 5, 6, 7, 8], "workload.output_tokens": [30, 35, 40, 45, 50]},
}
POINTS = 40


def rows(db: Path) -> list[tuple]:
    """(key, point, finished_at) of every stored row; the file may not exist yet."""
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("SELECT key, point, finished_at FROM points").fetchall()
    except sqlite3.OperationalError:  # the table is not created yet
        return []
    finally:
        con.close()


def start(sweep: Path, db: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "simcore", "sweep", str(sweep), "--db", str(db), "--workers", "2", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=sweep.parent, start_new_session=True)


def test_sigkill_then_resume_runs_only_the_missing_points(tmp_path):
    sweep = tmp_path / "slow.yaml"
    sweep.write_text(yaml.safe_dump(SLOW))
    db = tmp_path / "slow.sqlite"
    proc = start(sweep, db)
    try:
        deadline = time.monotonic() + 60
        while len(rows(db)) < 2:
            assert proc.poll() is None, f"the sweep ended early: {proc.communicate()}"
            assert time.monotonic() < deadline, "no rows after 60 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        try:  # the pool workers are ours too (same session): end them by their group id
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    before = rows(db)
    assert 2 <= len(before) < POINTS, f"{len(before)} rows at the kill"
    assert len({k for k, _, _ in before}) == len(before)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "simcore", "sweep", str(sweep), "--db", str(db), "--resume", "--workers", "2",
         "--no-progress"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    missing = POINTS - len(before)
    assert f"{POINTS} points, {len(before)} already in {db}, {missing} ran: {missing} ok, 0 failed" in done.stdout

    after = rows(db)
    assert len(after) == POINTS
    assert len({k for k, _, _ in after}) == POINTS  # unique keys
    assert sorted(p for _, p, _ in after) == list(range(POINTS))  # every point once
    assert set(before) <= set(after)  # the rows written before the kill were kept, not rerun
    expected = {t.key for t in plan(sweep_from_dict(SLOW)).tasks}
    assert {k for k, _, _ in after} == expected
    with Store(db) as st:
        assert all(r.status == "ok" and r.summary["workload"]["output_tokens"] == r.overrides["workload.output_tokens"]
                   for r in st.rows())


def test_resume_keeps_failed_points_unless_retry_failed(tmp_path):
    raw = {"name": "f", "base": SLOW["base"] | {"engine": {"decode_sample_steps": 2}},
           "grid": {"workload.batch_size": [1, 100000]}}
    db = tmp_path / "r.sqlite"
    first = run_sweep(sweep_from_dict(raw), db, workers=1, progress=False)
    assert (first.ok, first.failed) == (1, 1)
    again = run_sweep(sweep_from_dict(raw), db, workers=1, resume=True, progress=False)
    assert (again.already, again.ran, again.failed_in_store) == (2, 0, 1)
    retry = run_sweep(sweep_from_dict(raw), db, workers=1, resume=True, retry_failed=True, progress=False)
    assert (retry.already, retry.ran, retry.failed) == (1, 1, 1)
    with Store(db) as st:
        assert st.count() == 2
