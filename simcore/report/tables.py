"""Rich tables for the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from simcore.run.static import PassResult, StaticResult
from simcore.config.hardware import GIB, profile_tag



def _ms(s: float) -> str:
    return f"{s * 1e3:,.3f}"


def summary_table(s: dict) -> Table:
    t = Table(title=f"{s['name'] or s['model']}: {s['model']} on {s['parallelism']['gpus']}x {s['hardware']}"
              + profile_tag(s["efficiency_profile"]),
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    p, w, d, m = s["parallelism"], s["workload"], s["decode_step_s"], s["memory_per_gpu_bytes"]
    rows = [
        ("parallelism", f"tp {p['tp']}  pp {p['pp']}  dp {p['dp']}  ep {p['ep']}"
                        + (f"  attention_dp {p['attention_dp']}" if p.get("attention_dp", 1) > 1 else "")),
        ("precision", "weights {weights}, experts {experts}, activations {activations}, KV {kv_cache}".format(**s["precision"])),
        ("workload", f"batch {w['batch_size']}, prompt {w['prompt_tokens']}, output {w['output_tokens']}"),
        ("engine", f"{s['mode']} mode, overlap {s['overlap_policy']}, {s['events_simulated']:,} events on "
                   f"{s['ranks_simulated']} ranks"),
        ("TTFT", f"{_ms(s['ttft_s'])} ms"),
        ("decode step first / mean / last", f"{_ms(d['first'])} / {_ms(d['mean'])} / {_ms(d['last'])} ms"),
        ("end to end", f"{s['e2e_s']:,.3f} s"),
        ("output throughput", f"{s['output_tokens_per_s']:,.0f} tok/s ({s['output_tokens_per_s_per_gpu']:,.0f} per GPU)"),
        ("KV cache read / written", f"{s['kv_cache_bytes_read'] / 1e9:,.2f} / {s['kv_cache_bytes_written'] / 1e9:,.3f} GB"),
        ("KV bytes per token", f"{s['kv_cache_bytes_per_token']:,.0f}"),
        ("memory per GPU", f"weights {m['weights'] / GIB:.2f} + KV {m['kv_cache'] / GIB:.2f} + act {m['activations'] / GIB:.2f}"
                           f" + runtime {m['runtime_overhead'] / GIB:.2f} = {m['total'] / GIB:.2f} of {m['capacity'] / GIB:.2f} GiB"),
    ]
    crit = s["critical_path_s"]
    total = sum(crit.values()) or 1.0
    rows.append(("critical path", ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in sorted(crit.items(), key=lambda kv: -kv[1]))))
    if "kv_retention" in s:
        kr = s["kv_retention"]
        saved = (f"KV read {kr['kv_cache_bytes_saved'] / 1e9:,.1f} GB less, {kr['time_saved_s']:,.3f} s saved"
                 if "time_saved_s" in kr else f"keeping every token: {kr['full']}")
        rows.append(("KV retention", f"{kr['policy']} keeps {kr['retained_tokens']:,} tokens: {saved}"))
    if "kv_placement" in s:
        kp = s["kv_placement"]
        held = ", ".join(f"{n} {t['resident_bytes'] / GIB:,.1f} GiB" for n, t in kp["tiers"].items() if t["resident_bytes"])
        cost = (f", {kp['time_cost_s']:+,.3f} s against all in HBM" if "time_cost_s" in kp
                else ", all in HBM does not fit")
        rows.append(("KV placement", f"{kp['policy']}: {held}{cost}"))
    if "speculative" in s:
        sp = s["speculative"]
        rows.append(("speculative", f"{sp['method']} k {sp['k']}: {sp['tokens_per_step']:.2f} tokens per step, TPOT "
                                    f"{_ms(sp['tpot_s'])} ms, end to end {sp['e2e_s']:,.3f} s, decode x{sp['speedup']:.2f}"))
    for k, v in rows:
        t.add_row(k, v)
    return t


def ops_table(title: str, p: PassResult) -> Table:
    agg: dict[str, list] = {}
    for w in p.stages:
        for x in w.ops:
            a = agg.setdefault(x.op.name, [x.op.kind, 0, 0.0, 0.0, 0.0, {}])
            a[1] += 1
            a[2] += x.exposed
            a[3] += x.op.flops
            a[4] += x.op.bytes
            a[5][x.bound] = a[5].get(x.bound, 0.0) + x.duration
    total = p.time or 1.0
    t = Table(title=title, title_justify="left")
    for col in ("op", "kind", "count", "time ms", "share", "GFLOP", "GB", "bound"):
        t.add_column(col, justify="left" if col in ("op", "kind", "bound") else "right")
    for name, (kind, n, tm, fl, by, bounds) in sorted(agg.items(), key=lambda kv: -kv[1][2]):
        t.add_row(name, kind, str(n), _ms(tm), f"{100 * tm / total:.1f}%", f"{fl / 1e9:,.2f}", f"{by / 1e9:,.3f}",
                  max(bounds, key=bounds.get))
    t.add_row("total", "", "", _ms(p.time), "100%", "", "", "", style="bold")
    return t


def print_run(res: StaticResult, s: dict, console: Console) -> None:
    console.print(summary_table(s))
    console.print(ops_table("prefill (all stages)", res.prefill))
    if res.decode_first is not None:
        console.print(ops_table("first decode step (all stages)", res.decode_first))
