"""The serving run's JSON summary, terminal table, and --out files (docs/serving.md lists every key)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from simcore.config.hardware import GIB, profile_record, profile_tag
from simcore.report.plotting import pyplot, save


def serving_summary(res) -> dict:
    e, run = res.run.experiment, res.run
    cfg, w = e.serving, e.workload
    a = w.arrival
    head = {
        "name": e.name,
        "model": run.model.name,
        "hardware": run.system.gpu.name,
        "efficiency_profile": profile_record(run.system.efficiency, run.system.gpu.name),
        "parallelism": {"tp": run.par.tp, "pp": run.par.pp, "dp": run.par.dp, "ep": run.par.ep,
                        "attention_dp": run.par.attention_dp, "gpus": run.gpus},
        "workload": {"kind": "requests", "requests": len(res.metrics.arrival), "arrival": a.process, "rate": a.rate,
                     "concurrency": a.concurrency, "seed": w.seed},
        "serving": {"scheduler": cfg.scheduler, "max_num_seqs": cfg.max_num_seqs,
                    "max_num_batched_tokens": cfg.max_num_batched_tokens, "chunked_prefill": cfg.chunked_prefill,
                    "prefix_caching": cfg.prefix_caching, "router": cfg.router, "replicas": run.par.dp,
                    "iteration_overhead_us": cfg.iteration_overhead_us},
    }
    return {**head, **res.summary}


def _ms(d: dict) -> str:
    if d["mean"] is None:
        return "-"
    return " / ".join(f"{d[k] * 1e3:,.1f}" for k in ("mean", "p50", "p90", "p99"))


def print_serving(s: dict, console: Console) -> None:
    p, w, v = s["parallelism"], s["workload"], s["serving"]
    t = Table(title=f"{s['name'] or s['model']}: {s['model']} on {p['gpus']}x {s['hardware']} (serving)"
              + profile_tag(s.get("efficiency_profile", {})),
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    load = f"rate {w['rate']:g}/s" if w["rate"] else f"concurrency {w['concurrency']}" if w["concurrency"] else ""
    rows = [
        ("parallelism", f"tp {p['tp']}  pp {p['pp']}  dp {p['dp']} (replicas)"),
        ("workload", f"{w['requests']:,} requests, {w['arrival']} {load}, seed {w['seed']}"),
        ("scheduler", f"{v['scheduler']}, max_num_seqs {v['max_num_seqs']}, max_num_batched_tokens "
                      f"{v['max_num_batched_tokens']}, prefix caching {'on' if v['prefix_caching'] else 'off'}"),
        ("KV blocks per replica", f"{s['kv_blocks']:,} x {s['block_size']} tokens"),
        ("TTFT ms mean / p50 / p90 / p99", _ms(s["ttft_s"])),
        ("TPOT ms mean / p50 / p90 / p99", _ms(s["tpot_s"])),
        ("ITL ms mean / p50 / p90 / p99", _ms(s["itl_s"])),
        ("E2E ms mean / p50 / p90 / p99", _ms(s["e2e_s"])),
        ("throughput", f"{s['throughput']['requests_per_s']:,.2f} req/s, "
                       f"{s['throughput']['output_tokens_per_s']:,.0f} output tok/s"),
        ("goodput (SLOs)", f"{s['goodput_requests_per_s']:,.2f} req/s"),
        ("completed / dropped", f"{s['requests_completed']:,} / {s['requests_dropped']:,}"),
        ("preemptions", f"{s['preemptions']:,}"),
        ("prefix cache hit rate", f"{100 * s['prefix_cache_hit_rate']:.1f}%"),
        ("simulated", f"{s['duration_s']:,.2f} s in {s['iterations']:,} iterations, {s['shapes_priced']:,} shapes "
                      f"priced, {s['wall_s']:.2f} s wall"),
    ]
    if "host_cache_hit_rate" in s:
        b = s["kv_tier_bytes"]
        rows.append(("host tier", f"{s['host_cache_blocks']:,} blocks, hit rate {100 * s['host_cache_hit_rate']:.1f}%, "
                                  f"{b['hbm_to_host'] / GIB:,.2f} GiB to host, {b['host_to_hbm'] / GIB:,.2f} GiB back"))
    if "speculative" in s:
        rows.append(("speculative", _speculative_row(s["speculative"])))
    for reason, n in s["dropped_reasons"].items():
        rows.append(("dropped", f"{n:,}: {reason}"))
    for k, val in rows:
        t.add_row(k, val)
    console.print(t)


def _speculative_row(d: dict) -> str:
    speed = f", decode step x{d['decode_step_speedup']:.2f} at batch {d['mean_decode_batch']:.0f}" \
        if d.get("decode_step_speedup") else ""
    return (f"{d['method']} k {d['k']}: acceptance {100 * d['acceptance_rate']:.0f}%, "
            f"{d['tokens_per_step']:.2f} tokens per step{speed}")


def write_outputs(res, s: dict, out: Path) -> None:
    (out / "summary.json").write_text(json.dumps(s, indent=2) + "\n")
    series = res.metrics.series or []
    plt = pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for i, (label, col) in enumerate((("batch (sequences)", 2), ("waiting requests", 3), ("KV utilization", 4))):
        for rep in sorted({row[1] for row in series}):
            pts = [(row[0], row[col]) for row in series if row[1] == rep]
            axes[i].plot([x for x, _ in pts], [y for _, y in pts], lw=0.8, label=f"replica {rep}")
        axes[i].set_ylabel(label)
    axes[-1].set_xlabel("simulated time (s)")
    fig.tight_layout()
    save(fig, out / "timeline.png", "--out", dpi=100)
