"""Fit `scaled_mm_fp8_us`: the fixed cost of TensorRT-LLM's per-tensor fp8 GEMM (cublas_scaled_mm) on an H100.

    python benchmarks/fit_scaled_mm.py [--data benchmarks/data/trtllm_linear_h100.json] [--write]
    python benchmarks/fit_scaled_mm.py --extract GEMM.parquet COMPUTESCALE.parquet   (needs pyarrow)

The data are aiconfigurator's H100 TensorRT-LLM 1.2.0rc5 kernel tables (ai-dynamo/aiconfigurator @095f58a5,
aic-core/src/aiconfigurator_core/systems/data/h100_sxm/{gemm,quantize}/trtllm/1.2.0rc5/): the Linear benchmark's
decode-sized rows (M <= 128, at least 16 MB of fp8 weights: where a fixed cost shows against the weight stream)
and the dynamic-scale computation it includes. `--extract` writes those rows to the JSON this script reads (H100
kernel timings only, no serving latency). The fit: each row's measured time minus simcore's price of the same
linear on h100-sxm (its quantize kernel and GEMM, as simcore.ops.builder emits them; for fp8 less the dynamic
scale computation, which a static-scale checkpoint does not run: aiconfigurator subtracts it the same way) is
fitted, per dtype, as a + b x (the weight stream's time) by least squares. Both dtypes share the proportional
part b (bf16 rows of TensorRT-LLM are already priced within a few % by the serving fit); the fixed part a is
fp8-specific only by its excess over bf16's, a_fp8 - a_bf16, which is the constant. `--write` stores it in
hardware/efficiency/h100-calibrated.yaml with where it came from (docs/cost-model.md, "Per-tensor fp8 GEMMs in
TensorRT-LLM").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fit_moe import set_line  # noqa: E402
from simcore.config.hardware import load_system  # noqa: E402
from simcore.cost.calibration import gemm_ops  # noqa: E402
from simcore.cost.roofline import Pricer  # noqa: E402
from simcore.ops.op import COMPUTE, MEMORY, Op  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "trtllm_linear_h100.json"
PROFILE = ROOT / "hardware" / "efficiency" / "h100-calibrated.yaml"
MAX_M, MIN_WEIGHTS = 128, 16e6  # decode-sized rows with >= 16 MB of fp8 weights
SOURCE = ("ai-dynamo/aiconfigurator @095f58a5, aic-core/src/aiconfigurator_core/systems/data/h100_sxm/"
          "{gemm,quantize}/trtllm/1.2.0rc5/{gemm_perf,computescale_perf}.parquet")


def extract(gemm: Path, scale: Path, out: Path = DATA) -> int:
    import pyarrow.parquet as pq  # only to read the upstream tables once

    g = [r for r in pq.read_table(gemm).to_pylist()
         if r["gemm_dtype"] in ("fp8", "bfloat16") and 1 <= r["m"] <= MAX_M and r["n"] * r["k"] >= MIN_WEIGHTS]
    s = [r for r in pq.read_table(scale).to_pylist() if r["quant_dtype"] == "fp8"]
    doc = {"about": f"H100 TensorRT-LLM 1.2.0rc5 kernel timings (ms), from {SOURCE}: Linear (gemm_dtype fp8: "
                    f"per-tensor fp8 with a dynamic scale; bfloat16) at 1 <= m <= {MAX_M} and n x k >= {MIN_WEIGHTS:.0f}, "
                    "and the fp8 dynamic scale computation (compute_scale) by m and k. Written by "
                    "benchmarks/fit_scaled_mm.py --extract; read by its fit.",
           "gemm": [[r["gemm_dtype"], r["m"], r["n"], r["k"], round(r["latency"], 6)] for r in g],
           "gemm_columns": ["gemm_dtype", "m", "n", "k", "latency"],
           "compute_scale": [[r["m"], r["k"], round(r["latency"], 6)] for r in s],
           "compute_scale_columns": ["m", "k", "latency"]}
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return len(g)


def scale_ms(table: list[dict], m: int, k: int) -> float:
    """The dynamic scale computation at (m, k): the measured point, else linear in m x k between the nearest."""
    exact = [ms for rm, rk, ms in table if (rm, rk) == (m, k)]
    if exact:
        return float(exact[0])
    pts = sorted((rm * rk, ms) for rm, rk, ms in table)
    x = m * k
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return float(np.interp(x, xs, ys))


def priced_s(pricer: Pricer, m: int, n: int, k: int, dtype: str) -> tuple[float, float]:
    """(simcore's price of the linear, its weight stream's time), in seconds, on the pricer's system."""
    gemm = gemm_ops({"M": m, "K": k, "N": n, "dtype": "fp8" if dtype == "fp8" else "bf16"})[0]
    t = pricer.time(gemm)
    if dtype == "fp8":  # the input-quantize kernel: 16-bit rows in, 8-bit out (simcore.ops.builder input_quant)
        t += pricer.time(Op("input_quant", COMPUTE, MEMORY, 0, bytes=m * k * 3.0, act_bytes=m * k * 3.0))
    weights = n * k * (1 if dtype == "fp8" else 2)
    return t, weights / (pricer.system.gpu.memory.bandwidth_gbps * 1e9 * pricer.system.efficiency.gemm.memory)


def fit(doc: dict) -> dict:
    """Per dtype, least squares of residual = a + b x stream (us); the constant is a_fp8 - a_bf16."""
    pricer = Pricer(load_system("h100-sxm"))
    out = {}
    for dtype, label in (("fp8", "fp8"), ("bfloat16", "bf16")):
        xs, ys = [], []
        for kind, m, n, k, ms in doc["gemm"]:
            if kind != dtype:
                continue
            measured = ms * 1e-3
            if dtype == "fp8":
                measured -= scale_ms(doc["compute_scale"], m, k) * 1e-3
            t, stream = priced_s(pricer, m, n, k, dtype)
            xs.append(stream * 1e6)
            ys.append((measured - t) * 1e6)
        a = np.vstack([np.ones(len(xs)), xs]).T
        (c0, c1), *_ = np.linalg.lstsq(a, np.array(ys), rcond=None)
        out[label] = {"rows": len(xs), "fixed_us": float(c0), "per_stream_us": float(c1)}
    out["scaled_mm_fp8_us"] = round(2 * (out["fp8"]["fixed_us"] - out["bf16"]["fixed_us"])) / 2  # to 0.5 us
    return out


def fit_file(path: Path, fit, allowed: str) -> dict | None:
    """fit(the JSON table at path), or None after one error line naming --data (an unreadable file, or one that is
    not the table `--extract` writes: `allowed` shows its shape)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: --data {path}: {exc}", file=sys.stderr)
        return None
    try:
        return fit(doc)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        print(f"error: --data {path}: not a table written by --extract (allowed: {allowed})", file=sys.stderr)
        return None


def write(value: float, rows: int, path: Path = PROFILE) -> None:
    line = (f"scaled_mm_fp8_us: {value:.1f}  # fitted by benchmarks/fit_scaled_mm.py: fp8 minus bf16 fixed excess over "
            f"simcore of {rows} decode-sized TensorRT-LLM 1.2.0rc5 Linears on H100 ({SOURCE.split(',')[0]})")
    set_line(path, "scaled_mm_fp8_us", line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--extract", nargs=2, type=Path, metavar=("GEMM.parquet", "COMPUTESCALE.parquet"))
    ap.add_argument("--write", action="store_true", help=f"store the constant in {PROFILE.name}")
    a = ap.parse_args(argv)
    if a.extract:
        print(f"wrote {extract(*a.extract, out=a.data)} rows to {a.data}")
        return 0
    f = fit_file(a.data, fit, '{"gemm": [[gemm_dtype, m, n, k, ms], ...], "compute_scale": [[m, k, ms], ...]}')
    if f is None:
        return 2
    for label in ("fp8", "bf16"):
        r = f[label]
        print(f"{label:5s} {r['rows']:5d} rows: measured - simcore = {r['fixed_us']:.2f} us + "
              f"{100 * r['per_stream_us']:.1f}% of the weight stream")
    print(f"scaled_mm_fp8_us = {f['scaled_mm_fp8_us']:.1f} us (fp8's fixed excess over bf16's)")
    if a.write:
        write(f["scaled_mm_fp8_us"], f["fp8"]["rows"] + f["bf16"]["rows"])
        print(f"wrote {PROFILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
