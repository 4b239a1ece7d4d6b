"""Recommender speed: llama-3.1-70b at 8k in / 1k out (TTFT <= 2 s, TPOT <= 50 ms) over the whole
hardware catalog, every GPU x tp x pp x replica count within 64 GPUs.

    python benchmarks/recommend_speed.py [--concurrency 1,16,64] [--workers N] [--repeat 3]

Each row is a fresh process (cold caches, as `simcore recommend` runs), timed end to end with
its imports, plus the search's own wall time. It prints candidates evaluated per second (every
(gpu, tp, pp, replicas) settled, by a rule or by the simulator) and shapes simulated per second
(distinct (gpu, tp, pp, batch) predictions the simulator made).

A last row times serving mode (planner/serving_search.py) on the issue's done-when command:
llama-3.1-70b at 20 req/s, 2048 in / 512 out, p90 TTFT <= 1 s, p99 TPOT <= 50 ms, whole catalog;
it prints wall time and the CPU seconds of the process and its workers (the shared dev machine's
load inflates wall time, not CPU time). --no-serving skips it.
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
    ap.add_argument("--no-serving", action="store_true", help="skip the serving-mode row")
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


SERVING = """
import json, resource, time
t0 = time.perf_counter()
from simcore.planner.serving_search import recommend_serving
rec = recommend_serving("meta-llama/Llama-3.1-70B", rate=20, input_len=2048, output_len=512, ttft_slo="p90:1",
                        tpot_slo="p99:0.05", workers={workers})
cpu = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
          for f in ("ru_utime", "ru_stime"))
b = rec.best
print(json.dumps({{"total_s": time.perf_counter() - t0, "search_s": rec.elapsed_s, "cpu_s": cpu,
                  "deployments": rec.deployments_considered, "runs": rec.serving_runs, "options": len(rec.options),
                  "best": f"{{b.gpu}} tp{{b.tp}} pp{{b.pp}} x{{b.replicas}}" if b else None}}))
"""


def serving(workers, repeat: int) -> None:
    """The serving-mode done-when command: simcore recommend --model meta-llama/Llama-3.1-70B --rate 20
    --input-len 2048 --output-len 512 --ttft-slo p90:1 --tpot-slo p99:0.05 (whole catalog, 64 GPUs)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = SERVING.format(workers=workers)
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                                      check=True).stdout) for _ in range(repeat)]
    r = runs[0]
    print("\nserving mode: llama-3.1-70b, 20 req/s Poisson, 2048 in / 512 out, p90 TTFT <= 1 s, p99 TPOT <= 50 ms")
    print(f"{'deployments':>11} {'runs':>5} {'ok':>3} {'total s':>8} {'search s':>8} {'CPU s':>6}  best")
    print(f"{r['deployments']:>11} {r['runs']:>5} {r['options']:>3} "
          f"{statistics.median(x['total_s'] for x in runs):>8.2f} {statistics.median(x['search_s'] for x in runs):>8.2f} "
          f"{statistics.median(x['cpu_s'] for x in runs):>6.1f}  {r['best']}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    if "--no-serving" not in sys.argv:
        serving(None, 1)
    print(f"benchmark wall time {time.perf_counter() - start:.1f} s")
