"""Sweep throughput on the local pool: a 200-point analytical sweep with 1 worker and with 2.

    python benchmarks/sweep_speed.py [--points 200] [--workers 1,2]

Prints points per second for each worker count and the speedup over the first. The base is
cheap on purpose (llama-3.2-1b, 4 priced decode steps), so the figure includes what the sweep
machinery costs per point: validation, the pool's pickling, one SQLite commit per point.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simcore.sweep import run_sweep, sweep_from_dict  # noqa: E402


def sweep(points: int):
    batches = [1, 2, 4, 8, 16, 32, 64, 128]
    prompts = [128 * (i + 1) for i in range(-(-points // len(batches)))]
    return sweep_from_dict({
        "name": f"speed-{points}",
        "base": {
            "model": "llama-3.2-1b",
            "hardware": "h100-sxm",
            "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 128, "output_tokens": 128},
            "engine": {"mode": "analytical", "decode_sample_steps": 4},
        },
        "grid": {"workload.prompt_tokens": prompts, "workload.batch_size": batches},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    s = sweep(args.points)
    rates = []
    print(f"{args.points}-point analytical sweep of llama-3.2-1b on the local pool ({os.cpu_count()} cores)")
    print(f"{'workers':>8} {'points':>7} {'seconds':>8} {'points/s':>9} {'speedup':>8}")
    for workers in counts:
        with tempfile.TemporaryDirectory() as tmp:
            trimmed = _trim(s, args.points)
            start = time.perf_counter()
            r = run_sweep(trimmed, Path(tmp) / "speed.sqlite", workers=workers, progress=False)
            took = time.perf_counter() - start
        assert r.ok == args.points, r.line()
        rates.append(args.points / took)
        print(f"{workers:>8} {r.ok:>7} {took:>8.2f} {rates[-1]:>9.1f} {rates[-1] / rates[0]:>7.2f}x")


def _trim(s, n: int):
    """The first n points as explicit points (the grid is rounded up to whole rows of batches)."""
    from dataclasses import replace

    from simcore.sweep import expand

    return replace(s, grid={}, points=[p.overrides for p in expand(s)[:n]])


if __name__ == "__main__":
    main()
