"""`simcore plan` and `simcore recommend`. simcore/cli.py calls `register(subparsers)`.

Each handler returns an exit code and raises SimcoreError for bad input (the CLI prints it on
one line and exits 2). Tables go to stdout; the progress bar goes to stderr, only when stderr is a
terminal and a recommendation takes over a second, and never with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from simcore.config.hardware import calibration_note
from simcore.errors import SimcoreError
from simcore.report.console import stdout_console
from simcore.config.hardware import GIB
from simcore.memory import BLOCK_SIZE, MAX_NUM_BATCHED_TOKENS

PROGRESS_AFTER_S = 1.0
# Upper bounds of the size flags (docs/planner.md): past them no deployment is real and a search would not end.
FLAG_MAX = {"tp": 1024, "pp": 1024, "block_size": 1024, "max_num_batched_tokens": 2**24, "max_model_len": 2**31 - 1,
            "input_len": 2**24, "output_len": 2**24, "context_length": 2**31 - 1, "concurrency": 1_000_000,
            "max_gpus": 65_536, "top": 1_000_000}


def _check_bounds(args: argparse.Namespace) -> None:
    for name, top in FLAG_MAX.items():
        value = getattr(args, name, None)
        if isinstance(value, int) and value > top:  # training's list flags are checked where they are parsed
            raise SimcoreError(f"--{name.replace('_', '-')} {value}: allowed: at most {top:,}")


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="memory per GPU and KV cache capacity of one deployment")
    p.add_argument("--model", required=True, help="catalog name or path to a config.json")
    p.add_argument("--gpu", help="GPU name from hardware/gpus (required; with --training --cluster may name it)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline stages (default 1)")
    p.add_argument("--max-model-len", type=int, help="context every request may reach (default: the model's maximum)")
    _common(p)
    p.add_argument("--engine", default="vllm", help="whose start-up accounting: vllm, sglang, trtllm (default vllm)")
    p.add_argument("--max-num-seqs", type=int,
                   help="sequences per step; vLLM's profile run samples this many (default: vLLM's for the GPU)")
    p.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs (vLLM --enforce-eager)")
    p.add_argument("--block-size", type=int, default=BLOCK_SIZE, help=f"KV block in tokens (default {BLOCK_SIZE})")
    p.add_argument("--plot", metavar="PNG", help="write the memory breakdown and KV-vs-context plot here")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.set_defaults(func=plan_command)
    from simcore.planner import training_cli

    training_cli.add_plan_flags(p)

    r = subparsers.add_parser("recommend", help="rank GPU x tp x pp x replica deployments by cost under SLOs")
    r.add_argument("--model", required=True, help="catalog name or path to a config.json")
    r.add_argument("--input-len", type=int, help="prompt tokens per request (required without --training)")
    r.add_argument("--output-len", type=int, help="output tokens per request (required without --training)")
    r.add_argument("--concurrency", type=int, help="concurrent requests to serve (default 1)")
    r.add_argument("--context-length", type=int, help="KV cache each request reserves (default input + output)")
    r.add_argument("--ttft-slo", help="time to first token limit, seconds; p90:1.0 = at the 90th percentile")
    r.add_argument("--tpot-slo", help="time per output token limit, seconds; p99:0.05 = at the 99th percentile")
    r.add_argument("--max-gpus", type=int, default=64, help="GPUs at most, all replicas together (default 64)")
    r.add_argument("--gpus", help="comma-separated GPU names (default: the whole catalog)")
    _common(r)
    r.add_argument("--top", type=int, default=10, help="ranked rows to print (default 10)")
    r.add_argument("--show-rejected", action="store_true", help="also list every rejected option and why")
    r.add_argument("--exhaustive", action="store_true",
                   help="simulate every batch, even past one that already misses an SLO on the same deployment")
    r.add_argument("--calibrated-only", action="store_true",
                   help="only GPUs whose efficiency profile was measured on them (default: every GPU; borrowed "
                   "profiles are flagged in the table)")
    r.add_argument("--plot", metavar="PNG", help="write memory breakdown bars of the top options here")
    r.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    r.set_defaults(func=recommend_command)
    from simcore.planner.serving_cli import add_flags

    add_flags(r)
    training_cli.add_recommend_flags(r)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu-memory-utilization", "--gpu-mem-util", dest="gpu_mem_util", type=float, default=0.9,
                   help="fraction of GPU memory to use (default 0.9)")
    p.add_argument("--kv-cache-dtype", "--kv-dtype", dest="kv_dtype", default="auto",
                   help="KV cache dtype: auto, bf16, fp16, fp8 (default auto)")
    p.add_argument("--weights", default="auto",
                   help="weight dtype: auto (as the checkpoint), bf16, fp16, fp8, int8, int4, mxfp4, nvfp4")
    p.add_argument("--max-num-batched-tokens", type=int,
                   help="tokens of the engine's largest forward pass (default: vLLM's for the GPU, "
                        f"{MAX_NUM_BATCHED_TOKENS} on H100-class GPUs)")


def _gib(b: float) -> str:
    return f"{b / GIB:,.2f} GiB"


# -- plan ------------------------------------------------------------------------------


def plan_command(args: argparse.Namespace) -> int:
    from simcore.planner import training_cli
    from simcore.planner.capacity import plan

    _check_bounds(args)
    if args.training:
        return training_cli.plan_command(args)
    training_cli.refuse_training_flags(args, {**training_cli.SHARED, **training_cli.PLAN_ONLY})
    if args.gpu is None:
        raise SimcoreError("--gpu: none given: name the GPU (e.g. --gpu h100-sxm)")
    cp = plan(args.model, args.gpu, tp=args.tp, pp=args.pp, max_model_len=args.max_model_len,
              gpu_mem_util=args.gpu_mem_util, kv_dtype=args.kv_dtype, weights=args.weights,
              max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs,
              block_size=args.block_size, engine=args.engine, enforce_eager=args.enforce_eager)
    if args.plot:
        from simcore.planner.plots import plan_figure

        plan_figure(cp, args.plot)
    d = cp.as_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    console = stdout_console()
    console.print(plan_table(d))
    console.print(engine_table(d["engine_memory"]))
    for line in d["engine_memory"]["log"]:  # what the engine's start-up log would print
        console.print(line, style="dim", soft_wrap=True)
    if args.plot:
        console.print(f"wrote {args.plot}")
    return 0


def plan_table(d: dict) -> Table:
    m, pr = d["memory_per_gpu_bytes"], d["precision"]
    t = Table(title=f"{d['model']} on {d['gpus']}x {d['gpu']} (tp {d['tp']}, pp {d['pp']}): memory per GPU",
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_column(style="dim")
    kvp = d["kv_precision"]
    rows = [
        ("GPU memory", _gib(m["device"]), ""),
        (f"usable (x gpu_mem_util {d['gpu_memory_utilization']:g})", _gib(m["usable"]), ""),
        (f"weights ({pr['weights']}" + (f", experts {pr['experts']}" if pr["experts"] != pr["weights"] else "") + ")",
         _gib(m["weights"]), "busiest GPU"),
        ("activations (peak)", _gib(m["activations"]), f"{d['max_num_batched_tokens']:,} batched tokens"),
        ("non-torch memory", _gib(m["runtime_overhead"]), "NCCL buffers, kernel images, cuBLAS handles"),
        (f"KV cache capacity ({pr['kv_cache']})", _gib(m["kv_cache"]), f"{m['kv_cache'] / 1e9:,.2f} GB"),
        ("KV bytes per token per GPU", f"{d['kv_bytes_per_token_per_gpu']:,.0f} B", ""),
        (f"KV blocks ({d['block_size']} tokens)", f"{d['kv_blocks']:,}", f"{d['kv_tokens']:,} tokens"),
        ("max model length", f"{d['max_model_len']:,}", f"{d['kv_bytes_per_request'] / GIB:,.2f} GiB KV per request"),
        ("max concurrent requests at max model length", f"{d['max_concurrent_requests']:,}", ""),
        ("max model length that fits (one request)", f"{d['max_model_len_that_fits']:,}", ""),
    ]
    if kvp["current"] != "fp8":
        rows.append(("with fp8 KV cache", f"{kvp['tokens']['fp8']:,} tokens",
                     f"{kvp['max_concurrent']['fp8']:,} concurrent at max model length"
                     + ("" if kvp["gpu_has_fp8"] else f"; {d['gpu']} has no fp8: no speedup")))
    for row in rows:
        t.add_row(*row)
    t.add_row("verdict", "", d["verdict"], style="bold green" if d["fits"] else "bold red")
    return t


def engine_table(e: dict) -> Table:
    """The breakdown in the engine's own terms: the lines its start-up log prints."""
    t = Table(title=f"as {e['engine']} accounts it ({e['follows']})", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    act = "reserved for activations and CUDA graphs" if e["engine"] == "sglang" else "peak activation"
    for label, key in (("weights", "weights_bytes"), (act, "activation_bytes"),
                       ("non-torch memory", "non_torch_bytes"), ("CUDA graph memory", "cudagraph_bytes"),
                       ("KV cache", "kv_bytes")):
        t.add_row(label, _gib(e[key]))
    if e.get("state_bytes"):
        t.add_row("linear-attention state", _gib(e["state_bytes"]))
    t.add_row("KV cache size", f"{e['kv_tokens']:,} tokens")
    return t


# -- recommend -------------------------------------------------------------------------


class _LazyBar:
    """A rich progress bar on stderr that appears only once the search has run a second."""

    def __init__(self, enabled: bool):
        self.enabled, self.start, self.bar, self.task = enabled, time.perf_counter(), None, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.start < PROGRESS_AFTER_S:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("candidates"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                transient=True, console=Console(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task("recommend", total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def recommend_command(args: argparse.Namespace) -> int:
    from simcore.planner.kv_detail import positive
    from simcore.planner.recommend import find_gpu_recommendations

    positive("top", args.top)
    _check_bounds(args)
    bar = _LazyBar(enabled=not args.json and sys.stderr is not None and sys.stderr.isatty())
    from simcore.planner import training_cli
    from simcore.planner.serving_cli import serving_command, serving_mode

    if args.training:
        return training_cli.recommend_command(args, bar)
    training_cli.refuse_training_flags(args, {**training_cli.SHARED, **training_cli.SEARCH, "gpu": ("--gpu", "")})
    for flag, value in (("--input-len", args.input_len), ("--output-len", args.output_len)):
        if value is None:
            raise SimcoreError(f"{flag}: none given: required (tokens per request), unless --training")
    if serving_mode(args):
        return serving_command(args, bar)
    try:
        rec = find_gpu_recommendations(
            args.model, args.context_length, input_len=args.input_len, output_len=args.output_len,
            concurrency=1 if args.concurrency is None else args.concurrency, ttft_slo=_seconds("ttft_slo", args.ttft_slo),
            tpot_slo=_seconds("tpot_slo", args.tpot_slo), max_gpus=args.max_gpus,
            gpus=args.gpus, kv_dtype=args.kv_dtype, weights=args.weights, gpu_mem_util=args.gpu_mem_util,
            max_num_batched_tokens=args.max_num_batched_tokens or MAX_NUM_BATCHED_TOKENS, progress=bar,
            exhaustive=args.exhaustive,
            calibrated_only=args.calibrated_only)
    finally:
        bar.close()
    if args.plot:
        from simcore.planner.plots import options_figure

        options_figure(rec.options[: args.top], args.plot, title=f"{rec.request['model']}: memory per GPU")
    if args.json:
        print(json.dumps(rec.as_dict(), indent=2))
        return 0
    console = stdout_console()
    console.print(ranked_table(rec, args.top))
    checks = Counter(o.check for o in rec.rejected)
    console.print(
        f"{rec.candidates_evaluated:,} candidates ({rec.shapes_simulated} shapes simulated) in {rec.elapsed_s:.1f} s; "
        f"{len(rec.options)} meet the SLOs; rejected: "
        + (", ".join(f"{n} {c}" for c, n in sorted(checks.items())) or "none")
        + ("" if args.show_rejected or not rec.rejected else " (--show-rejected lists them)")
    )
    note = calibration_note(sorted({o.gpu for o in rec.options[: args.top]}))
    if note:
        console.print(f"timings: {note}", style="dim")
    best = rec.best
    if best is not None and best.efficiency_profile and best.efficiency_profile["borrowed"]:
        band = best.efficiency_profile["error_band"]
        console.print(f"#1 ({best.gpu}) is ranked on efficiencies borrowed from {best.efficiency_profile['measured_on']}: "
                      f"its times and cost are uncertain by +/-{band:.0%}; --calibrated-only ranks measured GPUs only",
                      style="bold yellow", soft_wrap=True)
    if args.show_rejected and rec.rejected:
        console.print(rejected_table(rec))
    if args.plot:
        console.print(f"wrote {args.plot}")
    return 0


def _seconds(name: str, text):
    """A bare SLO number (seconds) for the static recommender."""
    from simcore.errors import SimcoreError

    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise SimcoreError(f"{name}: {text!r}: must be a number of seconds > 0, or p90:1.0 for a percentile "
                           f"(serving simulation)") from None


def _num(v, fmt: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, fmt)


def ranked_table(rec, top: int) -> Table:
    q = rec.request
    slo = ", ".join(s for s in (f"TTFT <= {q['ttft_slo_s']:g} s" if q["ttft_slo_s"] else "",
                                f"TPOT <= {q['tpot_slo_s'] * 1e3:g} ms" if q["tpot_slo_s"] else "") if s)
    title = (f"{q['model']}: {q['concurrency']} concurrent requests of {q['input_len']:,} in + {q['output_len']:,} "
             f"out tokens" + (f"; {slo}" if slo else "") + ", cheapest per output token first")
    t = Table(title=title, title_justify="left")
    for col in ("#", "GPU", "efficiency", "tp", "pp", "replicas", "GPUs", "batch/replica", "TTFT s", "TPOT ms",
                "output tok/s", "$/hour", "$/M output tok", "KV GiB/GPU", "max conc/replica"):
        t.add_column(col, justify="left" if col in ("GPU", "efficiency") else "right")
    for i, o in enumerate(rec.options[:top], 1):
        prof = o.efficiency_profile or {}
        flag = f"BORROWED +/-{prof['error_band']:.0%}" if prof.get("borrowed") else "measured"
        t.add_row(str(i), o.gpu, flag, str(o.tp), str(o.pp), str(o.replicas), str(o.gpus), str(o.batch_per_replica),
                  _num(o.ttft_s, ".3f"), _num(o.tpot_s, ".1f", 1e3), _num(o.output_tokens_per_s, ",.0f"),
                  _num(o.cost_per_hour_usd, ",.2f"), _num(o.cost_per_million_output_tokens_usd, ",.2f"),
                  _num(o.memory_per_gpu_bytes["kv_cache_capacity"], ",.1f", 1 / GIB), str(o.max_concurrent_per_replica),
                  style="yellow" if prof.get("borrowed") else None)
    if not rec.options:
        t.add_row("-", "no option meets the SLOs", *[""] * 13)
    return t


def rejected_table(rec) -> Table:
    t = Table(title="rejected options", title_justify="left")
    for col in ("GPU", "tp", "pp", "replicas", "check", "why"):
        t.add_column(col, justify="right" if col in ("tp", "pp", "replicas") else "left")
    for o in rec.rejected:
        t.add_row(o.gpu, *("-" if v is None else str(v) for v in (o.tp, o.pp, o.replicas)), o.check, o.reason)
    return t
