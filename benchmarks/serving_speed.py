"""Speed of the serving simulator: llama-3.1-8b on one h100-sxm, Poisson at 80% of the replica's
capacity, ISL ~ lognormal(mean 1024), OSL ~ lognormal(mean 256).

Prints the wall and CPU time of simulate() and simulated requests per second at 10k, 30k and 100k
requests (each in a fresh process, per-request rows streamed to a CSV file) and each run's peak RSS,
so linearity and flat memory can be read off; CPU time is the figure to compare on a shared machine.
--profile N prints the functions that take the most time in one run of N requests (cProfile; the
profiler itself slows the many small calls down).
Usage: python benchmarks/serving_speed.py [--sizes 10000,30000,100000] [--profile 30000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.serving.simulate import simulate

LENGTHS = {"prompt_tokens": {"dist": "lognormal", "mean": 1024, "cv": 1.0, "max": 16384},
           "output_tokens": {"dist": "lognormal", "mean": 256, "cv": 1.0, "max": 4096}}


def experiment(requests: int, rate: float) -> dict:
    return {"model": "llama-3.1-8b", "hardware": "h100-sxm",
            "workload": {"kind": "requests", "requests": requests, "seed": 7,
                         "arrival": {"process": "poisson", "rate": rate}, **LENGTHS}}


def capacity() -> float:
    """Requests/s the replica sustains when arrivals never stop (every request arrives at once)."""
    res = simulate(resolve(experiment_from_dict(experiment(3000, 1e6))))
    return res.summary["throughput"]["requests_per_s"]


def one(requests: int, rate: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        run = resolve(experiment_from_dict(experiment(requests, rate)))
        t, c = time.perf_counter(), time.process_time()
        res = simulate(run, csv_path=Path(d) / "r.csv")
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    s = res.summary
    return {"requests": requests, "wall_s": wall, "cpu_s": cpu, "sim_requests_per_s": requests / wall,
            "us_per_iteration": cpu / s["iterations"] * 1e6,
            "iterations": s["iterations"], "shapes": s["shapes_priced"], "completed": s["requests_completed"],
            "ttft_p50_s": s["ttft_s"]["p50"], "tpot_p50_s": s["tpot_s"]["p50"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--profile", type=int, metavar="N", help="profile one run of N requests instead")
    ap.add_argument("--one", nargs=2, type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(int(a.one[0]), a.one[1])))
        return
    cap = capacity()
    rate = 0.8 * cap
    print(f"replica capacity {cap:.2f} req/s; Poisson at 80%: {rate:.2f} req/s")
    if a.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(one, a.profile, rate)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return
    print(f"{'requests':>9} {'wall s':>8} {'CPU s':>7} {'us/iter':>8} {'sim req/s':>10} {'iterations':>11} {'shapes':>7} "
          f"{'peak RSS MiB':>13} {'TTFT p50 ms':>12} {'TPOT p50 ms':>12}")
    base = None
    for n in (int(x) for x in a.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n), str(rate)], capture_output=True, text=True,
                             check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or r["wall_s"] / n
        print(f"{n:>9,} {r['wall_s']:>8.2f} {r['cpu_s']:>7.2f} {r['us_per_iteration']:>8.2f} "
              f"{r['sim_requests_per_s']:>10,.0f} {r['iterations']:>11,} "
              f"{r['shapes']:>7,} {r['peak_rss_mib']:>13.0f} {r['ttft_p50_s'] * 1e3:>12.1f} "
              f"{r['tpot_p50_s'] * 1e3:>12.2f}   (wall per request x{r['wall_s'] / n / base:.2f} of the first)")


if __name__ == "__main__":
    main()
