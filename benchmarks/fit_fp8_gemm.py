"""Fit `gemm.compute_max_fp8`: the H100's fp8 GEMM ceiling, from compute-bound per-tensor fp8 Linears.

    python benchmarks/fit_fp8_gemm.py [--data benchmarks/data/trtllm_gemm_h100.json] [--write]
    python benchmarks/fit_fp8_gemm.py --extract GEMM.parquet   (needs pyarrow)

The data are aiconfigurator's H100 TensorRT-LLM 1.2.0rc5 Linear table (ai-dynamo/aiconfigurator @095f58a5,
aic-core/src/aiconfigurator_core/systems/data/h100_sxm/gemm/trtllm/1.2.0rc5/gemm_perf.parquet), its compute-bound
shapes: M >= 1024 and, at the fp8 peak, FLOPs that take at least as long as the bytes at the HBM bandwidth and at
least 20 us (four kernel floors). `--extract` writes those rows (fp8, bfloat16 and fp8_block at each shape; H100
kernel timings only) to the JSON this script reads; the fp8 rows' dynamic scale computation is subtracted with
fit_scaled_mm.py's table (benchmarks/data/trtllm_linear_h100.json), as for scaled_mm_fp8_us.

The fit (docs/cost-model.md, "The fp8 GEMM ceiling"): compute_max_fp8 minimises the sum over the fp8 rows of
log(simcore's price / measured)^2, each row priced as simcore prices a TensorRT-LLM per-tensor fp8 linear (its
input-quantize kernel, the GEMM, scaled_mm_fp8_us). The absolute fp8 rows are used, not the fp8 / bf16 time ratio
of each shape: the table's bf16 bias against simcore's microbench-fitted bf16 differs between aiconfigurator's
tables (+2.5% to +8.7%) while their fp8 ceilings agree (0.59-0.615), so dividing by bf16 would import the bf16
kernels' spread, not cancel a common harness bias. The ratio fit and the fp8_block rows (which simcore prices on
the same ceiling) are printed beside it, not used. `--write` stores the value with its source in
hardware/efficiency/h100-calibrated.yaml.
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
from fit_scaled_mm import DATA as SCALE_DATA  # noqa: E402
from fit_scaled_mm import fit_file, priced_s, scale_ms  # noqa: E402
from simcore.config.hardware import load_system  # noqa: E402
from simcore.cost.calibration import gemm_ops  # noqa: E402
from simcore.cost.roofline import Pricer  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "trtllm_gemm_h100.json"
PROFILE = ROOT / "hardware" / "efficiency" / "h100-calibrated.yaml"
MIN_M, MIN_COMPUTE_S = 1024, 20e-6
DTYPES = ("fp8", "bfloat16", "fp8_block")
GRID = np.arange(0.30, 1.0, 0.0005)  # candidate ceilings
SOURCE = ("ai-dynamo/aiconfigurator @095f58a5, aic-core/src/aiconfigurator_core/systems/data/h100_sxm/"
          "gemm/trtllm/1.2.0rc5/gemm_perf.parquet")


def compute_bound(m: int, n: int, k: int, gpu) -> bool:
    """M >= 1024, and at the fp8 peak the FLOPs outlast both the bytes at the HBM bandwidth and 20 us."""
    flops_s = 2.0 * m * n * k / gpu.peak_flops("fp8")
    bytes_s = (n * k + 2 * (m * k + m * n)) / gpu.memory.bandwidth
    return m >= MIN_M and flops_s >= max(bytes_s, MIN_COMPUTE_S)


def extract(gemm: Path, out: Path = DATA) -> int:
    import pyarrow.parquet as pq  # only to read the upstream table once

    gpu, by = load_system("h100-sxm").gpu, {}
    for r in pq.read_table(gemm).to_pylist():
        if r["gemm_dtype"] in DTYPES and compute_bound(r["m"], r["n"], r["k"], gpu):
            by.setdefault((r["m"], r["n"], r["k"]), {})[r["gemm_dtype"]] = round(r["latency"], 5)
    rows = [[m, n, k, *(t[d] for d in DTYPES)] for (m, n, k), t in sorted(by.items()) if all(d in t for d in DTYPES)]
    doc = {"about": f"H100 TensorRT-LLM 1.2.0rc5 Linear kernel timings (ms), from {SOURCE}: the shapes with m >= "
                    f"{MIN_M} where the fp8 FLOPs at peak outlast the bytes at HBM bandwidth and {MIN_COMPUTE_S * 1e6:.0f}"
                    " us, timed in all three dtypes (fp8: per-tensor with a dynamic scale; bfloat16; fp8_block: "
                    "1x128 / 128x128 block scales). Written by benchmarks/fit_fp8_gemm.py --extract; read by its fit.",
           "columns": ["m", "n", "k", *(f"{d}_ms" for d in DTYPES)],
           "rows": rows}
    out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return len(rows)


def _log_errors(pricer: Pricer, rows: list, dtype: str, scale: list | None) -> np.ndarray:
    """log(priced / measured) of every row at each ceiling of GRID: (rows, grid)."""
    c0 = pricer.system.efficiency.gemm.compute_max_fp8
    col = 3 + DTYPES.index(dtype)
    out = []
    for r in rows:
        m, n, k = r[:3]
        measured = r[col] * 1e-3 - (scale_ms(scale, m, k) * 1e-3 if dtype == "fp8" else 0.0)
        cost = pricer.cost(gemm_ops({"M": m, "K": k, "N": n, "dtype": "fp8"})[0])
        # the input-quantize kernel; TensorRT-LLM's per-tensor fp8 (cublas_scaled_mm) pays scaled_mm_fp8_us too,
        # its block-scaled linear does not (docs/cost-model.md)
        rest = priced_s(pricer, m, n, k, "fp8")[0] - cost.total
        if dtype == "fp8":
            rest += pricer.system.efficiency.scaled_mm_fp8_us * 1e-6
        # only the compute term moves with the ceiling (gemm_compute_efficiency is proportional to it)
        priced = np.maximum(cost.compute_s * c0 / GRID, cost.memory_s) + cost.floor_s + rest
        out.append(np.log(priced / measured))
    return np.array(out)


def fit(doc: dict) -> dict:
    pricer = Pricer(load_system("h100-sxm"))
    scale = json.loads(SCALE_DATA.read_text())["compute_scale"]
    rows = doc["rows"]
    bf16 = np.array([np.log(priced_s(pricer, m, n, k, "bf16")[0] / (t * 1e-3)) for m, n, k, _, t, _ in rows])
    fp8 = _log_errors(pricer, rows, "fp8", scale)
    block = _log_errors(pricer, rows, "fp8_block", None)

    def best(logs: np.ndarray) -> float:
        return float(GRID[np.argmin((logs ** 2).sum(axis=0))])

    ratio, absolute = best(fp8 - bf16[:, None]), best(fp8)
    value = round(absolute * 200) / 200  # to 0.005
    at = int(np.argmin(abs(GRID - value)))
    now = int(np.argmin(abs(GRID - pricer.system.efficiency.gemm.compute_max_fp8)))
    med = lambda x: float(np.median(np.expm1(x)))  # noqa: E731
    return {"rows": len(rows), "ratio": ratio, "absolute": absolute, "fp8_block_absolute": best(block),
            "compute_max_fp8": value,
            "bf16_median": med(bf16),
            "fp8_median": {"now": med(fp8[:, now]), "fitted": med(fp8[:, at])},
            "fp8_vs_bf16_median": {"now": med(fp8[:, now] - bf16), "fitted": med(fp8[:, at] - bf16)},
            "fp8_block_median": {"now": med(block[:, now]), "fitted": med(block[:, at])},
            "fp8_tflops_median": float(np.median([2 * m * n * k / (t * 1e-3 - scale_ms(scale, m, k) * 1e-3) / 1e12
                                                  for m, n, k, t, _, _ in rows]))}


def write(value: float, rows: int, path: Path = PROFILE) -> None:
    line = (f"  compute_max_fp8: {value:.3f}  # fitted by benchmarks/fit_fp8_gemm.py to {rows} compute-bound per-tensor "
            f"fp8 TensorRT-LLM 1.2.0rc5 Linears on H100 ({SOURCE.split(',')[0]}); was 0.66 from facts.md §4 cuBLASLt 8k^3")
    set_line(path, "  compute_max_fp8", line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--extract", type=Path, metavar="GEMM.parquet")
    ap.add_argument("--write", action="store_true", help=f"store the ceiling in {PROFILE.name}")
    a = ap.parse_args(argv)
    if a.extract:
        print(f"wrote {extract(a.extract, out=a.data)} shapes to {a.data}")
        return 0
    f = fit_file(a.data, fit, f'{{"rows": [[m, n, k, {", ".join(f"{d}_ms" for d in DTYPES)}], ...]}}')
    if f is None:
        return 2
    pct = lambda x: f"{100 * x:+.1f}%"  # noqa: E731
    print(f"{f['rows']} compute-bound shapes (M >= {MIN_M}); fp8 measured median {f['fp8_tflops_median']:.0f} TFLOPS")
    print(f"bf16 priced / measured - 1, median: {pct(f['bf16_median'])} (simcore's bf16 is fitted on the shared microbench)")
    for key, label in (("fp8_median", "fp8"), ("fp8_vs_bf16_median", "fp8 relative to its shape's bf16"),
                       ("fp8_block_median", "fp8_block")):
        print(f"{label}, median: {pct(f[key]['now'])} now, {pct(f[key]['fitted'])} at the fitted ceiling")
    print(f"least-squares ceiling: ratio {f['ratio']:.4f}, absolute {f['absolute']:.4f}, "
          f"fp8_block absolute {f['fp8_block_absolute']:.4f} (not fitted: docs/cost-model.md)")
    print(f"compute_max_fp8 = {f['compute_max_fp8']:.3f} (absolute fit)")
    if a.write:
        write(f["compute_max_fp8"], f["rows"])
        print(f"wrote {PROFILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
