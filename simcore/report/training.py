"""JSON summary, table, breakdown and trace of a training step. Keys are documented in docs/results.md."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from simcore import __version__
from simcore.config.hardware import GIB
from simcore.run.training import TrainingResult
from simcore.engine.walk import walk
from simcore.report.trace import trace_events, write_json


def training_summary(res: TrainingResult) -> dict:
    run, e = res.run, res.run.experiment
    p, w = run.par, e.workload
    mem = res.memory
    t = res.step_time
    tokens_per_s = res.tokens / t
    return {
        "simcore_version": __version__,
        "name": e.name,
        "kind": "training",
        "mode": e.engine.mode,
        "model": run.model.name,
        "hardware": run.system.gpu.name,
        "cluster": run.system.cluster.name,
        "efficiency_profile": {"name": run.system.efficiency.name, "measured_on": run.system.efficiency.measured_on},
        "parallelism": {"tp": p.tp, "pp": p.pp, "dp": p.dp, "ep": p.ep, "cp": w.context_parallel, "gpus": res.gpus},
        "workload": w.model_dump(),
        "micro_batches": res.micro_batches,
        "step_time_s": t,
        "tokens_per_step": res.tokens,
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_per_gpu": tokens_per_s / res.gpus,
        "model_flops_per_step": res.model_flops,
        "hardware_flops_per_step": res.hardware_flops,
        "model_tflops_per_gpu": res.model_flops / t / res.gpus / 1e12,
        "mfu": res.model_flops / t / res.peak,
        "hfu": res.hardware_flops / t / res.peak,
        "pipeline_bubble_s": res.bubble,
        "critical_path_s": {k: v for k, v in sorted(res.critical.items())},
        "memory_per_gpu_bytes": mem.as_dict(),
        "train_tokens": w.train_tokens,
        "time_to_train_s": w.train_tokens / tokens_per_s,
        "overlap_policy": e.engine.overlap_policy,
        "events_simulated": len(res.events),
        "ranks_simulated": res.ranks,
    }


def training_table(s: dict) -> Table:
    t = Table(title=f"{s['name'] or s['model']}: training {s['model']} on {s['parallelism']['gpus']}x {s['hardware']}",
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    p, w, m = s["parallelism"], s["workload"], s["memory_per_gpu_bytes"]
    crit = s["critical_path_s"]
    total = sum(crit.values()) or 1.0
    rows = [
        ("parallelism", f"tp {p['tp']}  pp {p['pp']}  dp {p['dp']}  ep {p['ep']}  cp {p['cp']}"),
        ("batch", f"{w['global_batch']} x {w['sequence_length']} tokens, micro-batch {w['micro_batch']} "
                  f"({s['micro_batches']} per replica), {w['schedule']}"
                  + (f" v{w['virtual_stages']}" if w["virtual_stages"] > 1 else "")),
        ("training", f"{w['optimizer']}, ZeRO {w['zero_stage']}, recompute {w['recompute']}, GEMMs {w['gemm_precision']}"
                     + (", sequence parallel" if w["sequence_parallel"] else "")),
        ("engine", f"{s['mode']} mode, overlap {s['overlap_policy']}, {s['events_simulated']:,} events on "
                   f"{s['ranks_simulated']} ranks"),
        ("step time", f"{s['step_time_s']:,.4f} s (pipeline bubble {s['pipeline_bubble_s']:,.4f} s)"),
        ("throughput", f"{s['tokens_per_s']:,.0f} tok/s ({s['tokens_per_s_per_gpu']:,.0f} per GPU)"),
        ("MFU / HFU", f"{100 * s['mfu']:.1f}% / {100 * s['hfu']:.1f}% ({s['model_tflops_per_gpu']:.0f} model TFLOP/s per GPU)"),
        ("memory per GPU", " + ".join(f"{k.replace('_', ' ')} {m[k] / GIB:.2f}" for k in
                                      ("weights", "gradients", "optimizer_state", "activations", "runtime_overhead"))
                           + f" = {m['total'] / GIB:.2f} of {m['capacity'] / GIB:.2f} GiB"),
        ("time to train", f"{s['train_tokens']:.3g} tokens in {s['time_to_train_s'] / 86400:,.1f} days"),
        ("critical path", ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in sorted(crit.items(), key=lambda kv: -kv[1]))),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


def print_training(s: dict, console: Console) -> None:
    console.print(training_table(s))


FIELDS = ("unit", "stage", "layer", "op", "kind", "family", "duration_s", "exposed_s", "flops", "bytes", "bound")


def write_training_breakdown(res: TrainingResult, path: Path) -> None:
    """One micro-batch's forward and backward per (virtual) stage, op by op, closed form."""
    from simcore.engine.walk import engine_parts

    parts = engine_parts(res.run)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(FIELDS)
        for s in res.stages:
            for unit, ops in (("forward", s.forward_ops()), ("backward", s.backward), ("optimizer", s.optimizer_ops())):
                for t in walk(ops, parts.pricer, parts.policy).ops:
                    op = t.op
                    out.writerow([unit, s.vstage, op.layer, op.name, op.kind, op.family, t.duration, t.exposed,
                                  op.flops, op.bytes, t.bound])


def write_training_trace(res: TrainingResult, path: Path) -> None:
    lanes = res.ranks // res.run.par.pp if res.ranks else 1
    tp = res.run.par.tp

    def rank_name(rank: int) -> str:
        stage, lane = divmod(rank, lanes)
        return f"pipeline rank {stage} (tp x{tp})" if lanes == 1 else f"pipeline rank {stage} tp rank {lane}"

    write_json(path, trace_events([("training step", 0.0, res.events)], rank_name))
