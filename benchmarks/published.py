"""Predicted against published static-batch figures (facts.md §2c, TensorRT-LLM performance docs).

Usage: python benchmarks/published.py
Prints one row per published figure with the relative error, and the median / max |error|.
FP8 rows run fp8 weights, activations and KV cache (TensorRT-LLM's FP8 builds quantize the
KV cache too; the largest published batches only fit that way).

Engine features of those releases, set per row: neither v0.5 nor v0.6.1 replayed CUDA
graphs (the host enqueues every kernel); v0.5 reduced through NCCL, v0.6.1 could use its
own all-reduce kernel. These are our reading of the release notes, not measured.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.config.experiment import Experiment, resolve  # noqa: E402
from simcore.config.validation import validate  # noqa: E402
from simcore.run.static import simulate  # noqa: E402
from simcore.errors import SimcoreError  # noqa: E402

SRC_05 = "TRT-LLM v0.5 performance.md"
SRC_061 = "TRT-LLM v0.6.1 performance.md"
FOUR = ((128, 128), (128, 2048), (2048, 128), (2048, 2048))

ENGINE = {SRC_05: {"cuda_graphs": False, "all_reduce": "nccl"}, SRC_061: {"cuda_graphs": False, "all_reduce": "custom"}}

# (source, gpu, precision, model, batch, tp, isl, osl, published, unit)
THROUGHPUT = [
    *[(SRC_05, "h100-sxm", "fp8", "llama-2-7b", 64, 1, i, o, v, "tok/s") for (i, o), v in zip(FOUR[:3], (9193, 5367, 2058))],
    (SRC_05, "h100-sxm", "fp8", "llama-2-7b", 32, 1, 2048, 2048, 2230, "tok/s"),
    *[(SRC_05, "h100-sxm", "fp8", "llama-2-70b", 64, 4, i, o, v, "tok/s") for (i, o), v in zip(FOUR, (3317, 2616, 843, 1583))],
    *[(SRC_061, "h100-sxm", "fp8", "llama-2-7b", b, 1, i, o, v, "tok/s/GPU")
      for (i, o), b, v in zip(FOUR, (768, 112, 80, 48), (19694, 6818, 2244, 2740))],
    *[(SRC_061, "h100-sxm", "fp8", "llama-2-70b", b, tp, i, o, v, "tok/s/GPU")
      for (i, o), b, tp, v in zip(FOUR, (1024, 480, 96, 64), (2, 4, 2, 2), (2657, 1486, 306, 547))],
    *[(SRC_061, "a100-80gb-sxm", "fp16", "llama-2-7b", b, tp, i, o, v, "tok/s")
      for (i, o), b, tp, v in zip(FOUR, (384, 60, 52, 64), (1, 1, 1, 2), (5586, 1928, 591, 782))],
    *[(SRC_061, "a100-80gb-sxm", "fp16", "llama-2-70b", b, 4, i, o, v, "tok/s/GPU")
      for (i, o), b, v in zip(FOUR[:3], (1280, 240, 120), (670, 525, 79))],
]

# Batch-1 first-token latency, ms (v0.5): (gpu, precision, model, tp, isl, published_ms)
FIRST_TOKEN = [
    ("h100-sxm", "fp8", "llama-2-7b", 1, 128, 7), ("h100-sxm", "fp8", "llama-2-7b", 1, 2048, 36),
    ("h100-sxm", "fp8", "llama-2-70b", 4, 128, 26), ("h100-sxm", "fp8", "llama-2-70b", 4, 2048, 109),
    ("a100-80gb-sxm", "fp16", "llama-2-7b", 1, 128, 16), ("a100-80gb-sxm", "fp16", "llama-2-7b", 1, 2048, 133),
    ("a100-80gb-sxm", "fp16", "llama-2-70b", 4, 128, 47), ("a100-80gb-sxm", "fp16", "llama-2-70b", 4, 2048, 377),
    ("l40s", "fp8", "llama-2-7b", 1, 128, 14), ("l40s", "fp8", "llama-2-7b", 1, 2048, 73),
]


def experiment(gpu, precision, model, batch, tp, isl, osl, source=SRC_05):
    data = {
        "model": model, "hardware": gpu, "parallelism": {"tp": tp},
        "precision": {"weights": precision, "activations": precision if precision == "fp8" else "fp16"},
        "inference": {"kvcache_precision": precision},
        "workload": {"kind": "static", "batch_size": batch, "prompt_tokens": isl, "output_tokens": osl},
        "engine": {"gpu_memory_utilization": 0.95, **ENGINE[source]},
    }
    return resolve(validate(Experiment, data, "benchmark"))


def main() -> None:
    console = Console()
    t = Table(title="Static-batch output throughput: predicted vs published (facts.md §2c)", title_justify="left")
    for col in ("source", "GPU", "prec", "model", "BS", "TP", "ISL/OSL", "published", "predicted", "error"):
        t.add_column(col, justify="left" if col in ("source", "GPU", "prec", "model", "ISL/OSL") else "right")
    errors = []
    for src, gpu, prec, model, b, tp, isl, osl, pub, unit in THROUGHPUT:
        try:
            res = simulate(experiment(gpu, prec, model, b, tp, isl, osl, src))
        except SimcoreError as exc:
            t.add_row(src, gpu, prec, model, str(b), str(tp), f"{isl}/{osl}", f"{pub:,}", "-", str(exc)[:40])
            continue
        tok_s = b * osl / res.e2e / (tp if unit == "tok/s/GPU" else 1)
        err = tok_s / pub - 1
        errors.append(abs(err))
        t.add_row(src, gpu, prec, model, str(b), str(tp), f"{isl}/{osl}", f"{pub:,} {unit}", f"{tok_s:,.0f}", f"{100 * err:+.1f}%")
    console.print(t)
    f = Table(title="Batch-1 first-token latency (TRT-LLM v0.5): predicted vs published", title_justify="left")
    for col in ("GPU", "prec", "model", "TP", "ISL", "published ms", "predicted ms", "error"):
        f.add_column(col, justify="left" if col in ("GPU", "prec", "model") else "right")
    ttft_errors = []
    for gpu, prec, model, tp, isl, pub in FIRST_TOKEN:
        res = simulate(experiment(gpu, prec, model, 1, tp, isl, 2))
        err = res.ttft * 1e3 / pub - 1
        ttft_errors.append(abs(err))
        f.add_row(gpu, prec, model, str(tp), str(isl), f"{pub}", f"{res.ttft * 1e3:.1f}", f"{100 * err:+.1f}%")
    console.print(f)
    for name, errs in (("throughput", errors), ("first-token latency", ttft_errors)):
        console.print(f"{name}: {len(errs)} rows, median |error| {100 * statistics.median(errs):.1f}%, "
                      f"max {100 * max(errs):.1f}%")


if __name__ == "__main__":
    main()
