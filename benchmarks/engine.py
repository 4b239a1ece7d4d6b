"""Engine speed and behaviour: per-mode wall and CPU time, mode agreement, decode sampling error, overlap policies.

Usage: python benchmarks/engine.py [--full] [--profile]
  --full     also times the unsampled flattened run and the 405B run with every rank (--all-ranks)
  --profile  prints the top cProfile entries of the 405B tp8 pp4 flattened run and stops
CPU time is the figure to compare on a shared machine (wall time includes waiting for a core).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.config.experiment import experiment_from_dict, resolve  # noqa: E402
from simcore.engine.policies import policy_names  # noqa: E402
from simcore.run.static import simulate  # noqa: E402

BASE = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "parallelism": {"tp": 8},
        "workload": {"kind": "static", "batch_size": 64, "prompt_tokens": 2048, "output_tokens": 512}}


def timed(data: dict, **engine):
    exp = experiment_from_dict({**data, "engine": {**data.get("engine", {}), **engine}}, source="benchmark")
    run = resolve(exp)
    t, c = time.perf_counter(), time.process_time()
    res = simulate(run)
    timed.cpu = time.process_time() - c
    return res, time.perf_counter() - t


def static_process() -> tuple[float, float]:
    """(wall, CPU) seconds of `simcore run experiments/llama-3.1-8b-h100.yaml --json` as a whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "simcore", "run", str(ROOT / "experiments/llama-3.1-8b-h100.yaml"), "--json"],
                   check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

def speed(console: Console, full: bool) -> None:
    t = Table(title="Speed on this machine (issue 9 targets: 70B tp8 flattened <= 2 s, 405B tp8 pp4 flattened <= 15 s; "
                    "static 8B run as a whole process <= 0.5 s)", title_justify="left")
    for col in ("case", "mode", "wall s", "CPU s", "events", "events/CPU s", "e2e s", "sampled steps"):
        t.add_column(col, justify="left" if col in ("case", "mode") else "right")
    cases = [("llama-3.1-70b tp8 pp1 b64 2048/512", BASE, m) for m in ("analytical", "hybrid", "flattened")]
    big = {**BASE, "model": "llama-3.1-405b", "parallelism": {"tp": 8, "pp": 4}}
    cases.append(("llama-3.1-405b tp8 pp4 b64 2048/512", big, "flattened"))
    if full:
        cases.append(("llama-3.1-405b tp8 pp4 b64 2048/512 all ranks", {**big, "engine": {"all_ranks": True}},
                      "flattened"))
    for label, data, mode in cases:
        res, wall = timed(data, mode=mode)
        t.add_row(label, mode, f"{wall:.2f}", f"{timed.cpu:.2f}", f"{res.events_simulated:,}",
                  f"{res.events_simulated / timed.cpu:,.0f}", f"{res.e2e:.4f}", str(len(res.sampled_steps)))
    wall, cpu = static_process()
    t.add_row("simcore run llama-3.1-8b-h100.yaml --json (whole process)", "analytical", f"{wall:.2f}", f"{cpu:.2f}",
              "", "", "", "")
    console.print(t)
    s = Table(title="Decode sampling against pricing every step (llama-3.1-70b tp8 b64 2048/512)", title_justify="left")
    for col in ("mode", "sampled e2e s", "every-step e2e s", "error", "sampled wall s", "every-step wall s"):
        s.add_column(col, justify="left" if col == "mode" else "right")
    for mode in ("analytical", "hybrid") + (("flattened",) if full else ()):
        a, wa = timed(BASE, mode=mode)
        b, wb = timed(BASE, mode=mode, decode_sample_steps=0)
        s.add_row(mode, f"{a.e2e:.5f}", f"{b.e2e:.5f}", f"{100 * (a.e2e / b.e2e - 1):+.3f}%", f"{wa:.2f}", f"{wb:.2f}")
    console.print(s)


def agreement(console: Console) -> None:
    t = Table(title="Mode agreement where nothing contends (tp 1, pp 1; llama-3.1-8b b16 1024/128 on h100-sxm)",
              title_justify="left")
    for col in ("policy", "analytical e2e s", "hybrid", "flattened", "max diff"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    data = {**BASE, "model": "llama-3.1-8b", "parallelism": {"tp": 1},
            "workload": {"kind": "static", "batch_size": 16, "prompt_tokens": 1024, "output_tokens": 128}}
    for policy in ("none", "kv_fetch", "all"):
        e = {m: timed(data, mode=m, overlap_policy=policy)[0].e2e for m in ("analytical", "hybrid", "flattened")}
        diff = max(abs(v / e["analytical"] - 1) for v in e.values())
        t.add_row(policy, f"{e['analytical']:.5f}", f"{e['hybrid']:.5f}", f"{e['flattened']:.5f}", f"{100 * diff:.3f}%")
    console.print(t)


def policies(console: Console) -> None:
    t = Table(title="Overlap policies, llama-3.1-70b tp 8 pp 2 (2 micro-batches) on 16 h100-sxm, b64 2048/128",
              title_justify="left")
    for col in ("mode", "policy", "TTFT s", "decode step ms", "e2e s", "tok/s", "vs none"):
        t.add_column(col, justify="left" if col in ("mode", "policy") else "right")
    data = {**BASE, "parallelism": {"tp": 8, "pp": 2},
            "workload": {"kind": "static", "batch_size": 64, "prompt_tokens": 2048, "output_tokens": 128}}
    for mode in ("analytical", "hybrid", "flattened"):
        base = None
        for policy in ["none"] + [p for p in policy_names() if p != "none"]:
            res, _ = timed(data, mode=mode, overlap_policy=policy, decode_sample_steps=4)
            base = base or (res.e2e if policy == "none" else None)
            tok = 64 * 128 / res.e2e
            vs = f"{100 * (res.e2e / base - 1):+.1f}%" if base else ""
            t.add_row(mode, policy, f"{res.ttft:.4f}", f"{res.step_times.mean() * 1e3:.3f}", f"{res.e2e:.4f}",
                      f"{tok:,.0f}", vs)
    console.print(t)


def profile(console: Console) -> None:
    big = {**BASE, "model": "llama-3.1-405b", "parallelism": {"tp": 8, "pp": 4}}
    run = resolve(experiment_from_dict({**big, "engine": {"mode": "flattened"}}, source="benchmark"))
    prof = cProfile.Profile()
    prof.enable()
    simulate(run)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
    console.print("llama-3.1-405b tp8 pp4 flattened, top functions by own time (under cProfile):")
    console.print(out.getvalue(), markup=False, highlight=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="also time the unsampled flattened run and all ranks (slow)")
    ap.add_argument("--profile", action="store_true", help="profile the 405B flattened run and stop")
    args = ap.parse_args()
    console = Console(width=160)
    if args.profile:
        profile(console)
        return
    speed(console, args.full)
    agreement(console)
    policies(console)


if __name__ == "__main__":
    main()
