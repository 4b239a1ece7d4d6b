"""Training steps in the engine: per-mode wall time, mode agreement, overlap policies and schedules.

Usage: python benchmarks/training_engine.py [--full]
  --full adds the flattened run of one 405B replica (TP 8 x PP 16 = 128 ranks; one simulated per TP group, seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.config.experiment import experiment_from_dict, resolve  # noqa: E402
from simcore.run.training import simulate  # noqa: E402

L70 = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "parallelism": {"tp": 8, "pp": 4, "dp": 2},
       "workload": {"kind": "training", "global_batch": 32, "sequence_length": 4096, "sequence_parallel": True,
                    "recompute": "selective", "zero_stage": 1}}
L405 = {"model": "llama-3.1-405b", "hardware": "h100-sxm", "parallelism": {"tp": 8, "pp": 16, "dp": 128},
        "workload": {"kind": "training", "global_batch": 2048, "sequence_length": 8192, "sequence_parallel": True,
                     "recompute": "full", "zero_stage": 1, "schedule": "interleaved", "virtual_stages": 2}}


def timed(data: dict, engine: dict | None = None, **workload):
    exp = experiment_from_dict({**data, "workload": {**data["workload"], **workload}, "engine": engine or {}},
                               source="benchmark")
    run = resolve(exp)
    t = time.perf_counter()
    res = simulate(run)
    return res, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    console = Console()

    t = Table(title="Speed (issue targets: 405B on 16,384 GPUs analytical < 1 s; one replica flattened < 60 s)",
              title_justify="left")
    for col in ("case", "mode", "wall s", "events", "step s", "MFU"):
        t.add_column(col, justify="left" if col in ("case", "mode") else "right")
    cases = [("70B tp8 pp4 dp2, 16 mb", L70, "analytical"), ("70B tp8 pp4 dp2, 16 mb", L70, "hybrid"),
             ("70B tp8 pp4 dp2, 16 mb", L70, "flattened"), ("405B tp8 pp16 dp128 v2, 16 mb", L405, "analytical"),
             ("405B tp8 pp16 dp128 v2, 16 mb", L405, "hybrid")]
    if args.full:
        cases.append(("405B tp8 pp16 dp128 v2, 16 mb", L405, "flattened"))
    for name, data, mode in cases:
        res, wall = timed(data, {"mode": mode})
        t.add_row(name, mode, f"{wall:.2f}", f"{len(res.events):,}", f"{res.step_time:.3f}",
                  f"{100 * res.model_flops / res.step_time / res.peak:.1f}%")
    console.print(t)

    t = Table(title="Mode agreement, 70B tp8 pp4 dp2 (none: nothing contends; all: every overlap)", title_justify="left")
    for col in ("policy", "analytical s", "hybrid s", "flattened s", "max diff"):
        t.add_column(col, justify="right")
    for policy in ("none", "dp_grad", "tp_comm", "no_userbuffers", "pp_comm", "all"):
        steps = [timed(L70, {"mode": m, "overlap_policy": policy})[0].step_time
                 for m in ("analytical", "hybrid", "flattened")]
        diff = max(abs(s / steps[0] - 1) for s in steps)
        t.add_row(policy, *(f"{s:.4f}" for s in steps), f"{100 * diff:.2f}%")
    console.print(t)

    t = Table(title="Schedules, 70B tp8 pp4 dp2, analytical", title_justify="left")
    for col in ("schedule", "step s", "bubble s", "activations GiB", "MFU"):
        t.add_column(col, justify="right")
    for sched, v in (("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("interleaved", 5)):
        try:
            res, _ = timed(L70, None, schedule=sched, virtual_stages=v)
        except Exception as exc:  # a schedule that does not fit says so in the table
            t.add_row(f"{sched} v{v}", str(exc)[:60], "", "", "")
            continue
        t.add_row(f"{sched} v{v}", f"{res.step_time:.3f}", f"{res.bubble:.3f}",
                  f"{res.memory.activations / 2**30:.1f}", f"{100 * res.model_flops / res.step_time / res.peak:.1f}%")
    console.print(t)


if __name__ == "__main__":
    main()
