"""Fit an engine's host-overhead constants (const_us, per_request_us, per_token_us of its profile's
host model, simcore/serving/engines/) to measured runs, simulation in the loop.

Residuals: predicted / measured - 1 of the mean TTFT, TPOT and ITL of every simulated record that
the file measured. Projected Gauss-Newton: a finite-difference Jacobian (one batch of simulations
per constant), a least-squares step kept inside constants >= 0 (every choice of constants held at
zero is tried), the step halved while it does not lower the sum of squares. Without overlap a
step's time is GPU + host, linear in the constants, and a closed loop of fixed lengths schedules
the same batches whatever the step times, so one iteration lands on the least-squares answer;
with overlap (max(GPU, host)) it iterates. Bounded: MAX_ITERATIONS, a few simulations each.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from simcore.errors import SimcoreError
from simcore.serving.engines import HOST_KEYS, get_profile, load_host_profile
from simcore.validate.compare import Outcome, run, summarize

FIT_METRICS = ("ttft", "tpot", "itl")
MAX_ITERATIONS = 5
MIN_STEP_US = (50.0, 2.0, 0.05)  # finite-difference steps: at least these, else 25% of the constant
TOL = 1e-4  # relative drop of the sum of squares below which the fit stops


@dataclass
class Fit:
    engine: str
    start_us: dict
    fitted_us: dict
    before: dict  # compare.summarize of the records at the start constants
    after: dict  # ... and at the fitted ones
    iterations: int
    simulations: int
    outcomes: list  # the records simulated with the fitted constants


def engine_of(outcomes: list[Outcome]) -> tuple[str, str | None]:
    """The one engine (and version) of the simulated records; several are one error line."""
    found = sorted({(o.experiment["serving"]["engine"], o.experiment["serving"].get("engine_version"))
                    for o in outcomes}, key=str)
    engines = sorted({e for e, _ in found})
    if len(engines) != 1:
        raise SimcoreError(f"--fit: the records come from engines {', '.join(engines)}; fit one engine at a time "
                           f"(--only ENGINE, or one engine's files)")
    versions = {v for _, v in found}
    return engines[0], versions.pop() if len(versions) == 1 else None


def start_constants(engine: str, version: str | None, overrides: tuple[str, ...]) -> dict:
    """The constants the records run with now: a --set serving.engine_profile file, else the profile's."""
    for text in overrides:
        key, _, value = text.partition("=")
        if key.strip() == "serving.engine_profile" and value.strip():
            return load_host_profile(value.strip(), engine)
    h = get_profile(engine, version).host
    return {"const_us": h.const_s * 1e6, "per_request_us": h.per_request_s * 1e6, "per_token_us": h.per_token_s * 1e6}


def write_profile(path: Path, engine: str, version: str | None, consts: dict, fit: dict | None = None) -> None:
    data = {"about": "Host time per engine step (us): const + per_request x requests in the step + per_token x "
                     "tokens scheduled in it; fitted by `simcore validate --fit`. Use: --set "
                     "serving.engine_profile=THIS_FILE (docs/serving.md).",
            "engine": engine, "engine_version": version,
            "host": {k: round(float(consts[k]), 4) for k in HOST_KEYS}}
    if fit is not None:
        data["fit"] = fit
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    except OSError as exc:
        raise SimcoreError(f"--profile-out {path}: cannot write: {exc.strerror}") from None


def residuals(outcomes: list[Outcome]) -> np.ndarray:
    r = []
    for o in outcomes:
        for m in FIT_METRICS:
            meas = o.record.latency.get(m, {}).get("mean")
            pred = None if o.refused else o.result["latency"][m]["mean"]
            if meas:
                # a record that stops simulating (e.g. nothing completes) counts as 100% off
                r.append(pred / meas - 1 if pred is not None else 1.0)
    return np.array(r)


def _bounded_step(J: np.ndarray, r: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d minimizing |r + J d| with x + d >= 0: each set of constants pinned at zero, the rest by least
    squares (minimum norm, so a constant nothing depends on stays where it is)."""
    best, best_cost = np.zeros_like(x), float(r @ r)
    n = len(x)
    for k in range(n + 1):
        for pinned in itertools.combinations(range(n), k):
            d = np.zeros_like(x)
            d[list(pinned)] = -x[list(pinned)]
            free = [i for i in range(n) if i not in pinned]
            rest = r + J @ d
            if free:
                d[free] = np.linalg.lstsq(J[:, free], -rest, rcond=None)[0]
            if np.any(x + d < -1e-12):
                continue
            res = r + J @ d
            cost = float(res @ res)
            if cost < best_cost - 1e-15:
                best, best_cost = d, cost
    return best


def fit_host(outcomes: list[Outcome], jobs: int = 1, overrides: tuple[str, ...] = (), progress=None) -> Fit:
    """Fit the host constants of the engine of `outcomes` (simulated, not refused) to their measurements."""
    live = [o for o in outcomes if o.experiment is not None and not o.refused]
    if not live:
        raise SimcoreError("--fit: no record was simulated, nothing to fit")
    if not any(o.record.latency.get(m, {}).get("mean") for o in live for m in FIT_METRICS):
        raise SimcoreError("--fit: the records measure no mean TTFT, TPOT or ITL")
    engine, version = engine_of(live)
    start = start_constants(engine, version, overrides)
    base = tuple(t for t in overrides if t.partition("=")[0].strip() != "serving.engine_profile")
    sims = 0
    with tempfile.TemporaryDirectory(prefix="simcore-fit-") as tmp:
        def evaluate(x: np.ndarray) -> tuple[np.ndarray, list[Outcome]]:
            nonlocal sims
            path = Path(tmp) / f"p{sims}.yaml"
            write_profile(path, engine, version, dict(zip(HOST_KEYS, np.maximum(x, 0))))
            fresh = [Outcome(o.record, o.experiment, {}) for o in live]
            run(fresh, jobs, base + (f"serving.engine_profile={path}",))
            sims += len(fresh)
            if progress is not None:
                progress(sims)
            return residuals(fresh), fresh

        x = np.array([start[k] for k in HOST_KEYS], dtype=float)
        r, cur = evaluate(x)
        first = cur
        it = 0
        for it in range(1, MAX_ITERATIONS + 1):
            f = float(r @ r)
            J = np.zeros((len(r), len(x)))
            for k in range(len(x)):
                h = max(0.25 * x[k], MIN_STEP_US[k])
                xk = x.copy()
                xk[k] += h
                J[:, k] = (evaluate(xk)[0] - r) / h
            d = _bounded_step(J, r, x)
            accepted = False
            for scale in (1.0, 0.5, 0.25):
                y = np.maximum(x + scale * d, 0)
                ry, out = evaluate(y)
                if float(ry @ ry) < f:
                    x, r, cur, accepted = y, ry, out, True
                    break
            if not accepted or f - float(r @ r) < TOL * max(f, 1e-12):
                break
    return Fit(engine, start, dict(zip(HOST_KEYS, map(float, x))), summarize(first), summarize(cur), it, sims, cur)
