"""Serving simulator vs published serving figures (facts.md §2a, §2b). Usage: python benchmarks/serving_fidelity.py

Tables (each prints its own median / max |error|; error = predicted / published - 1):
  1. Closed-loop concurrency sweep, llama-3.1-8b on one h100-sxm (bf16), ISL 1024 / OSL 128 fixed,
     as experiments/serving/llama-3.1-8b-closed-c*.yaml. No published figure: a shape check.
  2. TensorRT-LLM perf-overview max-throughput rows (§2b): trtllm-bench feeds every request at
     once, so each row is an offline run (all requests arrive at t = 0) with trtllm-bench's own
     request count per ISL/OSL, FP8 weights, activations and KV cache, and the engine limits
     (max batch size -> max_num_seqs, max num tokens -> max_num_batched_tokens) computed by
     trtllm-bench's heuristic (tensorrt_llm/bench/build/tuning.py: calc_engine_setting).
     Llama-3.3-70B is simulated with the llama-3.1-70b config (same architecture).
  3. MLPerf Inference Llama-2-70B Server (§2a): Poisson arrivals at the published token rate
     divided by 290 output tokens per sample, OpenOrca-like lognormal lengths (assumption below),
     NVIDIA's instance layout (H100: 4 replicas of TP2; H200 v4.1: 8 replicas of TP1) as
     parallelism.dp x tp, max batch = the submission's gpu_batch_size.
  4. MLPerf Llama-2-70B Offline (§2a): all 24,576 samples at t = 0, same layouts.

Engine stand-in: the vllm scheduler (decode first, chunked prefill). TensorRT-LLM's in-flight
batcher also runs generation before context chunks; it differs in admission (its default
GUARANTEED_NO_EVICT policy reserves a request's full KV up front and never preempts; vLLM admits
greedily and preempts by recompute), see the preemption columns.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.config.hardware import load_gpu  # noqa: E402
from simcore.config.model import load_model  # noqa: E402
from simcore.errors import SimcoreError  # noqa: E402
from simcore.serving.workload import lognormal_params  # noqa: E402
from simcore.ops.linears import total_params  # noqa: E402
from simcore.runner import run_dict  # noqa: E402

GIB = 1024**3
FP8 = {"precision": {"weights": "fp8", "activations": "fp8"}, "inference": {"kvcache_precision": "fp8"}}
# vLLM's gpu_memory_utilization is a fraction of all memory; TensorRT-LLM's kv_cache_free_gpu_mem_fraction
# (0.90 in MLPerf, 0.95 in the perf overview) is a fraction of what weights and activations leave.
# 0.95 of all memory gives about the same KV pool: 70B FP8 at TP2 on H100 gets 40.6 GiB per GPU here, and
# 0.90 x (79.2 GiB - 32.1 GiB of weights - activations) is about 42 GiB in TensorRT-LLM.
MEM_UTIL = 0.95
T0_RATE = 1e9  # requests/s: every request arrives within a microsecond of t = 0 (an offline run)

# ---- 2. TensorRT-LLM perf overview (facts.md §2b) --------------------------------------------------------
PERF_SRC = "perf-overview @00f37686"
PAIRS = ((128, 128), (128, 2048), (128, 4096), (500, 2000), (1000, 1000), (2048, 128), (2048, 2048), (5000, 500),
         (20000, 2000))
# trtllm-bench --num-requests per ISL/OSL (perf-overview.md, "Reproducing Benchmarked Results")
NUM_REQUESTS = {(128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (500, 2000): 3000, (1000, 1000): 3000,
                (2048, 128): 3000, (2048, 2048): 1500, (5000, 500): 1500, (20000, 2000): 1000}
# (published model, simulated model, gpu, tp, published total output tok/s per pair)
PERF_COLUMNS = [
    ("Llama-3.1-8B", "llama-3.1-8b", "h100-sxm", 1, (28312, 22714, 14325, 17660, 15220, 3450, 9305, 3459, 1351)),
    ("Llama-3.1-8B", "llama-3.1-8b", "h200-sxm", 1, (27911, 26221, 18027, 20770, 17744, 3538, 12194, 3902, 1804)),
    ("Llama-3.3-70B", "llama-3.1-70b", "h100-sxm", 2, (6378, 6651, 4199, 5222, 4205, 762, 3082, 898, 437)),
]
# Newer perf overview (@03e27c7d, developer-guide/perf-overview.md): output tok/s per GPU.
# Its request count for 8192/1024 is not in facts.md; 1500 (the count the older table uses for 5000/500) is assumed.
PER_GPU_SRC = "perf-overview @03e27c7d"
PER_GPU_ROWS = [("Llama-3.3-70B", "llama-3.1-70b", "h100-sxm", 2, 1000, 1000, 3000, 2209),
                ("Llama-3.3-70B", "llama-3.1-70b", "h100-sxm", 2, 8192, 1024, 1500, 398)]

# ---- 3/4. MLPerf Inference Llama-2-70B (facts.md §2a) ----------------------------------------------------
TOKENS_PER_SAMPLE = 290  # facts.md §2a: tokens/s / samples/s; the reference README says 294.45
# OpenOrca as MLPerf processes it (mlcommons/inference language/llama2-70b/processorca.py): input and output
# both under 1024 tokens. The mean input is NOT in facts.md: ASSUMED 300 tokens (a few hundred: FLAN/T0/NIV/CoT
# questions in the Llama-2 chat template), cv 1.0; output mean 290, cv 0.8. --orca-isl changes the input mean.
ORCA_ISL_MEAN, ORCA_ISL_CV, ORCA_OSL_CV, ORCA_MAX = 300, 1.0, 0.8, 1023
MLPERF_SAMPLES = 24576  # the OpenOrca subset; the Offline run issues it once, all at t = 0
SERVER_REQUESTS = 30000  # about 7 minutes of arrivals at the H100 rate (MLPerf runs >= 10 min)
# (round, system, gpu, dp, tp, gpu_batch_size, published tok/s, TTFT mean/p99 ms, TPOT mean/p99 ms,
#  NVIDIA's server_target_qps)
# Layouts and batch sizes: inference_results_v4.0@8121a811 / v4.1@a2f5d66d closed/NVIDIA/configs/llama2-70b/Server.
SERVER_ROWS = [
    ("v4.0", "DGX H100 x8", "h100-sxm", 4, 2, 1024, 20556.4, (381.6, 568.3), (136.8, 156.1), 71.2),
    ("v4.1", "DGX H100 x8", "h100-sxm", 4, 2, 1024, 21605.8, (275.9, 461.3), (155.0, 175.4), 75.0),
    ("v4.1", "H200 x8", "h200-sxm", 8, 1, 896, 29228.2, (198.3, 452.7), (123.3, 146.0), 102.5),
]
# (round, system, gpu, dp, tp, gpu_batch_size, published tok/s); .../configs/llama2-70b/Offline
OFFLINE_ROWS = [
    ("v4.0", "DGX H100 x8", "h100-sxm", 4, 2, 896, 21805.8),
    ("v4.1", "DGX H100 x8", "h100-sxm", 4, 2, 896, 24524.9),
    ("v4.1", "H200 x8", "h200-sxm", 8, 1, 806, 31302.7),
]
# The NVIDIA configs do not give a per-step token budget; vLLM's default is assumed.
MLPERF_TOKENS = 8192


def fixed(v: int) -> dict:
    return {"dist": "fixed", "value": v}


def experiment(model, gpu, tp, workload, serving, dp=1, fp8=True) -> dict:
    data = {"model": model, "hardware": gpu, "parallelism": {"tp": tp, "dp": dp},
            "workload": {"kind": "requests", **workload}, "serving": {"scheduler": "vllm", **serving}}
    if fp8:
        data.update(FP8)
        data["engine"] = {"gpu_memory_utilization": MEM_UTIL}
    return data


def serve(data: dict) -> tuple[dict | None, str]:
    """(summary, '') or (None, why the simulator could not run it)."""
    try:
        return run_dict(data, source="serving_fidelity"), ""
    except SimcoreError as exc:
        return None, str(exc).splitlines()[0][:70]


def trtllm_bench_limits(model: str, gpu: str, tp: int, isl: int, osl: int, pp: int = 1,
                        kv_fraction: float = 0.95) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) as trtllm-bench picks them (tuning.py calc_engine_setting +
    finetune_setting) for FP8 weights and FP8 KV cache: 1 byte per parameter and per KV element."""
    m = load_model(model)
    per_token = 2 * m.layers * max(tp, m.kv_heads) * m.head_dim / GIB
    free = load_gpu(gpu).memory.capacity * tp * pp / GIB - total_params(m) / GIB
    requests = free * kv_fraction / (per_token * (isl + osl))
    raw_bs = min(requests, 4096) / pp
    raw_tok = min(raw_bs * (1 + isl / osl), 32768)
    if raw_bs < 256:
        bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        bs = 128 * math.ceil(raw_bs / 128)
    else:
        bs = 256 * math.ceil(raw_bs / 256)
    if raw_tok < 4096:
        tok = max(2048, 256 * math.ceil(raw_tok / 256))
    elif raw_tok < 8192:
        tok = 512 * math.ceil(raw_tok / 512)
    else:
        tok = 1024 * math.ceil(raw_tok / 1024)
    return bs, tok


def pct(err: float) -> str:
    return f"{100 * err:+.1f}%"


def spread(console: Console, name: str, errs: list[float], skipped: int = 0) -> None:
    if not errs:
        console.print(f"{name}: no rows simulated")
        return
    a = [abs(e) for e in errs]
    more = f" ({skipped} rows without a prediction)" if skipped else ""
    console.print(f"[bold]{name}[/]: {len(a)} rows, median |error| {100 * statistics.median(a):.1f}%, "
                  f"max {100 * max(a):.1f}%, mean signed {100 * statistics.fmean(errs):+.1f}%{more}\n")


# ---- tables ------------------------------------------------------------------------------------------

def closed_loop(console: Console) -> None:
    t = Table(title="1. Closed loop, llama-3.1-8b bf16 on 1x h100-sxm, ISL 1024 / OSL 128 fixed, vllm 256 seqs / "
                    "8192 tokens; requests = max(200, 20 x c)", title_justify="left")
    for col in ("c", "requests", "TTFT mean ms", "TTFT p99 ms", "TPOT mean ms", "TPOT p99 ms", "output tok/s",
                "req/s", "preempt"):
        t.add_column(col, justify="right")
    for c in (1, 2, 4, 8, 16, 32, 64, 128):
        n = max(200, 20 * c)
        s, why = serve(experiment("llama-3.1-8b", "h100-sxm", 1, {
            "requests": n, "arrival": {"process": "closed", "concurrency": c},
            "prompt_tokens": fixed(1024), "output_tokens": fixed(128)},
            {"max_num_seqs": 256, "max_num_batched_tokens": 8192}, fp8=False))
        if s is None:
            t.add_row(str(c), str(n), why)
            continue
        t.add_row(str(c), f"{n:,}", f"{s['ttft_s']['mean'] * 1e3:,.1f}", f"{s['ttft_s']['p99'] * 1e3:,.1f}",
                  f"{s['tpot_s']['mean'] * 1e3:.2f}", f"{s['tpot_s']['p99'] * 1e3:.2f}",
                  f"{s['throughput']['output_tokens_per_s']:,.0f}", f"{s['throughput']['requests_per_s']:.2f}",
                  f"{s['preemptions']:,}")
    console.print(t)
    console.print()


def perf_overview(console: Console) -> None:
    t = Table(title="2. TensorRT-LLM max throughput (facts.md §2b), FP8 weights/activations/KV, offline (all requests "
                    "at t=0), trtllm-bench request counts and limits. Llama-3.3-70B simulated as llama-3.1-70b "
                    "(same architecture)", title_justify="left")
    for col in ("source", "model", "GPU", "TP", "ISL/OSL", "requests", "max seqs", "max tokens", "published",
                "predicted", "error", "preempt"):
        t.add_column(col, justify="left" if col in ("source", "model", "GPU", "ISL/OSL") else "right")
    rows = [(PERF_SRC, pub_model, model, gpu, tp, isl, osl, NUM_REQUESTS[(isl, osl)], v, "tok/s")
            for pub_model, model, gpu, tp, values in PERF_COLUMNS for (isl, osl), v in zip(PAIRS, values)]
    rows += [(PER_GPU_SRC, pub_model, model, gpu, tp, isl, osl, n, v, "tok/s/GPU")
             for pub_model, model, gpu, tp, isl, osl, n, v in PER_GPU_ROWS]
    errs, skipped = [], 0
    for src, pub_model, model, gpu, tp, isl, osl, n, pub, unit in rows:
        seqs, toks = trtllm_bench_limits(model, gpu, tp, isl, osl)
        s, why = serve(experiment(model, gpu, tp, {
            "requests": n, "arrival": {"process": "fixed", "rate": T0_RATE},
            "prompt_tokens": fixed(isl), "output_tokens": fixed(osl)},
            {"max_num_seqs": seqs, "max_num_batched_tokens": toks}))
        head = (src, pub_model, gpu, str(tp), f"{isl}/{osl}", f"{n:,}", str(seqs), str(toks), f"{pub:,} {unit}")
        if s is None or s["requests_completed"] == 0:
            skipped += 1
            t.add_row(*head, "-", why or f"all dropped: {s['dropped_reasons']}", "")
            continue
        got = s["throughput"]["output_tokens_per_s"] / (tp if unit == "tok/s/GPU" else 1)
        err = got / pub - 1
        errs.append(err)
        note = f"{s['preemptions']:,}" + (f" ({s['requests_dropped']} dropped)" if s["requests_dropped"] else "")
        t.add_row(*head, f"{got:,.0f}", pct(err), note)
    console.print(t)
    spread(console, "TensorRT-LLM max throughput", errs, skipped)


def clipped_lognormal_mean(mean: float, cv: float, cap: float) -> float:
    """E[min(X, cap)] for X lognormal with the given mean and cv (the workload's parametrization)."""
    mu, sigma = lognormal_params(mean, cv)
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    z = (math.log(cap) - mu) / sigma
    return mean * phi(z - sigma) + cap * (1 - phi(z))


def lognormal(target_mean: float, cv: float, cap: int) -> dict:
    """A lognormal length whose mean AFTER clipping at `cap` is target_mean (clipping alone would lower it)."""
    mean = target_mean
    for _ in range(50):
        mean *= target_mean / clipped_lognormal_mean(mean, cv, cap)
    return {"dist": "lognormal", "mean": round(mean, 2), "cv": cv, "max": cap}


def orca(requests: int, rate: float, isl_mean: float) -> dict:
    return {"requests": requests, "seed": 0,
            "arrival": {"process": "poisson" if rate < T0_RATE else "fixed", "rate": rate},
            "prompt_tokens": lognormal(isl_mean, ORCA_ISL_CV, ORCA_MAX),
            "output_tokens": lognormal(TOKENS_PER_SAMPLE, ORCA_OSL_CV, ORCA_MAX)}


def mlperf_run(gpu, dp, tp, batch, requests, rate, isl_mean):
    return serve(experiment("llama-2-70b", gpu, tp, orca(requests, rate, isl_mean),
                            {"max_num_seqs": batch, "max_num_batched_tokens": MLPERF_TOKENS}, dp=dp))


def mlperf_server(console: Console, isl_mean: float) -> None:
    t = Table(title=f"3. MLPerf Llama-2-70B Server (facts.md §2a), FP8 + FP8 KV, Poisson, {SERVER_REQUESTS:,} "
                    f"requests; lengths lognormal (mean after clipping at {ORCA_MAX}) ISL {isl_mean:g} (assumed) "
                    f"cv {ORCA_ISL_CV}, "
                    f"OSL {TOKENS_PER_SAMPLE} cv {ORCA_OSL_CV}; vllm, max_num_seqs = gpu_batch_size, {MLPERF_TOKENS} "
                    f"tokens/step, round-robin replicas. 'published rate' = published tok/s / {TOKENS_PER_SAMPLE}; "
                    f"'same utilization' = the published Server/Offline throughput ratio times the simulated "
                    f"offline capacity of this layout", title_justify="left")
    for col in ("round", "system", "layout / load", "metric", "published", "@ published rate", "error",
                "@ same utilization", "error "):
        t.add_column(col, justify="left" if col in ("round", "system", "layout / load", "metric") else "right")
    offline_pub = {(r, sys_): pub for r, sys_, _, _, _, _, pub in OFFLINE_ROWS}
    errs, matched_errs, skipped = [], [], 0
    for rnd, system, gpu, dp, tp, batch, tok_s, ttft, tpot, qps in SERVER_ROWS:
        rate = tok_s / TOKENS_PER_SAMPLE
        util = tok_s / offline_pub[(rnd, system)]
        s, why = mlperf_run(gpu, dp, tp, batch, SERVER_REQUESTS, rate, isl_mean)
        cap, why_cap = mlperf_run(gpu, dp, tp, batch, MLPERF_SAMPLES, T0_RATE, isl_mean)
        m = None
        if cap is not None:
            cap_tok = cap["throughput"]["output_tokens_per_s"]
            m, why_cap = mlperf_run(gpu, dp, tp, batch, SERVER_REQUESTS, util * cap_tok / TOKENS_PER_SAMPLE, isl_mean)
        lines = [f"{dp} x TP{tp}, batch {batch}", f"{rate:.1f} req/s (NVIDIA qps {qps:g})",
                 f"utilization {100 * util:.0f}%"]
        if cap is not None:
            lines.append(f"-> {util * cap_tok / TOKENS_PER_SAMPLE:.1f} req/s")
        if s is None:
            skipped += 4
            t.add_row(rnd, system, lines[0], "all", "", "-", why, "", "", end_section=True)
            continue
        metrics = (("TTFT mean ms", ("ttft_s", "mean"), ttft[0]), ("TTFT p99 ms", ("ttft_s", "p99"), ttft[1]),
                   ("TPOT mean ms", ("tpot_s", "mean"), tpot[0]), ("TPOT p99 ms", ("tpot_s", "p99"), tpot[1]))
        for i, (name, (k, q), pub) in enumerate(metrics):
            got = s[k][q] * 1e3
            errs.append(got / pub - 1)
            if m is not None:
                mg = m[k][q] * 1e3
                matched_errs.append(mg / pub - 1)
                mcols = (f"{mg:,.1f}", pct(mg / pub - 1))
            else:
                mcols = ("-", why_cap)
            t.add_row(rnd if i == 0 else "", system if i == 0 else "", lines[i] if i < len(lines) else "", name,
                      f"{pub:,.1f}", f"{got:,.1f}", pct(got / pub - 1), *mcols)
        extra = (f"{m['throughput']['output_tokens_per_s']:,.0f}", f"{m['preemptions']:,} preempt") if m else ("", "")
        t.add_row("", "", "", "output tok/s offered / achieved", f"{tok_s:,.0f}",
                  f"{s['throughput']['output_tokens_per_s']:,.0f}", f"{s['preemptions']:,} preempt", *extra,
                  end_section=True)
    console.print(t)
    spread(console, "MLPerf Server latency at the published rate (TTFT/TPOT rows)", errs, skipped)
    spread(console, "MLPerf Server latency at the same utilization (diagnostic)", matched_errs)


def mlperf_offline(console: Console, isl_mean: float) -> None:
    t = Table(title=f"4. MLPerf Llama-2-70B Offline (facts.md §2a), FP8 + FP8 KV, {MLPERF_SAMPLES:,} samples at t=0, "
                    f"same lengths as table 3 (ISL mean {isl_mean:g} assumed), max_num_seqs = gpu_batch_size, "
                    f"{MLPERF_TOKENS} tokens/step", title_justify="left")
    for col in ("round", "system", "layout", "published tok/s", "predicted", "error", "per GPU", "preempt"):
        t.add_column(col, justify="left" if col in ("round", "system", "layout") else "right")
    errs, skipped = [], 0
    for rnd, system, gpu, dp, tp, batch, pub in OFFLINE_ROWS:
        s, why = mlperf_run(gpu, dp, tp, batch, MLPERF_SAMPLES, T0_RATE, isl_mean)
        head = (rnd, system, f"{dp} x TP{tp}, batch {batch}", f"{pub:,.1f}")
        if s is None:
            skipped += 1
            t.add_row(*head, "-", why, "", "")
            continue
        got = s["throughput"]["output_tokens_per_s"]
        errs.append(got / pub - 1)
        t.add_row(*head, f"{got:,.0f}", pct(got / pub - 1), f"{got / (dp * tp):,.0f}", f"{s['preemptions']:,}")
    console.print(t)
    spread(console, "MLPerf Offline throughput", errs, skipped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orca-isl", type=float, default=ORCA_ISL_MEAN,
                    help=f"assumed mean OpenOrca input tokens for the MLPerf tables (default {ORCA_ISL_MEAN})")
    ap.add_argument("--only", choices=("closed", "trtllm", "server", "offline"), help="print one table")
    a = ap.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: wide enough for the tables
    start = time.perf_counter()
    tables = {"closed": lambda: closed_loop(console), "trtllm": lambda: perf_overview(console),
              "server": lambda: mlperf_server(console, a.orca_isl),
              "offline": lambda: mlperf_offline(console, a.orca_isl)}
    for name, fn in tables.items():
        if a.only in (None, name):
            fn()
    console.print(f"[dim]wall {time.perf_counter() - start:.1f} s[/]")


if __name__ == "__main__":
    main()
