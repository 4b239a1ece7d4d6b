"""Fit the fixed costs of MoE layers (efficiency profile `moe_layer_us` and `moe_tile_us`).

    python benchmarks/fit_moe.py [--data PATH] [--max-batch N] [--write]

A MoE layer runs, besides its router GEMM and expert GEMMs, a chain of small serial kernels
(top-k bookkeeping, aligning / permuting tokens into expert blocks, activation quantization,
the weighted top-k combine) whose launch-and-drain latency does not shrink with TP or EP
(`moe_layer_us`), and its grouped expert GEMMs pay a fixed cost per 128 x 128 output tile and
SM (`moe_tile_us`: pipeline fill, block scales, epilogue; no split-K), which is what makes thin
expert slices (tp-sliced experts: small N or K per GPU) slower than whole experts.
This fits that one constant per MoE layer from the low-concurrency aggregated MoE rows of
../shared/calibration/serving_h100.json (the rows benchmarks/moe_fidelity.py compares; rows
with attention DP are left out, as when the constant was fitted: read as the 4-GPU servers they
measured (simcore/serving/silicon.py, vllm_dp_layout) they fit too, and with them the constant
would be 23.6 us, which moves vLLM gpt-oss and TensorRT-LLM Qwen3-235B TPOT 0.5-1 point worse). Model: measured TPOT = simcore's static decode step with both at 0
+ MoE layers x c + tile waves x w + h_engine, where h_engine >= 0 (one per engine: the
server's host time per step, issue 11 point 1; fitted here only so that it does not leak into
c, w and not stored), c, w >= 0; non-negative linear least squares on relative error (every
subset of free parameters tried: there are only a few).
--write stores c and w in hardware/efficiency/h100-calibrated.yaml with where they came from.

--upcast fits `upcast_gemm` instead: the share of GEMM compute efficiency kept when the kernel
dequantizes its weights to the compute dtype (MXFP4 experts on Hopper, which has no fp4 math).
The dequantization is redone for every M tile, so it costs in proportion to the FLOPs and shows
in prefill, not in weight-streaming decode steps. It is fitted on the measured mean TTFT of the
low-concurrency (<= --max-batch) aggregated rows whose GEMMs upcast, each simulated by the serving
simulator as benchmarks/serving_silicon.py does (host constants as fitted): a grid search on the
sum of squared log errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
from pathlib import Path

import itertools
import math
import os
import tempfile

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import moe_fidelity as mf  # noqa: E402
from simcore.config.experiment import Experiment, resolve  # noqa: E402
from simcore.config.validation import validate  # noqa: E402
from simcore.cost.roofline import grouped_gemm_waves  # noqa: E402
from simcore.ops.builder import StageBuilder  # noqa: E402
from simcore.run.static import StaticSimulator  # noqa: E402
from simcore.ops.passes import decode  # noqa: E402

PROFILE = ROOT / "hardware" / "efficiency" / "h100-calibrated.yaml"


def samples(data: dict, max_batch: int) -> list[tuple[str, int, int, float, float]]:
    """(engine, MoE layers, grouped-GEMM tile waves, measured s, simcore s without the fixed costs) per row."""
    out, sims = [], {}
    for r in mf.moe_rows(data, max_batch):
        if int(r.get("attention_dp_size") or 1) > 1:
            continue
        exp = mf.experiment(r)
        run = resolve(validate(Experiment, exp, "row"))
        eff = run.system.efficiency.model_copy(update={"moe_layer_us": 0.0, "moe_tile_us": 0.0})
        run = dataclasses.replace(run, system=run.system.model_copy(update={"efficiency": eff}))
        key = (exp["model"], str(exp["parallelism"]), exp["precision"]["weights"])
        sim = sims.get(key) or sims.setdefault(key, StaticSimulator(run))
        isl, osl, b = int(r["isl"]), int(r["osl"]), int(r["batch_size"])
        ps = decode(b, isl + osl // 2)
        step = sim.pass_(ps).time
        waves = sum(grouped_gemm_waves(run.system, op.shape) for op in StageBuilder(run, 0).ops(ps)
                    if op.family == "gemm" and len(op.shape) == 4)
        out.append((r["backend"], sum(run.model.moe_layers), waves, float(r["silicon_tpot_ms"]) * 1e-3, step))
    return out


def fit(rows: list[tuple[str, int, int, float, float]]) -> tuple[float, float, dict[str, float]]:
    engines = sorted({e for e, *_ in rows})
    a = np.zeros((len(rows), 2 + len(engines)))
    y = np.zeros(len(rows))
    for i, (eng, layers, waves, meas, pred) in enumerate(rows):
        a[i, 0] = layers / meas
        a[i, 1] = waves / meas
        a[i, 2 + engines.index(eng)] = 1 / meas
        y[i] = (meas - pred) / meas
    best, x = np.inf, np.zeros(a.shape[1])
    for k in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), k):
            sol = np.linalg.lstsq(a[:, cols], y, rcond=None)[0]
            if (sol < 0).any():
                continue
            cost = float(((a[:, cols] @ sol - y) ** 2).sum())
            if cost < best:
                best, x = cost, np.zeros(a.shape[1])
                x[list(cols)] = sol
    c, w, *h = x
    return float(c), float(w), dict(zip(engines, map(float, h)))


def set_line(path: Path, key: str, line: str) -> None:
    """Replace the profile's top-level `key:` line with `line`, or append it (fitted constants keep their source)."""
    text = path.read_text()
    if re.search(rf"^{key}:.*$", text, flags=re.M):
        text = re.sub(rf"^{key}:.*$", lambda _: line, text, flags=re.M)
    else:
        text = text.rstrip("\n") + "\n" + line + "\n"
    path.write_text(text)


def write(values: dict[str, float], n: int, path: Path = PROFILE) -> None:
    for key, v in values.items():
        set_line(path, key, f"{key}: {v:.2f}  # fitted by benchmarks/fit_moe.py to {n} low-concurrency MoE TPOT rows "
                            "of shared/calibration/serving_h100.json (per-engine host time fitted alongside, not stored)")


def upcast_rows(data: dict, max_batch: int) -> list[tuple[dict, float]]:
    """(experiment, measured mean TTFT in s) of the low-concurrency aggregated rows with upcast GEMMs."""
    from simcore.ops.passes import prefill
    from simcore.serving.silicon import Refused, experiment_for_row

    out = []
    for r in data["rows"]:
        c = int(r.get("batch_size") or 0)
        if r["mode"] != "agg" or not 0 < c <= max_batch:
            continue
        try:
            exp = experiment_for_row(r)
        except Refused:
            continue
        run = resolve(validate(Experiment, exp, "row"))
        if any(op.upcast for op in StageBuilder(run, 0).ops(prefill(1, 64))):
            out.append((exp, float(r["silicon_ttft_ms"]) * 1e-3))
    return out


def ttft_errors(rows: list[tuple[dict, float]], upcast: float) -> list[float]:
    """log(simulated / measured TTFT) per row with `upcast_gemm` = upcast in the H100 profile."""
    from simcore.config.hardware import PROFILES_ENV, clear_caches
    from simcore.validate.compare import simulate

    text = re.sub(r"^upcast_gemm:.*\n?", "", PROFILE.read_text(), flags=re.M).rstrip("\n")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / PROFILE.name).write_text(f"{text}\nupcast_gemm: {upcast}\n")
        old = os.environ.get(PROFILES_ENV)
        os.environ[PROFILES_ENV] = tmp
        clear_caches()
        try:
            out = []
            for exp, meas in rows:
                res = simulate(exp)
                if "latency" in res:
                    out.append(math.log(res["latency"]["ttft"]["mean"] * 1e-3 / meas))
        finally:
            os.environ.pop(PROFILES_ENV) if old is None else os.environ.__setitem__(PROFILES_ENV, old)
            clear_caches()
    return out


def fit_upcast(rows: list[tuple[dict, float]]) -> tuple[float, dict[float, list[float]]]:
    grid = [round(0.1 + 0.05 * i, 2) for i in range(19)]  # 0.10 .. 1.00
    errs = {g: ttft_errors(rows, g) for g in grid}
    best = min(grid, key=lambda g: sum(e * e for e in errs[g]))
    return best, errs


def write_upcast(value: float, n: int, path: Path = PROFILE) -> None:
    set_line(path, "upcast_gemm", f"upcast_gemm: {value:.2f}  # fitted by benchmarks/fit_moe.py --upcast to the mean "
                                   f"TTFT of {n} low-concurrency rows with MXFP4 experts of shared/calibration/serving_h100.json")


def main_upcast(args) -> int:
    rows = upcast_rows(json.loads(args.data.read_text()), args.max_batch)
    best, errs = fit_upcast(rows)
    print(f"rows: {len(rows)} (TTFT, aggregated, batch_size <= {args.max_batch}, GEMMs that upcast their weights)")
    for g in (1.0, best):
        e = errs[g]
        print(f"upcast_gemm = {g:.2f}: median |TTFT error| {100 * statistics.median(abs(math.expm1(x)) for x in e):.1f}%, "
              f"signed {100 * math.expm1(statistics.median(e)):+.1f}%, rms log {math.sqrt(sum(x * x for x in e) / len(e)):.3f}")
    if args.write:
        write_upcast(best, len(rows))
        print(f"wrote upcast_gemm to {PROFILE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=mf.DEFAULT_DATA)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--write", action="store_true", help=f"store the fitted value in {PROFILE.name}")
    ap.add_argument("--upcast", action="store_true", help="fit upcast_gemm on TTFT rows instead (see above)")
    args = ap.parse_args(argv)
    if args.upcast:
        return main_upcast(args)
    rows = samples(json.loads(args.data.read_text()), args.max_batch)
    c, w, h = fit(rows)
    print(f"rows: {len(rows)} (engines: {', '.join(sorted(h))})")
    print(f"moe_layer_us = {c * 1e6:.2f} us per MoE layer")
    print(f"moe_tile_us = {w * 1e6:.2f} us per grouped-GEMM tile wave")
    for eng, v in h.items():
        print(f"  host time per step, {eng} (nuisance, not stored): {v * 1e3:.2f} ms")
    for label, cc, ww in (("without", 0.0, 0.0), ("with", c, w)):
        errs = [abs((p + layers * cc + waves * ww + h[e]) / m - 1) for e, layers, waves, m, p in rows]
        bare = [abs((p + layers * cc + waves * ww) / m - 1) for e, layers, waves, m, p in rows]
        print(f"{label} the fixed costs: median |error| {100 * statistics.median(bare):.1f}% "
              f"(with the host terms: {100 * statistics.median(errs):.1f}%)")
    if args.write:
        write({"moe_layer_us": c * 1e6, "moe_tile_us": w * 1e6}, len(rows))
        print(f"wrote moe_layer_us to {PROFILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
