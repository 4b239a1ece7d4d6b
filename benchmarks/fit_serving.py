"""Fit the host time of an engine step (simcore/serving/engines/host_fit.py) from measured servers.

Usage: python benchmarks/fit_serving.py [--rows ../shared/calibration/serving_h100.json] [--rounds 4] [--write]

The fit itself is simcore/validate/fit.py, the one fitter `simcore validate --fit` also uses (same
records, same constants): every dense-model row simulated with the host model switched off, then per
engine a grid search of const / per-request / per-token that matches the measured mean TPOT. This script
adds the choice of rows (H100 only: other GPUs are held out), a disk cache of the host-free runs, one fit
per engine, and --write, which stores the constants with their source in simcore/serving/engines/host_fit.py.
docs/validation.md ("Host constants") gives the method and the meaning of each constant. Two constants are scanned
apart, each on a grid with the host constants: TensorRT-LLM's eager floor (TPOT of the dense rows) and vLLM's MoE
prompt-step stall (mean TTFT of its MoE rows, simulated as serving_silicon.py simulates them; docs/serving.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rich.console import Console  # noqa: E402

import numpy as np  # noqa: E402

from serving_silicon import DEFAULT_ROWS, DiskCache  # noqa: E402
from simcore.config.model import load_model  # noqa: E402
from simcore.serving.silicon import MEASURED_ROUNDS  # noqa: E402
from simcore.validate.compare import Outcome, experiments, run  # noqa: E402
from simcore.validate.fit import fit_rows, grid_fit, without_host, write_profile  # noqa: E402
from simcore.validate.provenance import RowExtras  # noqa: E402
from simcore.validate.readers import read  # noqa: E402

# TensorRT-LLM launches a prompt step op by op (no CUDA graph): its host floor per layer is chosen with the host
# constants, as the candidate whose best host fit has the smallest rms log TPOT error (a prompt step stalls every
# decode in it, so the floor shows in TPOT); docs/validation-log.md, "Round 13: the eager floor as a fitted host constant"
EAGER_ENGINES = ("trtllm",)
EAGER_US = (0.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)
# vLLM's stall per MoE layer of a step with prompt tokens (Profile.moe_prompt_layer_s; mechanism unknown, docs/validation.md
# "Round 14 (branch vmoe2)"): the candidate with the smallest mean |log error| of mean TTFT over the engine's H100 MoE
# rows (closed loop, aggregated), run with the host constants fitted here. Least absolute deviations, not squares: the
# rms curve is flat from 350 to 450 us, set by a few rows whose decode step is off too (TPOT -25..-43%). Rows whose
# simulated mean TPOT without the stall is off by more than a factor TPOT_SANE are left out: their decode step is not the
# deployment they measured (docs/validation-log.md "vLLM gpt-oss-120b, 512 clients"); a prompt-step constant must
# not absorb that
MOE_PROMPT_ENGINES = ("vllm",)
MOE_PROMPT_US = tuple(float(x) for x in range(0, 601, 50))
TPOT_SANE = 2.0
FIT_GPU = "h100_sxm"  # the rows the constants are fitted to; the other GPUs' rows are held out
OUT = ROOT / "simcore" / "serving" / "engines" / "host_fit.py"


def with_serving(items: list[Outcome], **fields) -> list[Outcome]:
    """Fresh copies of the outcomes (to simulate again) with these serving fields set."""
    return [Outcome(o.record, {**o.experiment, "serving": {**o.experiment["serving"], **fields}}, {}) for o in items]


def moe_rows(rows: Path, engine: str | None = None) -> list[Outcome]:
    """The engine's (None: every engine's) closed-loop aggregated H100 rows of models with MoE layers that measure
    a mean TTFT and TPOT, built with the merged columns serving_silicon.py uses, at the rounds it simulates."""
    records = [r for r in read(rows, extras=RowExtras()) if r.gpu == FIT_GPU and engine in (None, r.engine)
               and r.mode == "agg" and r.concurrency and r.latency.get("ttft", {}).get("mean")
               and r.latency.get("tpot", {}).get("mean")]
    return [o for o in experiments(records, rounds=MEASURED_ROUNDS)
            if o.experiment is not None and not o.refused and any(load_model(o.experiment["model"]).moe_layers)]


def log_err(o: Outcome, metric: str) -> float:
    """log(simulated / measured) of an outcome's mean `metric`."""
    return float(np.log(o.result["latency"][metric]["mean"] / o.record.latency[metric]["mean"]))


def moe_prompt_scan(engine: str, rows: list[Outcome], host_us: dict, folder: Path, jobs: int, cache: DiskCache,
                    console: Console) -> tuple[float, int]:
    """(stall per MoE layer in us, rows fitted): MOE_PROMPT_US scanned, ties to the smaller."""
    profile = folder / f"{engine}-fitted.yaml"  # the host constants just fitted, so the stall is fitted with them
    write_profile(profile, engine, None, host_us)

    def trial(x: float, items: list[Outcome]) -> list[Outcome]:
        return run(with_serving(items, engine_profile=str(profile), moe_prompt_layer_us=x), jobs, cache=cache)

    rows = [o for o, z in zip(rows, trial(0.0, rows)) if not z.refused and abs(log_err(z, "tpot")) <= np.log(TPOT_SANE)]
    scan = []
    for x in MOE_PROMPT_US:
        done = [o for o in trial(x, rows) if not o.refused]
        e, t = (np.array([log_err(o, m) for o in done]) for m in ("ttft", "tpot"))
        scan.append((round(float(np.mean(np.abs(e))), 4), x))
        console.print(f"{engine:7s} MoE prompt stall {x:5.0f} us per MoE layer: mean |log error| of TTFT {scan[-1][0]:.4f}"
                      f" (rms {np.sqrt(np.mean(e ** 2)):.4f}; median |error| TTFT {100 * np.median(np.abs(np.expm1(e))):.1f}%"
                      f", TPOT {100 * np.median(np.abs(np.expm1(t))):.1f}%; {len(e)} rows)")
    return min(scan)[1], len(rows)


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
            trial = with_serving([o for o in no_host if o.experiment["serving"]["engine"] == engine], eager_layer_us=e)
            run(trial, a.jobs, cache=DiskCache(not a.no_cache))
            c, rms = grid_fit(fit_rows(trial)[engine])
            scan.append((round(rms, 4), e, c, rms))
            console.print(f"{engine:7s} eager floor {e:5.0f} us per layer: rms log error of TPOT {rms:.4f}")
        _, eager[engine], c, rms = min(scan, key=lambda t: (t[0], t[1]))  # ties: the smaller floor
        fitted[engine] = (c, rms)
    moe: dict[str, tuple[float, int]] = {}
    for engine in (e for e in MOE_PROMPT_ENGINES if e in by_engine):
        c, _ = fitted.get(engine) or grid_fit(by_engine[engine])
        rows = moe_rows(a.rows, engine)
        if rows:
            moe[engine] = moe_prompt_scan(engine, rows, c, folder, a.jobs, DiskCache(not a.no_cache), console)
    consts: dict[str, dict] = {}
    for engine, items in sorted(by_engine.items()):
        c, rms = fitted.get(engine) or grid_fit(items)
        n_over = sum(1 for r in items if r.overlap)
        floor = f", eager floor {eager[engine]:.0f} us per layer" if engine in eager else ""
        floor += f", MoE prompt stall {moe[engine][0]:.0f} us per MoE layer ({moe[engine][1]} MoE rows)" \
            if engine in moe else ""
        console.print(f"{engine:7s} rows {len(items):4d} ({n_over} overlapped): const {c['const_us']:7.1f} us, per "
                      f"request {c['per_request_us']:5.1f} us, per token {c['per_token_us']:4.2f} us{floor}  (rms log "
                      f"error of TPOT {rms:.3f})")
        consts[engine] = {k: round(v, 2) for k, v in c.items()} | {"rows": len(items)}
        if engine in eager:
            consts[engine]["eager_layer_us"] = eager[engine]
        if engine in moe:
            consts[engine]["moe_prompt_layer_us"], consts[engine]["moe_rows"] = moe[engine]
    if a.write:
        lines = [f'    "{e}": {{"const_us": {c["const_us"]}, "per_request_us": {c["per_request_us"]}, '
                 f'"per_token_us": {c["per_token_us"]}'
                 + (f', "eager_layer_us": {c["eager_layer_us"]}' if "eager_layer_us" in c else "")
                 + (f', "moe_prompt_layer_us": {c["moe_prompt_layer_us"]}' if "moe_prompt_layer_us" in c else "")
                 + f'}},  # {c["rows"]} rows'
                 + (f'; {c["moe_rows"]} MoE rows' if "moe_rows" in c else "")
                 for e, c in sorted(consts.items())]
        OUT.write_text(
            '"""Host time per engine step, fitted by benchmarks/fit_serving.py from ../shared/calibration/'
            'serving_h100.json.\n\nWritten by the fitting script; do not edit by hand. const_us: per step; '
            'per_request_us: per request in\nthe step (decodes and prefill chunks); per_token_us: per token '
            'scheduled in the step;\neager_layer_us: host floor per layer of a prompt step launched without a CUDA '
            'graph;\nmoe_prompt_layer_us: time per MoE layer added once to a step with prompt tokens (fitted to mean '
            'TTFT).\n"""\n\nHOST = {\n' + "\n".join(lines) + "\n}\n"
            f'SOURCE = "benchmarks/fit_serving.py on {a.rows.name} (H100 rows only), least squares of log TPOT '
            '(moe_prompt_layer_us: least absolute log error of mean TTFT)"\n')
        console.print(f"wrote {OUT.relative_to(ROOT)}")

if __name__ == "__main__":
    main()
