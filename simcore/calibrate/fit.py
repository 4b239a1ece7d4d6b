"""Fit one GPU's efficiency profile to its microbenchmark file (`simcore calibrate`).

Minimizes sum(log(predicted / measured)^2) over the file's rows, every row priced by the
real Pricer through the Ops the builder emits (simcore/cost/calibration.py), so the fit is of
the simulator as it runs. Only the parameters the file has rows for are fitted; `memory` and
`host_link` are derived from the file's device bandwidths; everything else is kept from the
base profile (the one the GPU borrowed before) and written as kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simcore.config.hardware import Efficiency, System
from simcore.cost import calibration as cal
from simcore.errors import SimcoreError

# name: (lower bound, upper bound, scale for the optimizer, three fixed starting points).
# The fit must not depend on whatever profile is on disk: the original H100 estimate and two
# spread around it; the best final cost wins.
PARAMS = {
    "kernel_floor_us": (0.0, 20.0, 1.0, (4.5, 3.0, 7.0)),
    "gemm.compute_max": (0.2, 1.0, 0.1, (0.74, 0.60, 0.85)),
    "gemm.m_half": (0.0, 5000.0, 30.0, (30.0, 100.0, 10.0)),
    "gemm.memory": (0.3, 1.0, 0.1, (0.91, 0.80, 0.97)),
    "attention_prefill.compute_max": (0.1, 1.0, 0.1, (0.66, 0.50, 0.80)),
    "attention_prefill.s_half": (0.0, 1e5, 500.0, (850.0, 2000.0, 300.0)),
    "attention_decode_memory": (0.3, 1.0, 0.1, (0.92, 0.80, 0.97)),
    "gemm.compute_max_fp8": (0.1, 1.0, 0.1, (0.66, 0.50, 0.80)),
    "elementwise_floor_us": (0.0, 20.0, 1.0, (2.0, 1.0, 4.0)),
    "collectives.ring_link": (0.1, 1.0, 0.1, (0.82, 0.60, 0.95)),
    "collectives.nccl_step_latency_us": (0.0, 50.0, 1.0, (0.5, 2.0, 5.0)),
}


def _fp8(fam: str, r: dict) -> bool:
    return fam == "gemm" and r.get("dtype", "bf16") == "fp8"


# Which rows let each parameter be fitted (a parameter with no such row is kept).
NEEDS = {
    "kernel_floor_us": lambda f, r: f in ("gemm", "decode_attn", "prefill_attn"),
    "gemm.compute_max": lambda f, r: f == "gemm" and not _fp8(f, r),
    "gemm.m_half": lambda f, r: f == "gemm",
    "gemm.memory": lambda f, r: f == "gemm",
    "attention_prefill.compute_max": lambda f, r: f == "prefill_attn",
    "attention_prefill.s_half": lambda f, r: f == "prefill_attn",
    "attention_decode_memory": lambda f, r: f == "decode_attn",
    "gemm.compute_max_fp8": _fp8,
    "elementwise_floor_us": lambda f, r: f == "elementwise",
    "collectives.ring_link": lambda f, r: f == "collective",
    "collectives.nccl_step_latency_us": lambda f, r: f == "collective",
}


@dataclass
class Calibration:
    """What `simcore calibrate` found: the profile and how well it prices the file."""

    gpu: str
    efficiency: Efficiency  # the new profile (rounded values, as written)
    fitted: dict[str, float]  # parameter -> value (rounded)
    derived: dict[str, tuple[float, str]]  # field -> (value, how)
    kept: list[str]  # fields kept from the base profile
    base: str  # name of the profile the kept fields come from
    method: str
    cost: float  # sum of squared log errors at the optimum, over the fitted rows
    rows: dict[str, int]  # family -> rows fitted
    l2_rows: int  # decode_attn rows left out: their KV fit in L2
    table: dict  # calibration.error_table of the written profile over every row
    attention_backend: str | None  # the attention kernels the fit used (others in the file are ignored)
    predictions: list = field(default_factory=list)


def _residuals(rows, base: System, names: list[str]):
    ops = [cal.OPS[f](r) for f, r in rows]

    def res(x: np.ndarray) -> np.ndarray:
        system = cal.with_params(base, dict(zip(names, x)))
        return np.array([math.log(p.predicted_s / p.measured_s) for p in cal.predict(rows, system, ops)])
    return res


def _levenberg_marquardt(res, x0, lo, hi, scale, iters: int = 200):
    """Bounded (projected) Levenberg-Marquardt on finite-difference Jacobians, numpy only."""
    x = np.clip(np.array(x0, float), lo, hi)
    r = res(x)
    cost, lam = float(r @ r), 1e-3
    for _ in range(iters):
        jac = np.empty((len(r), len(x)))
        for i in range(len(x)):
            h = 1e-6 * max(abs(x[i]), scale[i])
            step = -h if x[i] + h > hi[i] else h  # stay inside the bounds
            y = x.copy()
            y[i] += step
            jac[:, i] = (res(y) - r) / step
        a, g = jac.T @ jac, jac.T @ r
        while True:
            xn = np.clip(x - np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), g), lo, hi)
            rn = res(xn)
            cn = float(rn @ rn)
            if cn < cost:
                break
            lam *= 4
            if lam > 1e12:  # no step lowers the cost: a (bounded) minimum
                return x, cost
        done = cost - cn <= 1e-12 * cost or np.allclose(xn, x, rtol=1e-9, atol=0)
        x, r, cost, lam = xn, rn, cn, max(lam / 3, 1e-9)
        if done:
            break
    return x, cost


def minimize(rows, base: System, names: list[str]) -> tuple[dict[str, float], float, str]:
    """Best of the fixed starts: scipy's bounded least squares when installed, else numpy Levenberg-Marquardt."""
    res = _residuals(rows, base, names)
    lo = np.array([PARAMS[n][0] for n in names])
    hi = np.array([PARAMS[n][1] for n in names])
    scale = np.array([PARAMS[n][2] for n in names])
    starts = [np.array([PARAMS[n][3][i] for n in names]) for i in range(3)]
    try:
        from scipy.optimize import least_squares
    except ImportError:
        x, cost = min((_levenberg_marquardt(res, x0, lo, hi, scale) for x0 in starts), key=lambda t: t[1])
        return dict(zip(names, map(float, x))), cost, "numpy Levenberg-Marquardt (bounded), best of 3 fixed starts"
    best = min((least_squares(res, x0, bounds=(lo, hi), x_scale=scale, method="trf") for x0 in starts),
               key=lambda r: r.cost)
    return (dict(zip(names, map(float, best.x))), 2 * float(best.cost),
            "scipy.optimize.least_squares (trf, bounded), best of 3 fixed starts")


def rounded(values: dict[str, float]) -> dict[str, float]:
    """What goes into the YAML (errors are recomputed from these, not the raw optimum)."""
    out = {}
    for n, v in values.items():
        out[n] = round(v, 1) if n.endswith(("m_half", "s_half")) else round(v, 2 if n.endswith("_us") else 3)
    return out


def _ratio(measured: float, spec: float, field: str) -> float:
    """measured / spec, at most 1; under 0.1% of the spec (an efficiency's floor) the file is refused."""
    if measured / spec < 1e-3:
        raise SimcoreError(f"calibration file: device.{field} = {measured:g}: under 0.1% of the GPU's {spec:g} "
                           f"GB/s spec; allowed: {spec * 1e-3:g} GB/s or more (was it measured on this --gpu?)")
    return round(min(1.0, measured / spec), 3)


ATTENTION = ("decode_attn", "prefill_attn")
# Fitted in this order, each stage on its own rows with the earlier stages' values fixed: GEMM and
# attention share the kernel floor; elementwise kernels and collectives only add their own constants.
STAGES = (("gemm", "decode_attn", "prefill_attn"), ("elementwise",), ("collective",))
PREFERRED = ("flash_attn", "flashinfer", "sdpa")  # serving engines run FlashAttention-class kernels


def one_attention_backend(rows: list[tuple[str, dict]]) -> tuple[list[tuple[str, dict]], str | None]:
    """Attention rows of one backend (the first of PREFERRED the file has; rows without one are sdpa)."""
    have = {r.get("backend", "sdpa") for f, r in rows if f in ATTENTION}
    pick = next((b for b in PREFERRED if b in have), min(have) if have else None)
    return [(f, r) for f, r in rows if f not in ATTENTION or r.get("backend", "sdpa") == pick], pick


def calibrate(bench: dict, base: System, name: str) -> Calibration:
    """Fit `name`, the profile of base.gpu, to `bench`; base.efficiency supplies what the file lacks."""
    l2 = cal.bench_l2_bytes(bench, base)
    every, attention = one_attention_backend(cal.bench_rows(bench))
    rows = [(f, r) for f, r in every if not cal.l2_resident(f, r, l2)]
    if not any(f == "gemm" for f, _ in rows):
        raise SimcoreError("calibration file: no gemm rows; the fit needs at least the gemm family "
                           "(`simcore profile` writes one)")
    derived: dict[str, tuple[float, str]] = {}
    device = bench.get("device", {})
    spec = base.gpu.memory.bandwidth_gbps
    if device.get("copy_rw_GBps"):
        derived["memory"] = (_ratio(device["copy_rw_GBps"], spec, "copy_rw_GBps"),
                             f"derived from the file: device.copy_rw_GBps {device['copy_rw_GBps']:.0f} / spec {spec:.0f} GB/s")
    host = base.gpu.links.host.bandwidth_gbps
    if device.get("h2d_GBps"):
        derived["host_link"] = (_ratio(device["h2d_GBps"], host, "h2d_GBps"),
                                f"derived from the file: device.h2d_GBps {device['h2d_GBps']:.0f} / {host:.0f} GB/s "
                                "(pinned host->device copy)")
    eff = base.efficiency.model_copy(update={k: v for k, (v, _) in derived.items()})
    base = base.model_copy(update={"efficiency": eff})
    raw: dict[str, float] = {}
    cost, methods = 0.0, set()
    for stage in STAGES:  # independent row groups fitted one after another: far fewer Pricer calls
        part = [(f, r) for f, r in rows if f in stage]
        names = [n for n in PARAMS if any(NEEDS[n](f, r) for f, r in part) and n not in raw]
        if names:
            found, c, how = minimize(part, cal.with_params(base, raw), names)
            raw.update(found)
            cost += c
            methods.add(how)
    method = "; ".join(sorted(methods))
    params = rounded(raw)
    system = cal.with_params(base, params)
    eff = system.efficiency.model_copy(update={
        "name": name, "measured_on": base.gpu.name, **{k: v for k, (v, _) in derived.items()}})
    system = system.model_copy(update={"efficiency": eff})
    kept = [n for n in _leaves(eff) if n not in params and n not in derived and n not in _IDENTITY]
    preds = cal.predict(every, system)
    fams = {f: sum(1 for g, _ in rows if g == f) for f in cal.FAMILIES}
    return Calibration(base.gpu.name, eff, params, derived, kept, base.efficiency.name, method, cost,
                       {f: n for f, n in fams.items() if n}, len(every) - len(rows), cal.error_table(preds, l2),
                       attention, preds)


_IDENTITY = ("kind", "name", "source", "measured_on")


def _leaves(eff: Efficiency) -> list[str]:
    out = []
    for k, v in eff.model_dump().items():
        out += [f"{k}.{k2}" for k2 in v] if isinstance(v, dict) else [k]
    return out
