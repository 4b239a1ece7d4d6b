"""Fit the H100 efficiency profile to the H100 microbenchmarks and write it.

    python benchmarks/calibrate.py [--data PATH] [--out PATH]

Fits kernel_floor_us, gemm.{compute_max, m_half, memory}, attention_prefill.{compute_max,
s_half} and attention_decode_memory by minimizing sum(log(predicted / measured)^2) over the
gemm rows, the HBM-resident decode_attn rows and the prefill_attn rows. Every row is priced
through the real Pricer with the Ops the builder emits (simcore/cost/calibration.py), so the
fit is of the simulator as it runs. The other fields are derived or kept (see the comments
written into the YAML).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from op_fidelity import summary_table  # noqa: E402
from simcore.config.hardware import load_system  # noqa: E402
from simcore.cost import calibration as cal  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "calibration" / "h100_microbench.json"
DEFAULT_OUT = ROOT / "hardware" / "efficiency" / "h100-calibrated.yaml"
H2D_GBPS = 51.0  # facts.md §4: nvbandwidth host->device on H100 (Azure ND_H100_v5)

# name: (lower bound, upper bound, scale of the parameter for the optimizer)
BOUNDS = {
    "kernel_floor_us": (0.0, 20.0, 1.0),
    "gemm.compute_max": (0.2, 1.0, 0.1),
    "gemm.m_half": (0.0, 5000.0, 30.0),
    "gemm.memory": (0.3, 1.0, 0.1),
    "attention_prefill.compute_max": (0.1, 1.0, 0.1),
    "attention_prefill.s_half": (0.0, 1e5, 500.0),
    "attention_decode_memory": (0.3, 1.0, 0.1),
}
# Fixed starting points (the fit must not depend on whatever profile is on disk): the
# original estimate and two spread around it. The best final cost wins.
STARTS = (
    (4.5, 0.74, 30.0, 0.91, 0.66, 850.0, 0.92),
    (3.0, 0.60, 100.0, 0.80, 0.50, 2000.0, 0.80),
    (7.0, 0.85, 10.0, 0.97, 0.80, 300.0, 0.97),
)
NAMES = [n for n, _ in cal.FIT_PARAMS]


def residuals_fn(rows, base):
    def res(x: np.ndarray) -> np.ndarray:
        system = cal.with_params(base, dict(zip(NAMES, x)))
        return np.array([np.log(p.predicted_s / p.measured_s) for p in cal.predict(rows, system)])
    return res


def coordinate_descent(res, x0, lo, hi, iters: int = 400):
    """Fallback without scipy: deterministic pattern search on each coordinate in turn."""
    x = np.array(x0, float)
    step = np.full(len(x), 0.2)
    cost = float(np.sum(res(x) ** 2))
    for _ in range(iters):
        improved = False
        for i in range(len(x)):
            for sign in (1.0, -1.0):
                y = x.copy()
                y[i] = np.clip(x[i] * (1 + sign * step[i]) if x[i] else step[i], lo[i], hi[i])
                c = float(np.sum(res(y) ** 2))
                if c < cost:
                    x, cost, improved = y, c, True
                    break
            else:
                step[i] /= 2
        if not improved and step.max() < 1e-5:
            break
    return x, cost, "numpy coordinate descent (pattern search)"


def fit(rows, base):
    res = residuals_fn(rows, base)
    lo = np.array([BOUNDS[n][0] for n in NAMES])
    hi = np.array([BOUNDS[n][1] for n in NAMES])
    try:
        from scipy.optimize import least_squares
    except ImportError:
        return min((coordinate_descent(res, x0, lo, hi) for x0 in STARTS), key=lambda t: t[1])
    scale = np.array([BOUNDS[n][2] for n in NAMES])
    best = min((least_squares(res, x0, bounds=(lo, hi), x_scale=scale, method="trf") for x0 in STARTS),
               key=lambda r: r.cost)
    return best.x, 2 * best.cost, f"scipy.optimize.least_squares (trf, bounded), best of {len(STARTS)} fixed starts"


def rounded(values: dict[str, float]) -> dict[str, float]:
    """What goes into the YAML (errors are recomputed from these, not the raw optimum)."""
    out = {}
    for n, v in values.items():
        out[n] = round(v, 1) if n.endswith(("m_half", "s_half")) else round(v, 2 if n.endswith("_us") else 3)
    return out


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render(p: dict, keep, memory: float, host: float, head: list[str], source: str, copy_gbps: float,
           spec_gbps: float, host_gbps: float) -> str:
    c = keep.collectives
    lines = [f"# {h}" if h else "#" for h in head]
    lines += [
        "kind: efficiency",
        "name: h100-calibrated",
        "measured_on: h100-sxm",
        f'source: "{source}"',
        f"kernel_floor_us: {p['kernel_floor_us']}  # fitted (shared by gemm and attention kernels)",
        f"elementwise_floor_us: {keep.elementwise_floor_us}  # estimate, kept: CUDA-graph launch of a small"
        " memory-bound kernel (not in the microbench); aiconfigurator uses 3 us per op (facts.md §4)",
        "gemm:",
        f"  compute_max: {p['gemm.compute_max']}  # fitted",
        f"  m_half: {p['gemm.m_half']}  # fitted (tokens)",
        f"  memory: {p['gemm.memory']}  # fitted (weight streaming, small M)",
        f"  compute_max_fp8: {keep.gemm.compute_max_fp8}  # kept: from facts.md §4, cuBLASLt FP8 1,290-1,382 TFLOPS"
        " at 8k^3-32k^3 = 65-70% of 1,979 (not in the bf16 microbench)",
        "attention_prefill:",
        f"  compute_max: {p['attention_prefill.compute_max']}  # fitted (4 rows; also prices decode-attention FLOPs)",
        f"  s_half: {p['attention_prefill.s_half']}  # fitted (tokens)",
        f"attention_decode_memory: {p['attention_decode_memory']}  # fitted on HBM-resident decode_attn rows only",
        f"memory: {memory}  # derived from the file: device.copy_rw_GBps {copy_gbps:.0f} / spec {spec_gbps:.0f} GB/s",
        f"host_link: {host}  # derived from facts.md §4: nvbandwidth H2D {H2D_GBPS:.0f} of {host_gbps:.0f} GB/s"
        " (PCIe Gen5 x16, one way); not in the microbench",
        "collectives:  # kept; not in the microbench",
        f"  ring_link: {c.ring_link}  # facts.md §4: NCCL maintainer, ring ~370 of 450 GB/s NVLink4 line rate",
        f"  nvls_link: {c.nvls_link}  # facts.md §4: NVLS peak busbw ~480 GB/s on 8 GPUs -> algbw 274 x 7/8 / 450",
        f"  nvls_latency_us: {c.nvls_latency_us}  # estimate, kept (8-GPU 64 MiB all-reduce -> ~304 us vs facts.md §4's ~325 us)",
        f"  nccl_step_latency_us: {c.nccl_step_latency_us}  # estimate, kept: 1 KiB all-reduce on 8 H100s ="
        " 14 steps x (1.0 link + 0.5) + floor ~ 26 us (facts.md §4)",
        f"  network_link: {c.network_link}  # estimate, kept (facts.md has no measured inter-node figure)",
        f"moe_layer_us: {keep.moe_layer_us}  # kept: fitted by benchmarks/fit_moe.py (serving_h100.json MoE rows)",
        f"moe_tile_us: {keep.moe_tile_us}  # kept: fitted by benchmarks/fit_moe.py (serving_h100.json MoE rows)",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    con = Console()

    bench = cal.load_bench(args.data)
    l2 = bench["meta"]["l2_bytes"]
    base = load_system("h100-sxm")
    every = cal.bench_rows(bench)
    rows = [(f, r) for f, r in every if not cal.l2_resident(f, r, l2)]
    n = {fam: sum(1 for f, _ in rows if f == fam) for fam in cal.FAMILIES}
    n_l2 = len(every) - len(rows)
    con.print(f"[bold]Calibrating[/] against {args.data}")
    con.print(f"{n_l2} decode_attn rows have KV <= L2 ({l2 / 2**20:.0f} MiB): the benchmark reused its KV "
              "buffers, so they ran partly from L2 at above-HBM speed. A real decode step never has a layer's "
              "KV in L2, so they are [bold]reported but not fitted[/] (marked 'L2-resident in the benchmark').")

    x, cost, method = fit(rows, base)
    raw = dict(zip(NAMES, map(float, x)))
    params = rounded(raw)
    spec = base.gpu.memory.bandwidth_gbps
    copy_gbps = bench["device"]["copy_rw_GBps"]
    memory = round(copy_gbps / spec, 3)
    host_gbps = base.gpu.links.host.bandwidth_gbps
    host = round(H2D_GBPS / host_gbps, 3)
    fitted = cal.with_params(base, params)
    eff = fitted.efficiency.model_copy(update={"memory": memory, "host_link": host})
    fitted = fitted.model_copy(update={"efficiency": eff})
    preds = cal.predict(every, fitted)
    table = cal.error_table(preds, l2)

    t = Table(title="Fitted parameters")
    for col in ("parameter", "value", "bounds", "origin"):
        t.add_column(col)
    for name in NAMES:
        lo, hi, _ = BOUNDS[name]
        t.add_row(name, f"{params[name]:g}", f"[{lo:g}, {hi:g}]", "fitted")
    t.add_row("memory", f"{memory:g}", "", f"derived: copy_rw {copy_gbps:.0f} / {spec:.0f} GB/s")
    t.add_row("host_link", f"{host:g}", "", f"facts.md §4: H2D {H2D_GBPS:.0f} / {host_gbps:.0f} GB/s")
    con.print(t)
    con.print(f"method: {method}; sum of squared log errors {cost:.4f} over {len(rows)} rows")
    con.print(summary_table(table))

    rel = args.data.resolve()
    rel = rel.relative_to(ROOT.parent) if rel.is_relative_to(ROOT.parent) else rel
    source = (f"fitted by benchmarks/calibrate.py to {rel} (gemm {n['gemm']} rows, decode_attn "
              f"{n['decode_attn']} HBM-resident rows, prefill_attn {n['prefill_attn']} rows)")

    def line(fam: str) -> str:
        a, h = table[fam]["all"], table[fam]["hbm"]
        extra = "" if a.count == h.count else f"; all {a.count} rows incl. L2-resident: {pct(a.median_abs)} / {pct(a.max_abs)}"
        return f"  {fam}: {h.count} rows: {pct(h.median_abs)} / {pct(h.max_abs)}{extra}"

    head = [
        "H100 SXM efficiency profile. Written by benchmarks/calibrate.py; rerun it rather than editing by hand.",
        f"Source: {rel} (H100 80GB HBM3, PyTorch {bench['meta'].get('torch', '?')}, bf16, CUDA-event medians).",
        f"Method: {method}, minimizing sum(log(predicted/measured)^2)",
        "  with every row priced by simcore's Pricer through the Ops the builder emits (simcore/cost/calibration.py).",
        f"  decode_attn rows with KV <= L2 ({n_l2}) are not fitted: the benchmark reused its KV buffers, so they",
        "  ran partly from L2; a real decode step streams each layer's KV from HBM.",
        f"Date: {datetime.date.today().isoformat()}",
        "Resulting |relative error|, median / max (HBM-resident rows):",
        *[line(f) for f in cal.FAMILIES],
        "Check: python benchmarks/op_fidelity.py",
        "",
    ]
    args.out.write_text(render(params, base.efficiency, memory, host, head, source, copy_gbps, spec, host_gbps))
    con.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
