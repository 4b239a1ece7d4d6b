"""Recommender speed: llama-3.1-70b at 8k in / 1k out (TTFT <= 2 s, TPOT <= 50 ms) over the whole
hardware catalog, every GPU x tp x pp x replica count within 64 GPUs.

    python benchmarks/recommend_speed.py [--concurrency 1,16,64] [--workers N] [--repeat 3]

Each row is a fresh process (cold caches, as `simcore recommend` runs), timed end to end with
its imports, plus the search's own wall time. It prints candidates evaluated per second (every
(gpu, tp, pp, replicas) settled, by a rule or by the simulator) and shapes simulated per second
(distinct (gpu, tp, pp, batch) predictions the simulator made).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys, time
t0 = time.perf_counter()
from simcore.planner.recommend import find_gpu_recommendations
rec = find_gpu_recommendations("llama-3.1-70b", input_len=8192, output_len=1024, ttft_slo=2, tpot_slo=0.05,
                               concurrency={conc}, max_gpus=64, workers={workers})
print(json.dumps({{"total_s": time.perf_counter() - t0, "search_s": rec.elapsed_s,
                  "candidates": rec.candidates_evaluated, "shapes": rec.shapes_simulated,
                  "options": len(rec.options), "best": rec.options[0].gpu if rec.options else None}}))
"""


def one(conc: int, workers) -> dict:
    code = CHILD.format(conc=conc, workers=workers)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,16,64", help="comma-separated concurrencies (default 1,16,64)")
    ap.add_argument("--workers", default="None", help="simulation processes (default: one per CPU)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    a = ap.parse_args()
    workers = None if a.workers == "None" else int(a.workers)
    print(f"llama-3.1-70b, 8192 in / 1024 out, TTFT <= 2 s, TPOT <= 50 ms, max 64 GPUs; CPUs: {os.cpu_count()}, "
          f"workers: {workers or 'one per CPU'}")
    print(f"{'concurrency':>11} {'candidates':>10} {'shapes':>6} {'ok':>4} {'total s':>8} {'search s':>8} "
          f"{'cand/s':>8} {'shapes/s':>8}  best")
    for conc in (int(c) for c in a.concurrency.split(",")):
        runs = [one(conc, workers) for _ in range(a.repeat)]
        total = statistics.median(r["total_s"] for r in runs)
        search = statistics.median(r["search_s"] for r in runs)
        r = runs[0]
        print(f"{conc:>11} {r['candidates']:>10,} {r['shapes']:>6} {r['options']:>4} {total:>8.2f} {search:>8.2f} "
              f"{r['candidates'] / search:>8,.0f} {r['shapes'] / search:>8,.1f}  {r['best']}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"benchmark wall time {time.perf_counter() - start:.1f} s")
