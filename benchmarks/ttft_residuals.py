"""Where simulated mean TTFT misses the measured servers: by engine x model x TP x ISL x concurrency.

Usage: python benchmarks/ttft_residuals.py [--rows FILE] [--only TEXT] [--jobs J] [--rounds R]
       [--by engine,model,tp,isl,c] [--set KEY=VALUE ...] [--no-cache] [--loop] [--tpot-split]

Runs the rows exactly as benchmarks/serving_silicon.py does (same experiments, same disk cache, so a
warm cache prints at once) and prints two tables, then serving_silicon.py's TTFT / TPOT summary lines:
1. per group (--by): rows, median measured and predicted mean TTFT (ms), the median signed and absolute
   error, the median gap measured - predicted in ms (the time a mechanism has to explain) and TPOT's median
   signed and absolute error;
2. the OSL test, per (engine, model): over every (tp, isl, c) measured at several OSLs, the median ratio
   of TTFT at the longest OSL to TTFT at the shortest, measured and predicted. A client waiting for a
   slot gains about E2E / slots of TTFT, which grows with OSL; prefill queueing does not.
With --loop a third table reads each row's closed loop by Little's law, measured and predicted (loop_of):
requests/s X = c / (TTFT + (OSL - 1) x TPOT + the client's mean re-issue delay), output tokens/s, clients
decoding X x (OSL - 1) x TPOT, clients waiting for a first token X x TTFT, and prompts per step X x TPOT:
where one prompt at most enters a step and every running request decodes in every step (TensorRT-LLM
under the generator's limits), the share of steps that admit a prompt.
With --tpot-split, another: per (engine, model, tp, isl, c) at two OSLs or more, mean TPOT split into a decode
step and the stall one other client's prompt step adds (TPOT = step + X / (OSL - 1), X / (c - 1) per prompt),
measured and predicted: which of the two a TPOT error sits in.
The default, 20 rounds, simulates the 20 requests per client that the rows' benchmark measured (aiperf
--num-requests 20c, as serving_silicon.py does); fewer rounds weigh the first lock-step wave more.
`--set` changes every row's experiment as `simcore run --set` does, e.g.
`--set workload.arrival.reissue_delay_s=0.002` (a client's next request reaches the engine 2 ms late).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from serving_silicon import DiskCache, add_row_args, fail, selected_records  # noqa: E402
from simcore.config.experiment import experiment_from_dict  # noqa: E402
from simcore.errors import SimcoreError  # noqa: E402
from simcore.validate.cli import progress_bar  # noqa: E402
from simcore.validate.compare import experiments, run, summarize, summary_lines  # noqa: E402

KEYS = ("engine", "model", "precision", "version", "tp", "isl", "osl", "c")


def residual_rows(outcomes: list) -> list[dict]:
    """One dict per simulated record: its deployment keys and measured / predicted mean TTFT and TPOT (ms)."""
    out = []
    for o in outcomes:
        if o.refused or not o.result:
            continue
        r, lat = o.record, o.result["latency"]
        out.append({"engine": r.engine or "", "model": (r.model or "").split("/")[-1],
                    "precision": r.precision or "bf16", "version": r.engine_version or "?", "tp": r.tp,
                    "isl": r.isl, "osl": r.osl, "c": r.concurrency,
                    "ttft": r.latency["ttft"]["mean"], "ttft_pred": lat["ttft"]["mean"],
                    "tpot": r.latency["tpot"]["mean"], "tpot_pred": lat["tpot"]["mean"],
                    "delay_ms": 1e3 * ((r.client or {}).get("reissue_delay_s") or 0.0)})
    return out


def loop_of(c: int, osl: int, ttft_ms: float, tpot_ms: float, delay_ms: float = 0.0) -> dict:
    """One closed-loop row by Little's law (c clients, each: wait for the first token, OSL - 1 token gaps, then
    the re-issue delay): requests/s, output tokens/s, clients decoding, clients waiting for a first token,
    and prompts per step (requests/s x TPOT)."""
    cycle = (ttft_ms + (osl - 1) * tpot_ms + delay_ms) / 1e3
    x = c / cycle
    return {"req_s": x, "tok_s": x * osl, "decoding": x * (osl - 1) * tpot_ms / 1e3,
            "waiting": x * ttft_ms / 1e3, "prompts_per_step": x * tpot_ms / 1e3}


LOOP_KEYS = ("req_s", "tok_s", "decoding", "waiting", "prompts_per_step")


def loop_grouped(rows: list[dict], by: tuple[str, ...]) -> list[dict]:
    """Per group of `by` keys: the median of each loop_of quantity, measured and predicted (key_pred)."""
    out = []
    for key, group in _groups(rows, by).items():
        meas = [loop_of(r["c"], r["osl"], r["ttft"], r["tpot"], r.get("delay_ms", 0.0)) for r in group]
        pred = [loop_of(r["c"], r["osl"], r["ttft_pred"], r["tpot_pred"], r.get("delay_ms", 0.0)) for r in group]
        g = {**dict(zip(by, key)), "n": len(group)}
        for k in LOOP_KEYS:
            g[k] = statistics.median(m[k] for m in meas)
            g[k + "_pred"] = statistics.median(p[k] for p in pred)
        out.append(g)
    return out


def _groups(rows: list[dict], by: tuple[str, ...]) -> dict[tuple, list]:
    """The rows by their `by` keys, groups in sorted order (numbers first, then text)."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    return {key: groups[key] for key in sorted(groups, key=_order)}


def _by_osl(rows: list[dict]) -> dict[tuple, dict]:
    """(engine, model, tp, isl, c) -> {osl: row}: the rows of one deployment and load at each OSL."""
    sets: dict[tuple, dict] = {}
    for r in rows:
        sets.setdefault((r["engine"], r["model"], r["tp"], r["isl"], r["c"]), {})[r["osl"]] = r
    return sets


def _order(key: tuple) -> tuple:
    """Sort key of a group: numbers in order, then text (a missing value sorts as its text)."""
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in key)


def grouped(rows: list[dict], by: tuple[str, ...]) -> list[dict]:
    """Per group of `by` keys (sorted): n, median measured / predicted TTFT, median signed and absolute TTFT
    error, median gap measured - predicted (ms) and median signed and absolute TPOT error."""
    out = []
    for key, g in _groups(rows, by).items():
        med = statistics.median
        out.append({**dict(zip(by, key)), "n": len(g), "ttft": med(r["ttft"] for r in g),
                    "ttft_pred": med(r["ttft_pred"] for r in g),
                    "error": med(r["ttft_pred"] / r["ttft"] - 1 for r in g),
                    "abs_error": med(abs(r["ttft_pred"] / r["ttft"] - 1) for r in g),
                    "gap_ms": med(r["ttft"] - r["ttft_pred"] for r in g),
                    "tpot_error": med(r["tpot_pred"] / r["tpot"] - 1 for r in g),
                    "tpot_abs_error": med(abs(r["tpot_pred"] / r["tpot"] - 1) for r in g)})
    return out


def osl_growth(rows: list[dict]) -> list[dict]:
    """Per (engine, model): over every (tp, isl, c) with two OSLs or more, the median of TTFT(longest OSL) /
    TTFT(shortest OSL), measured and predicted, and how many such sets there were."""
    sets = _by_osl(rows)
    per: dict[tuple, list] = {}
    for (engine, model, *_), by_osl in sets.items():
        if len(by_osl) < 2:
            continue
        lo, hi = by_osl[min(by_osl)], by_osl[max(by_osl)]
        per.setdefault((engine, model), []).append((hi["ttft"] / lo["ttft"], hi["ttft_pred"] / lo["ttft_pred"]))
    return [{"engine": e, "model": m, "sets": len(v), "measured": statistics.median(a for a, _ in v),
             "predicted": statistics.median(b for _, b in v)} for (e, m), v in sorted(per.items())]


def tpot_split(rows: list[dict]) -> list[dict]:
    """Per (engine, model, tp, isl, c) measured at two OSLs or more: mean TPOT = step + X / (OSL - 1), where
    `step` is a decode step and X the time the other clients' prompt steps add to one request's decode life;
    the shortest and longest OSL (both above 1) give both, measured and predicted (ms). `stall` is X / (c - 1),
    the cost of one other client's prompt (None at c 1)."""
    sets = _by_osl([r for r in rows if r["osl"] > 1])
    out = []
    for (engine, model, tp, isl, c), by_osl in sorted(sets.items(), key=lambda kv: _order(kv[0])):
        lo, hi = min(by_osl), max(by_osl)
        if lo == hi:
            continue
        f = 1 / (lo - 1) - 1 / (hi - 1)
        row = {"engine": engine, "model": model, "tp": tp, "isl": isl, "c": c, "osl_lo": lo, "osl_hi": hi}
        for key, suffix in (("tpot", ""), ("tpot_pred", "_pred")):
            x = (by_osl[lo][key] - by_osl[hi][key]) / f
            row["step" + suffix] = by_osl[hi][key] - x / (hi - 1)
            row["stall" + suffix] = x / (c - 1) if c and c > 1 else None
        out.append(row)
    return out


def print_tpot_split(console: Console, rows: list[dict]) -> None:
    t = Table(title="TPOT split: mean TPOT = decode step + X / (OSL - 1), from the shortest and longest OSL; "
                    "stall = X / (c - 1), one other client's prompt (ms)", title_justify="left")
    for col in ("engine", "model", "tp", "isl", "c", "OSLs", "step meas", "step pred", "step err", "stall meas",
                "stall pred"):
        t.add_column(col, justify="left" if col in ("engine", "model") else "right")
    for g in tpot_split(rows):
        stall = ("", "") if g["stall"] is None else (f"{g['stall']:.1f}", f"{g['stall_pred']:.1f}")
        t.add_row(g["engine"], g["model"], str(g["tp"]), str(g["isl"]), str(g["c"]), f"{g['osl_lo']}-{g['osl_hi']}",
                  f"{g['step']:.2f}", f"{g['step_pred']:.2f}", f"{100 * (g['step_pred'] / g['step'] - 1):+.1f}%",
                  *stall)
    console.print(t)


def print_tables(console: Console, rows: list[dict], by: tuple[str, ...]) -> None:
    t = Table(title="Mean TTFT by group: medians; error = predicted / measured - 1; gap = measured - predicted",
              title_justify="left")
    for col in (*by, "n", "TTFT meas ms", "TTFT pred ms", "TTFT err", "|TTFT err|", "gap ms", "TPOT err",
                "|TPOT err|"):
        t.add_column(col, justify="left" if col in ("engine", "model", "precision", "version") else "right")
    for g in grouped(rows, by):
        t.add_row(*(str(g[k]) for k in by), str(g["n"]), f"{g['ttft']:,.0f}", f"{g['ttft_pred']:,.0f}",
                  f"{100 * g['error']:+.1f}%", f"{100 * g['abs_error']:.1f}%", f"{g['gap_ms']:+,.0f}",
                  f"{100 * g['tpot_error']:+.1f}%", f"{100 * g['tpot_abs_error']:.1f}%")
    console.print(t)
    t = Table(title="OSL test: median TTFT(longest OSL) / TTFT(shortest OSL) at the same tp, isl, c",
              title_justify="left")
    for col in ("engine", "model", "sets", "measured", "predicted"):
        t.add_column(col, justify="left" if col in ("engine", "model") else "right")
    for g in osl_growth(rows):
        t.add_row(g["engine"], g["model"], str(g["sets"]), f"{g['measured']:.2f}", f"{g['predicted']:.2f}")
    console.print(t)


def print_loop(console: Console, rows: list[dict], by: tuple[str, ...]) -> None:
    t = Table(title="Closed loop by Little's law (medians, measured / predicted): requests/s, output tokens/s, "
                    "clients decoding, clients waiting for a first token, prompts per step", title_justify="left")
    for col in (*by, "n", "req/s", "tok/s", "decoding", "waiting", "prompts/step"):
        t.add_column(col, justify="left" if col in ("engine", "model", "precision", "version") else "right")
    fmt = {"req_s": "{:.1f}", "tok_s": "{:,.0f}", "decoding": "{:.0f}", "waiting": "{:.1f}",
           "prompts_per_step": "{:.2f}"}
    for g in loop_grouped(rows, by):
        t.add_row(*(str(g[k]) for k in by), str(g["n"]),
                  *(f"{fmt[k].format(g[k])} / {fmt[k].format(g[k + '_pred'])}" for k in LOOP_KEYS))
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_row_args(ap, jobs=2)
    ap.add_argument("--by", default="engine,model,tp,isl,c", help=f"group keys, comma separated: {', '.join(KEYS)}")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of every row's experiment (repeatable)")
    ap.add_argument("--no-cache", action="store_true", help="simulate every row again")
    ap.add_argument("--loop", action="store_true",
                    help="also print each group's closed loop by Little's law (clients decoding / waiting)")
    ap.add_argument("--tpot-split", action="store_true",
                    help="also split mean TPOT into a decode step and the stall per other client's prompt")
    a = ap.parse_args()
    by = tuple(k.strip() for k in a.by.split(",") if k.strip())
    bad = [k for k in by if k not in KEYS]
    if bad or not by:
        fail(f"--by: {','.join(bad) or repr(a.by)}: allowed keys: {', '.join(KEYS)}")
    records = selected_records(a)
    outcomes = experiments(records, rounds=a.rounds)
    overrides = tuple(a.set)
    probe = next((o.experiment for o in outcomes if o.experiment), None)
    if overrides and probe is not None:
        try:  # a bad --set is one line here, not one refusal per row
            experiment_from_dict(probe, list(overrides), "--set")
        except SimcoreError as exc:
            fail(str(exc).splitlines()[0])
    with progress_bar("simulating rows") as update:
        run(outcomes, a.jobs, overrides=overrides, progress=update, cache=DiskCache(not a.no_cache))
    console = Console(width=None if sys.stdout.isatty() else 200)
    rows = residual_rows(outcomes)
    print_tables(console, rows, by)
    if a.loop:
        print_loop(console, rows, by)
    if a.tpot_split:
        print_tpot_split(console, rows)
    for line in summary_lines(summarize(outcomes)):
        console.print(line, soft_wrap=True, highlight=False)


if __name__ == "__main__":
    main()
