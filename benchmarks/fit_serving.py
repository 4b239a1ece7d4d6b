"""Fit the host time of an engine step (simcore/serving/engines/host_fit.py) from measured servers.

Usage: python benchmarks/fit_serving.py [--rows ../shared/calibration/serving_h100.json] [--rounds 4] [--write]

The fit itself is simcore/validate/fit.py, the one fitter `simcore validate --fit` also uses (same
records, same constants): every dense-model row simulated with the host model switched off, then per
engine a grid search of const / per-request / per-token that matches the measured mean TPOT. This script
adds the choice of rows (H100 only: other GPUs are held out), a disk cache of the host-free runs, one fit
per engine, and --write, which stores the constants with their source in simcore/serving/engines/host_fit.py.
docs/validation.md ("Host constants") gives the method and the meaning of each constant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rich.console import Console  # noqa: E402

from serving_silicon import DEFAULT_ROWS, DiskCache  # noqa: E402
from simcore.validate.compare import Outcome, experiments, run  # noqa: E402
from simcore.validate.fit import fit_rows, grid_fit, without_host  # noqa: E402
from simcore.validate.readers import read  # noqa: E402

# TensorRT-LLM launches a prompt step op by op (no CUDA graph): its host floor per layer is chosen with the host
# constants, as the candidate whose best host fit has the smallest rms log TPOT error (a prompt step stalls every
# decode in it, so the floor shows in TPOT); docs/validation.md, "Round 13: the eager floor as a fitted host constant"
EAGER_ENGINES = ("trtllm",)
EAGER_US = (0.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)
FIT_GPU = "h100_sxm"  # the rows the constants are fitted to; the other GPUs' rows are held out
OUT = ROOT / "simcore" / "serving" / "engines" / "host_fit.py"

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=DEFAULT_ROWS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4, help="measured requests per client in the host-free runs")
    ap.add_argument("--no-cache", action="store_true", help="simulate every row again")
    ap.add_argument("--write", action="store_true", help="store the fitted constants in host_fit.py")
    a = ap.parse_args()
    console = Console()
    records = [r for r in read(a.rows) if r.gpu == FIT_GPU]
    folder = ROOT / "benchmarks" / ".cache" / "no-host"  # a fixed place, so the disk cache keys stay the same
    folder.mkdir(parents=True, exist_ok=True)
    no_host = without_host(experiments(records, rounds=a.rounds), folder)
    run(no_host, a.jobs, cache=DiskCache(not a.no_cache))
    by_engine = fit_rows(no_host)
    fitted: dict[str, tuple[dict, float]] = {}
    eager: dict[str, float] = {}
    for engine in (e for e in EAGER_ENGINES if e in by_engine):
        scan = []
        for e in EAGER_US:
            trial = [Outcome(o.record, {**o.experiment, "serving": {**o.experiment["serving"], "eager_layer_us": e}}, {})
                     for o in no_host if o.experiment["serving"]["engine"] == engine]
            run(trial, a.jobs, cache=DiskCache(not a.no_cache))
            c, rms = grid_fit(fit_rows(trial)[engine])
            scan.append((round(rms, 4), e, c, rms))
            console.print(f"{engine:7s} eager floor {e:5.0f} us per layer: rms log error of TPOT {rms:.4f}")
        _, eager[engine], c, rms = min(scan, key=lambda t: (t[0], t[1]))  # ties: the smaller floor
        fitted[engine] = (c, rms)
    consts: dict[str, dict] = {}
    for engine, items in sorted(by_engine.items()):
        c, rms = fitted.get(engine) or grid_fit(items)
        n_over = sum(1 for r in items if r.overlap)
        floor = f", eager floor {eager[engine]:.0f} us per layer" if engine in eager else ""
        console.print(f"{engine:7s} rows {len(items):4d} ({n_over} overlapped): const {c['const_us']:7.1f} us, per "
                      f"request {c['per_request_us']:5.1f} us, per token {c['per_token_us']:4.2f} us{floor}  (rms log "
                      f"error of TPOT {rms:.3f})")
        consts[engine] = {k: round(v, 2) for k, v in c.items()} | {"rows": len(items)}
        if engine in eager:
            consts[engine]["eager_layer_us"] = eager[engine]
    if a.write:
        lines = [f'    "{e}": {{"const_us": {c["const_us"]}, "per_request_us": {c["per_request_us"]}, '
                 f'"per_token_us": {c["per_token_us"]}'
                 + (f', "eager_layer_us": {c["eager_layer_us"]}' if "eager_layer_us" in c else "")
                 + f'}},  # {c["rows"]} rows' for e, c in sorted(consts.items())]
        OUT.write_text(
            '"""Host time per engine step, fitted by benchmarks/fit_serving.py from ../shared/calibration/'
            'serving_h100.json.\n\nWritten by the fitting script; do not edit by hand. const_us: per step; '
            'per_request_us: per request in\nthe step (decodes and prefill chunks); per_token_us: per token '
            'scheduled in the step;\neager_layer_us: host floor per layer of a prompt step launched without a CUDA '
            'graph.\n"""\n\nHOST = {\n' + "\n".join(lines) + "\n}\n"
            f'SOURCE = "benchmarks/fit_serving.py on {a.rows.name} (H100 rows only), least squares of log TPOT"\n')
        console.print(f"wrote {OUT.relative_to(ROOT)}")

if __name__ == "__main__":
    main()
