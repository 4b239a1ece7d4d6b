"""`simcore recommend` on the serving simulator: its extra flags, the mode switch and its output
(ranked table, rejections, Pareto front, the winner's deployment commands). planner/cli.py calls
`add_flags(parser)` and, when `serving_mode(args)`, `serving_command(args, bar)`."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from rich.table import Table

from simcore.errors import SimcoreError
from simcore.config.hardware import GIB
from simcore.memory import MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS
from simcore.report.console import stdout_console


def add_flags(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("serving simulation (docs/planner.md, 'Recommend on the serving simulator')")
    g.add_argument("--rate", type=float, help="offered load, requests/s: rank deployments by serving simulation")
    g.add_argument("--arrival", default="poisson", help="arrival process with --rate: poisson, gamma, fixed")
    g.add_argument("--arrival-cv", type=float, default=1.0, help="gamma arrivals: CV of the gaps (default 1)")
    g.add_argument("--trace", help="requests from a CSV/JSONL trace (arrival_s, prompt_tokens, output_tokens)")
    g.add_argument("--serving", action="store_true",
                   help="simulate serving with --concurrency closed-loop clients (implied by --rate, --trace or "
                   "a percentile SLO)")
    g.add_argument("--input-cv", type=float, default=0.0, help="prompt lengths lognormal with this CV (0: fixed)")
    g.add_argument("--output-cv", type=float, default=0.0, help="output lengths lognormal with this CV (0: fixed)")
    g.add_argument("--goodput", type=float,
                   help="least fraction of requests meeting every SLO threshold at once (e.g. 0.9)")
    g.add_argument("--disagg", type=int, default=0, metavar="N",
                   help="also try disaggregated prefill/decode splits of the N cheapest winners (--rate only)")
    g.add_argument("--requests", type=int, default=400, help="requests per serving run (default 400)")
    g.add_argument("--seed", type=int, default=0, help="workload seed (default 0)")
    g.add_argument("--kv-dtypes", help="KV dtypes to search, comma-separated (default: --kv-dtype)")
    g.add_argument("--batched-tokens", help="max_num_batched_tokens values to search, comma-separated "
                   "(default: --max-num-batched-tokens)")
    g.add_argument("--max-num-seqs", type=int, default=256, help="engine batch limit (default 256, as vLLM)")
    g.add_argument("--simulate-top", type=int, default=12,
                   help="serving-simulate the N cheapest static estimates (and each GPU's cheapest; default 12)")


def serving_mode(args) -> bool:
    from simcore.planner.serving_inputs import is_percentile

    return bool(args.rate is not None or args.trace or args.serving or args.goodput is not None
                or is_percentile(args.ttft_slo) or is_percentile(args.tpot_slo))


def _list(name: str, text: str | None, default, cast):
    if text is None:
        return (default,)
    items = [t.strip() for t in str(text).split(",")]
    try:
        return tuple(cast(t) for t in items if t) or (default,)
    except ValueError:
        raise SimcoreError(f"{name}: {text!r}: give values separated by commas") from None


def serving_command(args, bar) -> int:
    from simcore.planner.kv_detail import positive
    from simcore.planner.serving_search import recommend_serving

    positive("top", args.top)
    conc = args.concurrency if args.rate is None and not args.trace else None
    if conc is None and args.rate is None and not args.trace:
        conc = 1
    try:
        rec = recommend_serving(
            args.model, input_len=args.input_len, output_len=args.output_len, rate=args.rate, concurrency=conc,
            arrival=args.arrival, arrival_cv=args.arrival_cv, trace=args.trace, input_cv=args.input_cv,
            output_cv=args.output_cv, ttft_slo=args.ttft_slo, tpot_slo=args.tpot_slo, max_gpus=args.max_gpus,
            gpus=args.gpus, kv_dtypes=_list("kv_dtypes", args.kv_dtypes, args.kv_dtype, str),
            batched_tokens=_list("batched_tokens", args.batched_tokens, args.max_num_batched_tokens or MAX_NUM_BATCHED_TOKENS, int),
            weights=args.weights, gpu_mem_util=args.gpu_mem_util, max_num_seqs=args.max_num_seqs or MAX_NUM_SEQS,
            requests=args.requests, seed=args.seed, simulate_top=args.simulate_top, exhaustive=args.exhaustive,
            progress=bar, goodput=args.goodput, disagg=args.disagg)
    finally:
        bar.close()
    if args.plot:
        from simcore.planner.plots import pareto_figure

        pareto_figure(rec.pareto, args.plot, title=f"{rec.request['model']}: throughput per GPU vs latency",
                      xlabel=rec.request["pareto_latency"])
    if args.json:
        print(json.dumps(rec.as_dict(), indent=2))
        return 0
    console = stdout_console()
    console.print(ranked_table(rec, args.top))
    from simcore.planner.serving_search import summary_line

    console.print(summary_line(rec) + ("" if args.show_rejected else " (--show-rejected lists them all)"))
    from simcore.config.hardware import calibration_note

    note = calibration_note(sorted({o.gpu for o in rec.options[: args.top]}))
    if note:
        console.print(f"timings: {note}", style="dim")
    console.print(rejected_table(rec, None if args.show_rejected else 8))
    console.print(pareto_table(rec))
    d = rec.deployment()
    if d is not None:
        from simcore.planner.deploy import commands, trtllm_config

        b = rec.best
        split = ("" if b.prefill_replicas is None else
                 f", disaggregated: {b.prefill_replicas} prefill-only + {b.decode_replicas} decode-only, linked by "
                 f"the engine's KV connector (not in these commands)")
        console.print(f"deploy the winner ({b.gpu}, tp {b.tp}, pp {b.pp}"
                      + (f", ep {b.ep}" if b.ep > 1 else "") + f"): {b.replicas} replica(s){split}, each:",
                      style="bold")
        for engine, line in commands(d).items():
            console.print(f"  {engine:7} {line}", soft_wrap=True, highlight=False)
        yaml = trtllm_config(d)
        if yaml:
            console.print("  trtllm-config.yaml: " + yaml.replace("\n", " ").strip(), soft_wrap=True, highlight=False)
    if args.plot:
        console.print(f"wrote {args.plot}")
    return 0


def _n(v, fmt: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, fmt)


def _slo_title(q: dict) -> str:
    parts = []
    for m, unit, scale in (("ttft", "s", 1), ("tpot", "ms", 1e3)):
        s, p = q[f"{m}_slo_s"], q[f"{m}_slo_percentile"]
        if s is not None:
            parts.append(f"{'mean' if p is None else f'p{p:g}'} {m.upper()} <= {s * scale:g} {unit}")
    return ", ".join(parts)


def _pct(q: dict, m: str) -> str:
    p = q[f"{m}_slo_percentile"]
    return "mean" if q[f"{m}_slo_s"] is not None and p is None else f"p{p if p is not None else 90:g}"


def ranked_table(rec, top: int) -> Table:
    q = rec.request
    load = (f"{q['rate']:g} req/s ({q['arrival']})" if q["rate"] is not None
            else f"trace {q['trace']}" if q["trace"] else f"{q['concurrency']} concurrent clients")
    slo = _slo_title(q)
    t = Table(title=f"{q['model']}: {load}, {q['input_len']:,} in + {q['output_len']:,} out tokens"
              + (f"; {slo}" if slo else "") + "; serving simulation, cheapest per output token first",
              title_justify="left")
    cols = ("#", "GPU", "tp", "pp", "ep", "KV", "batched tok", "replicas", "GPUs", f"TTFT {_pct(q, 'ttft')} s",
            f"TPOT {_pct(q, 'tpot')} ms", "tok/s/GPU", "$/hour", "$/M output tok", "KV GiB/GPU")
    for col in cols:
        t.add_column(col, justify="left" if col in ("GPU", "KV") else "right")
    for i, o in enumerate(rec.options[:top], 1):
        t.add_row(str(i), o.gpu, str(o.tp), str(o.pp), str(o.ep), o.kv_cache_dtype, f"{o.max_num_batched_tokens:,}",
                  str(o.replicas) if o.prefill_replicas is None else f"{o.prefill_replicas}P+{o.decode_replicas}D",
                  str(o.gpus), _n(o.ttft_s, ".3f"), _n(o.tpot_s, ".1f", 1e3),
                  _n(o.output_tokens_per_s_per_gpu, ",.0f"), _n(o.cost_per_hour_usd, ",.2f"),
                  _n(o.cost_per_million_output_tokens_usd, ",.2f"), _n(o.kv_cache_capacity_bytes, ",.1f", 1 / GIB))
    if not rec.options:
        t.add_row("-", "no deployment meets the SLOs", *[""] * (len(cols) - 2))
    return t


def rejected_table(rec, limit: int | None) -> Table:
    """Rejections, the most informative first: simulated, then estimated, then rules (one per check
    when limited)."""
    order = {"simulated": 0, "estimate": 1, "rules": 2}
    rows = sorted(rec.rejected, key=lambda o: order[o.stage])
    if limit is not None:
        seen, picked = Counter(), []
        for o in rows:
            if seen[(o.stage, o.check)] < 2:
                picked.append(o)
                seen[(o.stage, o.check)] += 1
        rows = picked[:limit]
    t = Table(title="rejected" + (" (a sample: two per stage and check)" if limit is not None else ""),
              title_justify="left")
    for col in ("GPU", "tp", "pp", "ep", "KV", "stage", "check", "why"):
        t.add_column(col, justify="right" if col in ("tp", "pp", "ep") else "left")
    for o in rows:
        t.add_row(o.gpu, *("-" if v is None else str(v) for v in (o.tp, o.pp, o.ep)), o.kv_cache_dtype or "-",
                  o.stage, o.check, o.reason)
    return t


def pareto_table(rec) -> Table:
    t = Table(title=f"Pareto front: output tokens/s per GPU vs {rec.request['pareto_latency']} (every simulated run)",
              title_justify="left")
    for col in ("GPU", "tp", "pp", "ep", "KV", "replicas", "GPUs", "latency ms", "tok/s/GPU", "meets SLOs"):
        t.add_column(col, justify="left" if col in ("GPU", "KV") else "right")
    for p in rec.pareto:
        split = p.get("prefill_replicas")
        t.add_row(p["gpu"], str(p["tp"]), str(p["pp"]), str(p["ep"]), p["kv_cache_dtype"],
                  str(p["replicas"]) if split is None else f"{split}P+{p['decode_replicas']}D",
                  str(p["gpus"]), f"{p['latency_s'] * 1e3:.1f}", f"{p['output_tokens_per_s_per_gpu']:,.0f}",
                  "yes" if p["meets_slos"] else "no")
    return t
