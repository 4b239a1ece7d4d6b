"""Predicted TTFT / TPOT of the same deployment on several GPUs, as ratios to H100 (spec-sheet scaling check).

Usage: python benchmarks/gpu_ratios.py [--rows tests/data/validate/heldout_rows.json] [--jobs J]

Rows of the silicon format that differ only in `system` are one deployment. Each is simulated with the
stored host constants and with the host time off (GPU work alone); the table gives H100 / GPU of the
predicted mean TTFT and TPOT, to set against the spec sheets' ratios (HBM bandwidth for decode, the
dtype's peak for prefill). Measured latencies are not read: the ratios are simcore's alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.config.catalog import entries  # noqa: E402
from simcore.config.hardware import load_gpu  # noqa: E402
from simcore.serving.silicon import GPUS  # noqa: E402
from simcore.validate.compare import experiments, run  # noqa: E402
from simcore.validate.fit import without_host  # noqa: E402
from simcore.validate.readers import read  # noqa: E402

BASE = "h100_sxm"


def key(r) -> tuple:
    return (r.engine, (r.model or "").split("/")[-1], r.precision or "bf16", r.tp, r.ep, r.attention_dp,
            r.concurrency, r.isl, r.osl)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=ROOT / "tests" / "data" / "validate" / "heldout_rows.json")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    outs = run(experiments(read(a.rows)), a.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        bare = run(without_host(outs, Path(tmp), moe=True), a.jobs)
    pred: dict[tuple, dict] = {}
    for label, group in (("host", outs), ("gpu", bare)):
        for o in group:
            if not o.refused and o.result:
                lat = o.result["latency"]
                pred.setdefault(key(o.record), {}).setdefault(o.record.gpu, {})[label] = (
                    lat["ttft"]["mean"], lat["tpot"]["mean"])
    gpus = sorted({g for d in pred.values() for g in d} - {BASE})
    console = Console(width=None if sys.stdout.isatty() else 220)
    spec = {}
    for g in [BASE] + gpus:
        name = GPUS.get(g, g)
        if name in entries("hardware/gpus", ".yaml"):
            spec[g] = load_gpu(name)
    h = spec.get(BASE)
    if h:
        console.print("spec-sheet ratios (GPU / H100): " + "; ".join(
            f"{g}: HBM {spec[g].memory.bandwidth_gbps / h.memory.bandwidth_gbps:.2f}x, bf16 "
            f"{spec[g].peak_tflops['bf16'] / h.peak_tflops['bf16']:.2f}x" for g in gpus if g in spec), highlight=False)
    t = Table(title="H100 / GPU of predicted mean TTFT and TPOT (host: stored host constants; gpu: host time off)",
              title_justify="left")
    for col in ("engine", "model", "prec", "tp", "c", "ISL/OSL", "H100 TTFT ms", "H100 TPOT ms"):
        t.add_column(col)
    for g in gpus:
        for m in ("TTFT", "TPOT", "TPOT gpu"):
            t.add_column(f"{m} {g}", justify="right")
    for k, d in sorted(pred.items(), key=str):
        if BASE not in d or "host" not in d[BASE]:
            continue
        base = d[BASE]
        cells = []
        for g in gpus:
            if g not in d or "host" not in d[g]:
                cells += ["-", "-", "-"]
                continue
            cells += [f"{base['host'][0] / d[g]['host'][0]:.2f}", f"{base['host'][1] / d[g]['host'][1]:.2f}",
                      f"{base['gpu'][1] / d[g]['gpu'][1]:.2f}" if "gpu" in d[g] and "gpu" in base else "-"]
        t.add_row(k[0], k[1], k[2], str(k[3]), str(k[6]), f"{k[7]}/{k[8]}", f"{base['host'][0]:,.1f}",
                  f"{base['host'][1]:.2f}", *cells)
    console.print(t)


if __name__ == "__main__":
    main()
