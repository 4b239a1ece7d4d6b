"""The one fitter of an engine's host constants (const_us, per_request_us, per_token_us of its profile's
host model, simcore/serving/engines/): used by `simcore validate --fit` and benchmarks/fit_serving.py.

1. Every record of a dense model is simulated with the host time off (a zero-host engine profile),
   giving G, the mean TPOT of the forward passes alone.
2. The host time of a step, h = const + per_request x requests + per_token x tokens, is fitted so that
   the predicted TPOT (HostModel.step: G + h, or max(G, const) + the rest for an engine that overlaps
   its scheduling with the GPU) matches the measured mean TPOT: least squares of log(predicted /
   measured) over the records, on a grid of non-negative constants (GRID). In a closed loop of c
   clients a step holds about c requests and c x (ISL + OSL) / OSL tokens (every request's prompt is
   spread over its decode steps).
MoE and disaggregated records are left out (a disaggregated step is one pool's); MoE records' residual is
dominated by expert-kernel pricing (issue 11 points 3-5), which host constants must not absorb.
docs/validation.md ("Host constants") gives the meaning of each.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from simcore.config.model import load_model
from simcore.errors import SimcoreError
from simcore.serving.engines import HOST_KEYS, engine_names, get_profile, load_host_profile
from simcore.validate.compare import Outcome, run, summarize

# the grid (us): what a host can plausibly spend per step (a few ms at most), per request and per token
CONST_US = np.arange(0, 3001, 50.0)
PER_REQUEST_US = np.arange(0, 150.1, 2.5)
PER_TOKEN_US = np.arange(0, 3.01, 0.1)


@dataclass(frozen=True)
class FitRow:
    """One record as the fit sees it: G and the measured mean TPOT (s), requests and tokens per step."""

    gpu_s: float
    measured_s: float
    requests: float
    tokens: float
    overlap: bool


@dataclass
class Fit:
    engine: str
    start_us: dict
    fitted_us: dict
    rms: float  # rms log error of TPOT at the fitted constants (the fit's own model)
    rows: int  # records the constants were fitted to
    before: dict  # compare.summarize of the records at the start constants
    after: dict  # ... and at the fitted ones
    iterations: int  # 1: the grid is searched once
    simulations: int
    outcomes: list  # the records simulated with the fitted constants


def grid_fit(rows: list[FitRow]) -> tuple[dict, float]:
    """The constants (us) of the grid that minimize the rms log error of the predicted TPOT, and that error.
    Ties keep the smallest constants (the grid is searched in increasing order)."""
    g = np.array([r.gpu_s for r in rows])[:, None]
    m = np.array([r.measured_s for r in rows])[:, None]
    n = np.array([r.requests for r in rows])[:, None]
    k = np.array([r.tokens for r in rows])[:, None]
    overlap = np.array([r.overlap for r in rows])[:, None]
    best = (None, np.inf)
    for a in CONST_US:
        for d in PER_TOKEN_US:
            exposed = d * k * 1e-6 + n * PER_REQUEST_US[None, :] * 1e-6  # rows x per-request grid
            pred = np.where(overlap, np.maximum(g, a * 1e-6), g + a * 1e-6) + exposed  # HostModel.step
            err = np.sqrt(np.mean(np.log(pred / m) ** 2, axis=0))
            i = int(np.argmin(err))
            if err[i] < best[1]:
                best = ((float(a), float(PER_REQUEST_US[i]), float(d)), float(err[i]))
    consts, rms = best
    return dict(zip(HOST_KEYS, consts)), rms


def no_host_profiles(folder: Path) -> dict[str, str]:
    """Per engine, a serving.engine_profile file with zero host time, so a run prices the GPU work alone."""
    out = {}
    for engine in engine_names():
        path = folder / f"{engine}-no-host.yaml"
        path.write_text(f"engine: {engine}\nhost: {{{', '.join(f'{k}: 0' for k in HOST_KEYS)}}}\n")
        out[engine] = str(path)
    return out


def without_host(outcomes: list[Outcome], folder: Path, moe: bool = False) -> list[Outcome]:
    """Fresh copies of the closed-loop dense-model records that measure a mean TPOT, their experiments set
    to run with zero host time (simulate them with compare.run). Open-loop and disaggregated records are left
    out: the fit's step holds a closed loop's c requests in one pool. moe: keep MoE records too (not for fitting)."""
    zero = no_host_profiles(folder)
    out = []
    for o in outcomes:
        if o.experiment is None or o.refused or not o.record.latency.get("tpot", {}).get("mean"):
            continue
        if not o.record.concurrency or o.record.mode != "agg":  # disaggregated: a step is one pool's, not the loop's
            continue
        if not moe and load_model(o.experiment["model"]).is_moe:
            continue
        exp = {**o.experiment, "serving": {**o.experiment["serving"],
                                           "engine_profile": zero[o.experiment["serving"]["engine"]]}}
        out.append(Outcome(o.record, exp, {}))
    return out


def fit_rows(no_host: list[Outcome]) -> dict[str, list[FitRow]]:
    """Per engine, the FitRows of records simulated by `without_host` (refused ones are left out)."""
    by_engine: dict[str, list[FitRow]] = {}
    for o in no_host:
        if o.refused:
            continue
        r, s = o.record, o.experiment["serving"]
        c, isl, osl = r.concurrency, r.isl, r.osl
        overlap = get_profile(s["engine"], s.get("engine_version")).host.overlap
        by_engine.setdefault(s["engine"], []).append(FitRow(o.result["latency"]["tpot"]["mean"] * 1e-3,
                                                            r.latency["tpot"]["mean"] * 1e-3, c,
                                                            c * (isl + osl) / osl, overlap))
    return by_engine


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
                     "serving.engine_profile=THIS_FILE (docs/validation.md).",
            "engine": engine, "engine_version": version,
            "host": {k: round(float(consts[k]), 4) for k in HOST_KEYS}}
    if fit is not None:
        data["fit"] = fit
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    except OSError as exc:
        raise SimcoreError(f"--profile-out {path}: cannot write: {exc.strerror}") from None


def fit_host(outcomes: list[Outcome], jobs: int = 1, overrides: tuple[str, ...] = (), progress=None) -> Fit:
    """Fit the host constants of the engine of `outcomes` (simulated at the start constants) to their
    measured mean TPOT; the records are simulated again with the fitted constants for `after`."""
    live = [o for o in outcomes if o.experiment is not None and not o.refused]
    if not live:
        raise SimcoreError("--fit: no record was simulated, nothing to fit")
    engine, version = engine_of(live)
    base = tuple(t for t in overrides if t.partition("=")[0].strip() != "serving.engine_profile")
    sims = 0

    def count(n: int) -> None:
        nonlocal sims
        sims += n
        if progress is not None:
            progress(sims)

    with tempfile.TemporaryDirectory(prefix="simcore-fit-") as tmp:
        no_host = without_host(live, Path(tmp))
        if not no_host:
            raise SimcoreError("--fit: no simulated closed-loop record of a dense model measures a mean TPOT (MoE "
                               "and open-loop records are not fitted: docs/validation.md, \"Host constants\")")
        run(no_host, jobs, base)
        count(len(no_host))
        rows = fit_rows(no_host).get(engine)
        if not rows:
            raise SimcoreError("--fit: no dense record simulates without host time, nothing to fit")
        fitted, rms = grid_fit(rows)
        path = Path(tmp) / "fitted.yaml"
        write_profile(path, engine, version, fitted)
        fresh = [Outcome(o.record, o.experiment, {}) for o in live]
        run(fresh, jobs, base + (f"serving.engine_profile={path}",))
        count(len(fresh))
    return Fit(engine, start_constants(engine, version, overrides), fitted, rms, len(rows), summarize(live),
               summarize(fresh), 1, sims, fresh)
