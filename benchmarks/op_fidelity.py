"""Op-level fidelity: every calibrated GPU's profile against its own microbenchmarks.

    python benchmarks/op_fidelity.py [--data PATH] [--gpu NAME=PATH ...] [--heldout NAME=PATH ...]

For each GPU priced with a profile measured on it (`simcore calibrate`; h100-sxm ships with
one), prices every row of its microbenchmark file (--data is h100-sxm's, default the shared
file; --gpu NAME=PATH names another's, else the path in the profile's `source` is tried)
through Pricer with the system exactly as the simulator loads it, prints a table per family
and a summary against the targets
(median |err| <= 10% overall, no family's max |err| over 25%), then a cross-check against
Vidur's GEMM profiles (facts.md §2e) on H100 and A100 that the fit never saw, then every held-out
file (--heldout, default the H200 files in benchmarks/data, measured with `simcore profile` on one
H200: docs/calibration.md) priced as the simulator prices that GPU from its spec sheet and the
H100-fitted profile, never fitted to it. Always exits 0: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.calibrate.tables import apct, summary_table  # noqa: E402
from simcore.config.hardware import gpu_names, load_gpu, load_system, profile_info  # noqa: E402
from simcore.cost import calibration as cal  # noqa: E402
from simcore.cost.roofline import Pricer  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "calibration" / "h100_microbench.json"
# measured on one H200 by `simcore profile` (the H100 file's shapes with --shapes, and --quick); not fitted
HELDOUT = ["h200-sxm=" + str(ROOT / "benchmarks" / "data" / f) for f in
           ("h200_microbench_h100_shapes.json", "h200_microbench_quick.json")]
MEDIAN_TARGET, MAX_TARGET = 0.10, 0.25
L2_NOTE = "L2-resident in the benchmark"


def pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def family_table(fam: str, preds: list, l2: float, system) -> Table:
    pricer = Pricer(system)
    t = Table(title=f"{fam}: measured vs predicted ({len(preds)} rows)")
    for col in ("shape", "measured us", "predicted us", "error", "bound", "note"):
        t.add_column(col, justify="left" if col in ("shape", "note") else "right")
    for p in preds:
        ops = cal.OPS[fam](p.row)
        main = max(ops, key=lambda op: pricer.time(op))  # the op that dominates the row's time
        note = L2_NOTE if cal.l2_resident(fam, p.row, l2) else ""
        err = abs(p.rel_err)
        style = "red" if err > MAX_TARGET else ("yellow" if err > MEDIAN_TARGET else None)
        t.add_row(cal.shape_label(fam, p.row), f"{p.measured_s * 1e6:.2f}", f"{p.predicted_s * 1e6:.2f}",
                  pct(p.rel_err), pricer.cost(main).bound, note, style=style)
    return t


def verdicts(table: dict) -> list[str]:
    out = []
    for scope, label in (("hbm", "HBM-resident rows"), ("all", "all rows")):
        med = table["overall"][scope].median_abs
        out.append(f"{label}: overall median |err| {apct(med)} "
                   f"{'meets' if med <= MEDIAN_TARGET else 'MISSES'} the <= {apct(MEDIAN_TARGET)} target")
        for fam in (f for f in cal.FAMILIES if f in table):
            mx = table[fam][scope].max_abs
            if mx > MAX_TARGET:
                why = (" (the L2-resident decode rows: the benchmark's KV stayed in L2, which a real decode "
                       "step never sees)" if scope == "all" and fam == "decode_attn" else "")
                out.append(f"{label}: {fam} max |err| {apct(mx)} MISSES the <= {apct(MAX_TARGET)} target{why}")
            else:
                out.append(f"{label}: {fam} max |err| {apct(mx)} meets the <= {apct(MAX_TARGET)} target")
    return out


# -- cross-check (not fitted): Vidur per-layer GEMM medians, facts.md §2e --------------------------
def llama_gemms(hidden: int, inter: int, heads: int, kv_heads: int, head_dim: int, tp: int) -> dict:
    """name -> (K, N) of the four GEMMs of one Llama layer on one TP rank."""
    return {
        "QKV": (hidden, (heads + 2 * kv_heads) * head_dim // tp),
        "O": (heads * head_dim // tp, hidden),
        "gate+up": (hidden, 2 * inter // tp),
        "down": (inter // tp, hidden),
    }


L2_7B = llama_gemms(4096, 11008, 32, 32, 128, 1)
L2_70B = llama_gemms(8192, 28672, 64, 8, 128, 1)
L2_70B_TP8 = llama_gemms(8192, 28672, 64, 8, 128, 8)
# (label, gpu, gemms, tokens, Vidur sum ms, Vidur per-GEMM ms in QKV, O, gate+up, down order or None)
VIDUR = [
    ("Llama-2-7B TP1", "h100-sxm", L2_7B, 1, 0.156, (0.038, 0.016, 0.064, 0.038)),
    ("Llama-2-7B TP1", "h100-sxm", L2_7B, 128, 0.180, (0.041, 0.020, 0.071, 0.048)),
    ("Llama-2-7B TP1", "h100-sxm", L2_7B, 512, 0.329, (0.090, 0.029, 0.134, 0.075)),
    ("Llama-2-7B TP1", "h100-sxm", L2_7B, 4096, 2.205, (0.584, 0.193, 0.987, 0.441)),
    ("Llama-2-70B TP1", "h100-sxm", L2_70B, 1, 0.593, (0.063, 0.048, 0.311, 0.171)),
    ("Llama-2-70B TP1", "h100-sxm", L2_70B, 4096, 10.09, (0.982, 0.788, 5.668, 2.647)),
    ("Llama-2-70B TP8", "h100-sxm", L2_70B_TP8, 1, 0.087, (0.013, 0.009, 0.043, 0.022)),
    ("Llama-2-70B TP8", "h100-sxm", L2_70B_TP8, 4096, 1.183, (0.151, 0.094, 0.643, 0.296)),
    ("Llama-2-7B TP1", "a100-80gb-sxm", L2_7B, 1, 0.266, None),
    ("Llama-2-7B TP1", "a100-80gb-sxm", L2_7B, 4096, 7.49, None),
]


def cross_check(con: Console) -> list[float]:
    t = Table(title="Cross-check (not fitted): Vidur per-layer GEMM medians, facts.md §2e")
    for col in ("model", "gpu", "tokens", "Vidur ms", "predicted ms", "error", "per-GEMM errors (QKV, O, gate+up, down)"):
        t.add_column(col, justify="left" if col in ("model", "gpu") or col.startswith("per") else "right")
    errs = []
    for label, gpu, gemms, tokens, vidur, parts in VIDUR:
        pricer = Pricer(load_system(gpu))
        each = [pricer.time(cal.gemm_ops({"M": tokens, "K": k, "N": n})[0]) for k, n in gemms.values()]
        err = sum(each) * 1e3 / vidur - 1
        errs.append(err)
        detail = ", ".join(pct(e * 1e3 / v - 1) for e, v in zip(each, parts)) if parts else "(only the sum published)"
        t.add_row(label, gpu, str(tokens), f"{vidur:.3f}", f"{sum(each) * 1e3:.3f}", pct(err), detail)
    con.print(t)
    con.print("A100 is priced as the simulator loads it: while it borrows the H100-fitted profile, its rows test how "
              "the fractions transfer across GPUs from spec sheets alone.")
    return errs


def data_files(h100: Path, given: list[str]) -> dict[str, Path | None]:
    """GPU -> its microbenchmark file, for every GPU whose profile was measured on it."""
    named = {"h100-sxm": h100}
    for item in given:
        gpu, _, path = item.partition("=")
        named[gpu] = Path(path)
    out = {}
    for gpu in gpu_names():
        info = profile_info(load_gpu(gpu))
        if info["borrowed"]:
            continue
        src = re.search(r" to (\S+) \(", load_system(gpu).efficiency.source)
        guess = [Path(src.group(1)), ROOT / src.group(1)] if src else []
        out[gpu] = named.get(gpu) or next((p for p in guess if p.is_file()), None)
    return out


def report(con: Console, gpu: str, data: Path, heldout: bool = False) -> None:
    system = load_system(gpu)
    bench = cal.load_bench(data)
    l2 = cal.bench_l2_bytes(bench, system)
    con.rule(f"{gpu}" + (" (held out: not fitted)" if heldout else ""))
    con.print(f"[bold]Op fidelity[/]: {data} priced with profile '{system.efficiency.name}' "
              f"({system.efficiency.source})" + (f", {gpu}'s spec sheet; the profile never saw this file" if heldout else ""))
    preds = cal.predict(cal.bench_rows(bench), system)
    for fam in cal.FAMILIES:
        if any(p.family == fam for p in preds):
            con.print(family_table(fam, [p for p in preds if p.family == fam], l2, system))
    n_l2 = sum(cal.l2_resident(p.family, p.row, l2) for p in preds)
    con.print(f"Note: {n_l2} decode_attn rows are '{L2_NOTE}': their KV ({'<='} {l2 / 2**20:.0f} MiB L2) was reused "
              "across timing iterations, so they ran partly from L2 at above-HBM speed. A real decode step never has "
              "a layer's KV in L2 (the weight stream evicts it); they are reported but excluded from the fit and "
              "from the HBM-resident statistics.")
    table = cal.error_table(preds, l2)
    con.print(summary_table(table))
    gemm = [p for p in preds if p.family == "gemm"]
    for dtype in sorted({p.row.get("dtype", "bf16") for p in gemm}):
        errs = sorted(abs(p.rel_err) for p in gemm if p.row.get("dtype", "bf16") == dtype)
        con.print(f"gemm {dtype}: {len(errs)} rows, median |err| {apct(errs[len(errs) // 2])}, max {apct(errs[-1])}")
    for v in verdicts(table):
        con.print(("[red]" if "MISSES" in v else "[green]") + v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="h100-sxm's microbenchmark file")
    ap.add_argument("--gpu", action="append", default=[], metavar="NAME=PATH", help="another calibrated GPU's file")
    ap.add_argument("--heldout", action="append", metavar="NAME=PATH",
                    help="a GPU's microbenchmark file the profile was not fitted to (default: the H200 files)")
    args = ap.parse_args(argv)
    con = Console()
    for gpu, data in data_files(args.data, args.gpu).items():
        if data is None:
            con.print(f"{gpu}: calibrated, but its microbenchmark file is not found (give --gpu {gpu}=PATH)")
        else:
            report(con, gpu, data)
    errs = cross_check(con)
    con.print(f"cross-check |err|: median {apct(sorted(map(abs, errs))[len(errs) // 2])}, max {apct(max(map(abs, errs)))}")
    for item in args.heldout or HELDOUT:
        gpu, _, path = item.partition("=")
        if gpu not in gpu_names() or not Path(path).is_file():
            con.print(f"--heldout {item}: needs NAME=PATH with a hardware/gpus name and an existing file")
            continue
        report(con, gpu, Path(path), heldout=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
