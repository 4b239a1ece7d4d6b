"""`simcore plan --training` and `simcore recommend --training`: their flags and output.
planner/cli.py calls `add_plan_flags` / `add_recommend_flags`, and when `args.training` is set,
`plan_command` / `recommend_command` here (docs/training.md and docs/planner.md document both)."""

from __future__ import annotations

import argparse
import difflib
import json
from collections import Counter

from rich.table import Table

from simcore.config.hardware import GIB, calibration_note
from simcore.errors import SimcoreError
from simcore.report.console import stdout_console

# dest -> (flag, help). Plain strings, parsed here, so a bad value is one line (exit 2), not argparse's usage.
SHARED = {
    "cluster": ("--cluster", "cluster from hardware/clusters (default: the GPU's own); names the GPU when --gpu is left out"),
    "global_batch": ("--global-batch", "sequences per optimizer step over all replicas"),
    "seq_len": ("--seq-len", "tokens per sequence (default 2048)"),
    "optimizer": ("--optimizer", "adam, adamw, sgd (default adamw)"),
    "sequence_parallel": ("--sequence-parallel", "on or off (default: on when tp > 1)"),
    "mode": ("--mode", "engine mode: analytical, hybrid, flattened (default analytical)"),
    "overlap": ("--overlap", "overlap policy (default all: TP, PP and DP-gradient communication overlapped)"),
}
PLAN_ONLY = {
    "dp": ("--dp", "data-parallel replicas (default 1)"),
    "cp": ("--cp", "context-parallel ranks per sequence (default 1)"),
    "ep": ("--ep", "expert-parallel degree (default 1)"),
    "micro_batch": ("--micro-batch", "sequences per micro-batch (default 1)"),
    "recompute": ("--recompute", "none, selective, full (default none)"),
    "zero": ("--zero", "ZeRO stage 0-3 (default 1: optimizer state sharded over dp x cp)"),
    "schedule": ("--schedule", "gpipe, 1f1b, interleaved (default 1f1b)"),
    "virtual_stages": ("--virtual-stages", "model chunks per pipeline rank with interleaved (default 1)"),
}
SEARCH = {
    "tp_list": ("--tp", "tp degrees to try, comma-separated (default: powers of two up to a node)"),
    "pp_list": ("--pp", "pipeline degrees to try (default: every divisor of --gpus up to the layers)"),
    "cp": ("--cp", "context-parallel degrees to try (default 1)"),
    "ep": ("--ep", "expert-parallel degrees to try (default 1)"),
    "micro_batch": ("--micro-batch", "micro-batch sizes to try (default 1,2,4)"),
    "recompute": ("--recompute", "recomputation to try, lightest first (default none,selective,full)"),
    "zero": ("--zero", "ZeRO stages to try (default 1; 0,1,2,3 tries all)"),
    "schedule": ("--schedule", "pipeline schedules to try: gpipe, 1f1b, interleaved (default 1f1b)"),
    "virtual_stages": ("--virtual-stages", "virtual stages to try with interleaved (default 2)"),
}


def _group(parser, title: str, flags: dict) -> None:
    g = parser.add_argument_group(title)
    for dest, (flag, text) in flags.items():
        g.add_argument(flag, dest=dest, default=None, help=text)


def add_plan_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (docs/training.md, 'simcore plan --training')")
    g.add_argument("--training", action="store_true", help="memory per GPU of a training step instead of serving")
    _group(p, "training layout (with --training)", {**SHARED, **PLAN_ONLY})


def add_recommend_flags(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("training (docs/planner.md, 'Training layouts')")
    g.add_argument("--training", action="store_true",
                   help="rank training layouts of --gpus N GPUs by step time instead of serving deployments")
    g.add_argument("--gpu", dest="gpu", default=None, help="GPU name with --training (or give --cluster)")
    _group(r, "training search (with --training)", {**SHARED, **SEARCH})


def refuse_training_flags(args, parser_flags: dict) -> None:
    """A training flag without --training is an error, not silently ignored."""
    for dest, (flag, _) in parser_flags.items():
        if getattr(args, dest, None) is not None:
            raise SimcoreError(f"{flag}: {getattr(args, dest)!r}: a training flag; add --training")


def _int(flag: str, text, default: int | None = None) -> int | None:
    if text is None:
        return default
    try:
        value = int(str(text).strip())
    except ValueError:
        value = None
    if value is None or value < 0 or (value == 0 and flag != "--zero"):
        raise SimcoreError(f"{flag}: {text!r}: must be a positive integer" + (" (0-3)" if flag == "--zero" else ""))
    return value


def _ints(flag: str, text, default):
    if text is None:
        return default
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise SimcoreError(f"{flag}: {text!r}: give values separated by commas")
    return tuple(_int(flag, t) for t in items)


def _words(flag: str, text, default, allowed) -> tuple:
    if text is None:
        return default
    items = tuple(t.strip() for t in str(text).split(",") if t.strip()) or (str(text),)
    for t in items:
        if t not in allowed:
            near = difflib.get_close_matches(t, allowed, n=2)
            raise SimcoreError(f"{flag}: {t!r}: allowed {', '.join(allowed)}"
                               + (f" (did you mean: {', '.join(near)}?)" if near else ""))
    return items


def _flag_sp(text) -> bool | None:
    if text is None:
        return None
    if str(text).lower() in ("on", "true", "yes", "1"):
        return True
    if str(text).lower() in ("off", "false", "no", "0"):
        return False
    raise SimcoreError(f"--sequence-parallel: {text!r}: allowed on, off")


def _shared(args) -> dict:
    return {"seq_len": _int("--seq-len", args.seq_len, 2048),
            "optimizer": _words("--optimizer", args.optimizer, ("adamw",), ("adam", "adamw", "sgd"))[0],
            "mode": _words("--mode", args.mode, ("analytical",), ("analytical", "hybrid", "flattened"))[0],
            "overlap": args.overlap or "all"}


def _no_serving_flags(args, flags: dict) -> None:
    """Serving-only flags that were given with --training (their defaults are fine to ignore)."""
    for dest, (flag, default) in flags.items():
        value = getattr(args, dest, default)
        if value != default:
            raise SimcoreError(f"{flag}: {value!r}: a serving flag; --training does not take it")


# -- plan --training --------------------------------------------------------------------


def plan_command(args) -> int:
    from simcore.memory import BLOCK_SIZE
    from simcore.planner.training_plan import plan_training, training_experiment

    _no_serving_flags(args, {"max_model_len": ("--max-model-len", None), "max_num_seqs": ("--max-num-seqs", None),
                             "enforce_eager": ("--enforce-eager", False), "block_size": ("--block-size", BLOCK_SIZE),
                             "engine": ("--engine", "vllm"), "kv_dtype": ("--kv-cache-dtype", "auto"),
                             "max_num_batched_tokens": ("--max-num-batched-tokens", None), "plot": ("--plot", None),
                             "gpu_mem_util": ("--gpu-memory-utilization", 0.9)})
    gb = None if args.global_batch is None else _int("--global-batch", args.global_batch)
    data = training_experiment(
        args.model, args.gpu, args.cluster, tp=_int("--tp", args.tp, 1), pp=_int("--pp", args.pp, 1),
        dp=_int("--dp", args.dp, 1), cp=_int("--cp", args.cp, 1), ep=_int("--ep", args.ep, 1), global_batch=gb,
        micro_batch=_int("--micro-batch", args.micro_batch, 1),
        recompute=_words("--recompute", args.recompute, ("none",), ("none", "selective", "full"))[0],
        zero_stage=_zero(args.zero), schedule=_words("--schedule", args.schedule, ("1f1b",), ("gpipe", "1f1b", "interleaved"))[0],
        virtual_stages=_int("--virtual-stages", args.virtual_stages, 1), sequence_parallel=_flag_sp(args.sequence_parallel),
        weights=args.weights, **_shared(args))
    d = plan_training(data).as_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    console = stdout_console()
    console.print(plan_table(d))
    return 0


def _zero(text) -> int:
    z = _int("--zero", text, 1)
    if z > 3:
        raise SimcoreError(f"--zero: {text!r}: allowed 0, 1, 2, 3")
    return z


def _gib(b: float) -> str:
    return f"{b / GIB:,.2f} GiB"


def plan_table(d: dict) -> Table:
    p, w, m = d["parallelism"], d["workload"], d["memory_per_gpu_bytes"]
    t = Table(title=f"training {d['model']} on {p['gpus']}x {d['gpu']} (tp {p['tp']}, pp {p['pp']}, dp {p['dp']}, "
                    f"cp {p['cp']}, ep {p['ep']}): memory per GPU, pipeline rank {m['pipeline_rank']}",
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_column(style="dim")
    shard = p["dp"] * p["cp"]
    z = w["zero_stage"]
    rows = [
        ("weights (16-bit)", _gib(m["weights"]), f"sharded over dp x cp = {shard} (ZeRO 3)" if z >= 3 else f"replicated over dp x cp = {shard}"),
        (f"gradients ({w.get('grad_reduce_dtype', 'fp32')} main grads)", _gib(m["gradients"]), f"sharded over {shard} (ZeRO >= 2)" if z >= 2 else f"replicated over dp x cp = {shard}"),
        (f"optimizer state ({w['optimizer']})", _gib(m["optimizer_state"]),
         f"sharded over {shard} (ZeRO >= 1)" if z >= 1 else f"replicated over dp x cp = {shard}"),
        ("activations (peak)", _gib(m["activations"]),
         f"{w['schedule']}, micro-batch {w['micro_batch']} x {w['sequence_length']:,} tokens, recompute {w['recompute']}"
         + (", sequence parallel" if w["sequence_parallel"] else "")),
        ("runtime overhead", _gib(m["runtime_overhead"]), "CUDA context, NCCL buffers"),
        ("total", _gib(m["total"]), f"of {_gib(m['capacity'])}"),
    ]
    for row in rows:
        t.add_row(*row)
    if len(d["pipeline_ranks"]) > 1:
        t.add_row("per pipeline rank", "", ", ".join(f"{r['pipeline_rank']}: {r['total'] / GIB:.1f}" for r in d["pipeline_ranks"]) + " GiB")
    t.add_row("verdict", "", d["verdict"], style="bold green" if d["fits"] else "bold red")
    return t


# -- recommend --training ---------------------------------------------------------------


def recommend_command(args, bar) -> int:
    from simcore.planner.training_search import MICRO_BATCHES, RECOMPUTE, recommend_training

    _no_serving_flags(args, {"input_len": ("--input-len", None), "output_len": ("--output-len", None),
                             "concurrency": ("--concurrency", None), "ttft_slo": ("--ttft-slo", None),
                             "tpot_slo": ("--tpot-slo", None), "rate": ("--rate", None), "trace": ("--trace", None),
                             "plot": ("--plot", None), "calibrated_only": ("--calibrated-only", False),
                             "context_length": ("--context-length", None), "max_gpus": ("--max-gpus", 64),
                             "kv_dtype": ("--kv-cache-dtype", "auto"), "gpu_mem_util": ("--gpu-memory-utilization", 0.9),
                             "max_num_batched_tokens": ("--max-num-batched-tokens", None),
                             "serving": ("--serving", False), "goodput": ("--goodput", None), "disagg": ("--disagg", 0),
                             "kv_dtypes": ("--kv-dtypes", None), "batched_tokens": ("--batched-tokens", None)})
    if args.gpus is None:
        raise SimcoreError("--gpus: none given: with --training, the number of GPUs to lay the model out on (e.g. --gpus 64)")
    if not str(args.gpus).strip().isdigit():
        raise SimcoreError(f"--gpus: {args.gpus!r}: with --training, the number of GPUs (a positive integer); "
                           f"name the GPU with --gpu or --cluster")
    gpus = _int("--gpus", args.gpus)
    if args.global_batch is None:
        raise SimcoreError("--global-batch: none given: sequences per optimizer step (e.g. --global-batch 512)")
    try:
        rec = recommend_training(
            args.model, gpus, args.gpu, args.cluster, global_batch=_int("--global-batch", args.global_batch),
            tp=_ints("--tp", args.tp_list, None), pp=_ints("--pp", args.pp_list, None), cp=_ints("--cp", args.cp, (1,)),
            ep=_ints("--ep", args.ep, (1,)), micro_batch=_ints("--micro-batch", args.micro_batch, MICRO_BATCHES),
            recompute=_words("--recompute", args.recompute, RECOMPUTE, RECOMPUTE),
            zero=tuple(_zero(z) for z in _words_raw(args.zero, ("1",))),
            schedule=_words("--schedule", args.schedule, ("1f1b",), ("gpipe", "1f1b", "interleaved")),
            virtual_stages=_ints("--virtual-stages", args.virtual_stages, (2,)), weights=args.weights,
            exhaustive=args.exhaustive, progress=bar, **_shared(args))
    finally:
        bar.close()
    if args.json:
        print(json.dumps(rec.as_dict(), indent=2))
        return 0
    console = stdout_console()
    console.print(ranked_table(rec, args.top))
    checks = Counter(o.check for o in rec.rejected)
    console.print(f"{rec.candidates_evaluated:,} candidates ({rec.simulated} simulated, {rec.request['mode']} mode) in "
                  f"{rec.elapsed_s:.1f} s; {len(rec.options)} fit; rejected: "
                  + (", ".join(f"{n} {c}" for c, n in sorted(checks.items())) or "none")
                  + ("" if args.show_rejected or not rec.rejected else " (--show-rejected lists them)"))
    note = calibration_note([rec.request["gpu"]])
    if note:
        console.print(f"timings: {note}", style="dim", soft_wrap=True)
    if args.show_rejected and rec.rejected:
        console.print(rejected_table(rec))
    return 0


def _words_raw(text, default) -> tuple:
    if text is None:
        return default
    return tuple(t.strip() for t in str(text).split(",") if t.strip()) or (str(text),)


def ranked_table(rec, top: int) -> Table:
    q = rec.request
    t = Table(title=f"training {q['model']} on {q['gpus']}x {q['gpu']}: {q['global_batch']} x {q['seq_len']:,} tokens "
                    f"per step, fastest step first", title_justify="left")
    for col in ("#", "tp", "pp", "dp", "cp", "ep", "micro-batch", "schedule", "ZeRO", "recompute", "step s",
                "tok/s/GPU", "MFU", "bubble s", "GiB/GPU"):
        t.add_column(col, justify="left" if col in ("schedule", "recompute") else "right")
    for i, o in enumerate(rec.options[:top], 1):
        sched = o.schedule + (f" v{o.virtual_stages}" if o.schedule == "interleaved" else "")
        t.add_row(str(i), str(o.tp), str(o.pp), str(o.dp), str(o.cp), str(o.ep), str(o.micro_batch), sched,
                  str(o.zero_stage), o.recompute, f"{o.step_time_s:,.3f}", f"{o.tokens_per_s_per_gpu:,.0f}",
                  f"{100 * o.mfu:.1f}%", f"{o.pipeline_bubble_s:,.3f}", f"{o.memory_per_gpu_bytes['total'] / GIB:,.1f}")
    if not rec.options:
        t.add_row("-", "no layout fits", *[""] * 13)
    return t


def rejected_table(rec) -> Table:
    t = Table(title="rejected layouts", title_justify="left")
    for col in ("tp", "pp", "dp", "cp", "ep", "micro-batch", "schedule", "ZeRO", "recompute", "check", "why"):
        t.add_column(col, justify="left" if col in ("schedule", "recompute", "check", "why") else "right")
    for o in rec.rejected:
        t.add_row(*("-" if v is None else str(v) for v in (o.tp, o.pp, o.dp, o.cp, o.ep, o.micro_batch, o.schedule,
                                                            o.zero_stage, o.recompute)), o.check, o.reason)
    return t
