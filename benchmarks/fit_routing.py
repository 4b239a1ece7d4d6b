"""Fit the spread of MoE expert popularity (simcore/ops/routing_fit.py FITTED_SIGMA) from measured servers.

Usage: python benchmarks/fit_routing.py [--rows ../shared/calibration/serving_h100.json] [--jobs 2] [--write]

A decode step streams the weights of every expert its tokens touch. How many distinct experts T tokens touch
depends on how evenly the router spreads them: with the experts' shares of the picks lognormal of spread sigma
(simcore.ops.routing.hit_fraction), sigma = 0 is a uniform router and a larger sigma concentrates picks on hot
experts, so fewer distinct experts are read at the same T k. Hot experts matter most between a few tokens (every pick a new
expert either way) and many (every expert touched either way).

This scans sigma over the H100 closed-loop aggregated rows of models with MoE layers (every engine: one spread for
every router, never per model, engine or GPU), each row simulated as benchmarks/serving_silicon.py simulates it
(host constants and MoE prompt stall as stored), and keeps the sigma with the smallest rms log error of mean TPOT.
Rows whose simulated TPOT at sigma = 0 is off by more than TPOT_SANE are left out: their decode step is not the
deployment they measured (fit_serving.py leaves the same rows out). Run fit_serving.py after --write: its MoE
prompt-step stall is fitted with the spread in place. docs/validation-log.md ("Round 18") gives the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from fit_serving import TPOT_SANE, log_err, moe_rows  # noqa: E402
from serving_silicon import DEFAULT_ROWS, DiskCache  # noqa: E402
from simcore.validate.cli import progress_bar  # noqa: E402
from simcore.validate.compare import Outcome, run  # noqa: E402

SIGMA = tuple(round(0.1 * i, 1) for i in range(0, 21))  # candidate spreads
OUT = ROOT / "simcore" / "ops" / "routing_fit.py"


def trial(rows: list[Outcome], sigma: float, jobs: int, cache: DiskCache) -> list[Outcome]:
    fresh = [Outcome(o.record, {**o.experiment, "inference": {**o.experiment.get("inference", {}),
                                                              "expert_popularity_sigma": sigma}}, {}) for o in rows]
    with progress_bar(f"sigma = {sigma:g}") as update:
        return run(fresh, jobs, progress=update, cache=cache)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=DEFAULT_ROWS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-cache", action="store_true", help="simulate every row again")
    ap.add_argument("--write", action="store_true", help="store the fitted spread in simcore/ops/routing_fit.py")
    a = ap.parse_args()
    cache = DiskCache(not a.no_cache)
    rows = moe_rows(a.rows)
    base = trial(rows, 0.0, a.jobs, cache)
    rows = [o for o, z in zip(rows, base) if not z.refused and abs(log_err(z, "tpot")) <= np.log(TPOT_SANE)]
    groups = sorted({(o.record.engine, (o.record.model or "").split("/")[-1]) for o in rows})
    print(f"{len(rows)} MoE rows ({', '.join(f'{e} {m}' for e, m in groups)}); {len(base) - len(rows)} left out")
    scan = []
    for s in SIGMA:
        done = [o for o in trial(rows, s, a.jobs, cache) if not o.refused]
        t, f = (np.array([log_err(o, m) for o in done]) for m in ("tpot", "ttft"))
        rms = float(np.sqrt(np.mean(t ** 2)))
        scan.append((round(rms, 4), s))
        per = "; ".join(f"{e} {m} {100 * np.median(np.abs(np.expm1([log_err(o, 'tpot') for o in done if (o.record.engine, (o.record.model or '').split('/')[-1]) == (e, m)]))):.1f}%"
                        for e, m in groups)
        print(f"sigma = {s:3.1f}: rms log error of TPOT {rms:.4f}; median |error| TPOT {100 * np.median(np.abs(np.expm1(t))):.1f}%, "
              f"TTFT {100 * np.median(np.abs(np.expm1(f))):.1f}% (TPOT by group: {per})", flush=True)
    rms, best = min(scan)  # ties: the smaller spread
    print(f"best: sigma = {best:g} (rms log error of TPOT {rms:.4f}, {len(rows)} rows)")
    if a.write:
        OUT.write_text(f'''"""The spread of MoE expert popularity (simcore.ops.routing), fitted by benchmarks/fit_routing.py.

Written by the fitting script; do not edit by hand.
"""

FITTED_SIGMA = {best!r}
SOURCE = "benchmarks/fit_routing.py on serving_h100.json (H100 closed-loop aggregated MoE rows, every engine: {len(rows)} rows), least squares of log mean TPOT over sigma in 0-2"
''')
        print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
