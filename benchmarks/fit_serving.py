"""Fit the host time of an engine step (simcore/serving/engines/host_fit.py) from measured servers.

Usage: python benchmarks/fit_serving.py [--rows ../shared/calibration/serving_h100.json] [--write]

1. Every row simcore can express runs with the host model switched off (GPU time only), giving per row
   the simulated mean TPOT of the forward passes alone, G.
2. Per engine, the host time of a step h = const + per_request x requests + per_token x tokens is fitted
   so that the predicted TPOT (HostModel.step: G + h, or max(G, const) + the rest for an engine that
   overlaps its scheduling with the GPU) matches the measured mean TPOT: least squares of log(predicted / measured) over that engine's
   rows, on a grid of non-negative constants. In a closed loop of c clients a step holds about c
   requests and c x (ISL + OSL) / OSL tokens (every request's prompt is spread over its decode steps).
3. --write stores the constants with their source in simcore/serving/engines/host_fit.py.
Only H100 rows of dense models are used: other GPUs are held out, and MoE rows carry kernel-side errors
(expert GEMM pricing, issue 11 points 3-5) that host constants must not absorb.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rich.console import Console  # noqa: E402

from serving_silicon import DEFAULT_ROWS, DiskCache  # noqa: E402
from simcore.config.model import load_model  # noqa: E402
from simcore.serving.engines import HOST_KEYS, get_profile  # noqa: E402
from simcore.serving.silicon import ENGINES  # noqa: E402
from simcore.validate.compare import experiments, run  # noqa: E402
from simcore.validate.readers import read  # noqa: E402

# the grid: what a host can plausibly spend per step (a few ms at most), per request and per token
CONST_US = np.arange(0, 3001, 50.0)
PER_REQUEST_US = np.arange(0, 150.1, 2.5)
PER_TOKEN_US = np.arange(0, 3.01, 0.1)
OUT = ROOT / "simcore" / "serving" / "engines" / "host_fit.py"


def no_host_profiles(folder: Path) -> dict[str, str]:
    """Per engine, a serving.engine_profile file with zero host time, so a run prices the GPU work alone."""
    out = {}
    for engine in ENGINES.values():
        path = folder / f"{engine}-no-host.yaml"
        path.write_text(f"engine: {engine}\nhost: {{{', '.join(f'{k}: 0' for k in HOST_KEYS)}}}\n")
        out[engine] = str(path)
    return out


def fit(rows: list[tuple]) -> tuple[tuple[float, float, float], float]:
    """rows: (G s, measured s, requests per step, tokens per step, overlap). Returns the constants (us) and the
    rms log error."""
    g = np.array([r[0] for r in rows])[:, None]
    m = np.array([r[1] for r in rows])[:, None]
    n = np.array([r[2] for r in rows])[:, None]
    k = np.array([r[3] for r in rows])[:, None]
    overlap = np.array([r[4] for r in rows])[:, None]
    best = (None, np.inf)
    for a in CONST_US:
        for d in PER_TOKEN_US:
            exposed = d * k * 1e-6 + n * PER_REQUEST_US[None, :] * 1e-6  # rows x per-request grid
            pred = np.where(overlap, np.maximum(g, a * 1e-6), g + a * 1e-6) + exposed  # HostModel.step
            err = np.sqrt(np.mean(np.log(pred / m) ** 2, axis=0))
            i = int(np.argmin(err))
            if err[i] < best[1]:
                best = ((float(a), float(PER_REQUEST_US[i]), float(d)), float(err[i]))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=DEFAULT_ROWS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="store the fitted constants in host_fit.py")
    a = ap.parse_args()
    console = Console()
    records = [r for r in read(a.rows) if r.gpu == "h100_sxm"]
    outcomes = experiments(records, rounds=4)
    folder = ROOT / "benchmarks" / ".cache" / "no-host"  # a fixed place, so the disk cache keys stay the same
    folder.mkdir(parents=True, exist_ok=True)
    zero = no_host_profiles(folder)
    for o in outcomes:
        if o.experiment is not None:
            o.experiment["serving"]["engine_profile"] = zero[o.experiment["serving"]["engine"]]
    run(outcomes, a.jobs, cache=DiskCache(True))
    by_engine: dict[str, list] = {}
    for o in outcomes:
        if o.refused or load_model(o.experiment["model"]).is_moe:
            continue
        r, exp = o.record, o.experiment
        c, isl, osl = r.concurrency, r.isl, r.osl
        engine = exp["serving"]["engine"]
        overlap = get_profile(engine, exp["serving"].get("engine_version")).host.overlap
        by_engine.setdefault(engine, []).append((o.result["latency"]["tpot"]["mean"] * 1e-3,
                                                 r.latency["tpot"]["mean"] * 1e-3, c, c * (isl + osl) / osl, overlap))
    consts: dict[str, dict] = {}
    for engine, items in sorted(by_engine.items()):
        (a_us, b_us, d_us), rms = fit(items)
        n_over = sum(1 for r in items if r[4])
        console.print(f"{engine:7s} rows {len(items):4d} ({n_over} overlapped): const {a_us:7.1f} us, per request "
                      f"{b_us:5.1f} us, per token {d_us:4.2f} us  (rms log error of TPOT {rms:.3f})")
        consts[engine] = {"const_us": round(a_us, 2), "per_request_us": round(b_us, 2), "per_token_us": round(d_us, 2),
                          "rows": len(items)}
    if a.write:
        lines = [f'    "{e}": {{"const_us": {c["const_us"]}, "per_request_us": {c["per_request_us"]}, '
                 f'"per_token_us": {c["per_token_us"]}}},  # {c["rows"]} rows' for e, c in sorted(consts.items())]
        OUT.write_text(
            '"""Host time per engine step, fitted by benchmarks/fit_serving.py from ../shared/calibration/'
            'serving_h100.json.\n\nWritten by the fitting script; do not edit by hand. const_us: per step; '
            'per_request_us: per request in\nthe step (decodes and prefill chunks); per_token_us: per token '
            'scheduled in the step.\n"""\n\nHOST = {\n' + "\n".join(lines) + "\n}\n"
            f'SOURCE = "benchmarks/fit_serving.py on {a.rows.name} (H100 rows only), least squares of log TPOT"\n')
        console.print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
