"""Serving simulator vs measured vLLM / SGLang / TensorRT-LLM servers (issue 11).

Usage: python benchmarks/serving_silicon.py [--rows ../shared/calibration/serving_h100.json] [--every N]
       [--only TEXT] [--jobs J] [--rounds R] [--no-cache] [--quiet]

Every row of the file that the catalog can express becomes a serving experiment through
simcore.serving.silicon.experiment_for_row (engine profile, benchmark client, layout); the rows
run in a process pool and each result is cached under benchmarks/.cache/ by the hash of the
experiment and of simcore's code and catalogs, so a rerun only simulates what changed. Prints
per row measured vs predicted mean TTFT and mean TPOT (error = predicted / measured - 1), a
summary per (engine, model, precision), the share of rows within 10% / 20%, and the refused rows
counted by reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.errors import SimcoreError  # noqa: E402
from simcore.serving.silicon import MEASURED_ROUNDS, Refused, experiment_for_row  # noqa: E402

DEFAULT_ROWS = ROOT / ".." / "shared" / "calibration" / "serving_h100.json"
CACHE = ROOT / "benchmarks" / ".cache" / "serving_silicon"


def code_digest() -> str:
    """Hash of everything a result depends on besides the experiment: simcore's code and catalogs."""
    h = hashlib.sha256()
    for sub in ("simcore", "models", "hardware"):
        for p in sorted((ROOT / sub).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".json", ".yaml", ".yml"):
                h.update(str(p.relative_to(ROOT)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def refusal(exc: SimcoreError) -> str:
    """A short reason for a row the schema or the simulator rejects."""
    text = str(exc)
    if "attention_dp" in text:
        return "attention_dp"
    if "leaves no room for a KV block" in text:
        return "weights do not fit"
    return text.split(":")[0][:40]


def simulate(exp: dict) -> dict:
    """One row in a worker process: {'ttft', 'tpot'} in ms, or {'refused': reason}."""
    from simcore.runner import run_dict

    try:
        s = run_dict(exp, source="serving_silicon")
    except SimcoreError as exc:
        return {"refused": refusal(exc), "detail": str(exc).splitlines()[0][:120]}
    if not s["requests_completed"] or s["ttft_s"]["mean"] is None:
        why = "KV cache too small" if "KV blocks" in str(s["dropped_reasons"]) else "nothing completed"
        return {"refused": why, "detail": str(s["dropped_reasons"])[:120]}
    return {"ttft": s["ttft_s"]["mean"] * 1e3, "tpot": s["tpot_s"]["mean"] * 1e3,
            "preemptions": s["preemptions"], "dropped": s["requests_dropped"]}


def cached(key: str) -> dict | None:
    p = CACHE / f"{key}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def label(row: dict) -> tuple[str, str, str]:
    return row["backend"], row["model_path"].split("/")[-1], row.get("precision") or "bf16"


def run_rows(rows: list[dict], jobs: int, rounds: int, use_cache: bool, console: Console, salt: str = "",
             initializer=None, limits: str | None = None) -> list:
    """[(row, experiment or None, result)] in row order. salt / initializer: a variant of the simulator
    set up in each worker (benchmarks/fit_serving.py runs the rows without host time)."""
    digest = code_digest() + salt
    out: list = [None] * len(rows)
    todo = []
    for i, row in enumerate(rows):
        try:
            exp = experiment_for_row(row, rounds=rounds, limits=limits)
        except Refused as exc:
            out[i] = (row, None, {"refused": exc.reason, "detail": str(exc)})
            continue
        key = hashlib.sha256((digest + json.dumps(exp, sort_keys=True)).encode()).hexdigest()[:24]
        hit = cached(key) if use_cache else None
        if hit is not None:
            out[i] = (row, exp, hit)
        else:
            todo.append((i, exp, key))
    CACHE.mkdir(parents=True, exist_ok=True)
    show = sys.stderr.isatty()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, initializer=initializer) as pool:
        futs = {pool.submit(simulate, exp): (i, exp, key) for i, exp, key in todo}
        for n, fut in enumerate(as_completed(futs), 1):
            i, exp, key = futs[fut]
            res = fut.result()
            (CACHE / f"{key}.json").write_text(json.dumps(res))
            out[i] = (rows[i], exp, res)
            if show:
                el = time.perf_counter() - start
                print(f"\r  simulated {n}/{len(todo)} rows ({len(rows) - len(todo)} cached or refused), "
                      f"{el:.0f} s", end="", file=sys.stderr, flush=True)
    if show and todo:
        print(file=sys.stderr)
    return out


def err(pred: float, meas: float) -> float:
    return pred / meas - 1


def pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def print_rows(console: Console, results: list) -> None:
    t = Table(title="Per row: measured vs predicted mean TTFT / TPOT (ms); error = predicted / measured - 1",
              title_justify="left")
    for col in ("engine", "model", "prec", "tp", "ep", "c", "ISL/OSL", "TTFT meas", "TTFT pred", "err",
                "TPOT meas", "TPOT pred", "err ", "note"):
        t.add_column(col, justify="left" if col in ("engine", "model", "prec", "ISL/OSL", "note") else "right")
    for row, exp, res in results:
        if "refused" in res:
            continue
        mt, mp = float(row["silicon_ttft_ms"]), float(row["silicon_tpot_ms"])
        e = exp["parallelism"]
        note = f"{res['preemptions']} preempt" if res.get("preemptions") else ""
        t.add_row(*label(row), str(e["tp"]), str(e.get("ep", 1)), row.get("batch_size", ""),
                  f"{row['isl']}/{row['osl']}", f"{mt:,.1f}", f"{res['ttft']:,.1f}", pct(err(res["ttft"], mt)),
                  f"{mp:.2f}", f"{res['tpot']:.2f}", pct(err(res["tpot"], mp)), note)
    console.print(t)


def summarize(console: Console, results: list) -> dict:
    ok = [(row, res) for row, _, res in results if "refused" not in res]
    groups: dict[tuple, list] = {}
    for row, res in ok:
        groups.setdefault(label(row), []).append((row, res))
    t = Table(title="Summary per (engine, model, precision): |error| median / max, signed median", title_justify="left")
    for col in ("engine", "model", "prec", "n", "TTFT med|e|", "TTFT max|e|", "TTFT med e", "TPOT med|e|",
                "TPOT max|e|", "TPOT med e"):
        t.add_column(col, justify="left" if col in ("engine", "model", "prec") else "right")

    def errs(items, k, mk):
        return [err(res[k], float(row[mk])) for row, res in items]

    for key in sorted(groups):
        items = groups[key]
        te, pe = errs(items, "ttft", "silicon_ttft_ms"), errs(items, "tpot", "silicon_tpot_ms")
        t.add_row(*key, str(len(items)),
                  f"{100 * statistics.median(map(abs, te)):.1f}%", f"{100 * max(map(abs, te)):.0f}%",
                  pct(statistics.median(te)),
                  f"{100 * statistics.median(map(abs, pe)):.1f}%", f"{100 * max(map(abs, pe)):.0f}%",
                  pct(statistics.median(pe)))
    console.print(t)
    te, pe = errs(ok, "ttft", "silicon_ttft_ms"), errs(ok, "tpot", "silicon_tpot_ms")
    total = len(results)
    refused: dict[str, int] = {}
    for _, _, res in results:
        if "refused" in res:
            refused[res["refused"]] = refused.get(res["refused"], 0) + 1
    out = {"rows": total, "simulated": len(ok), "refused": refused}
    if ok:
        share = lambda xs, b: sum(abs(x) <= b for x in xs) / len(xs)  # noqa: E731
        out.update(ttft_median_abs=statistics.median(map(abs, te)), tpot_median_abs=statistics.median(map(abs, pe)),
                   ttft_median=statistics.median(te), tpot_median=statistics.median(pe))
        console.print(
            f"[bold]All simulated rows ({len(ok)} of {total})[/]: TTFT median |error| "
            f"{100 * out['ttft_median_abs']:.1f}% (signed {pct(out['ttft_median'])}), within 10% "
            f"{100 * share(te, 0.1):.0f}%, within 20% {100 * share(te, 0.2):.0f}%; TPOT median |error| "
            f"{100 * out['tpot_median_abs']:.1f}% (signed {pct(out['tpot_median'])}), within 10% "
            f"{100 * share(pe, 0.1):.0f}%, within 20% {100 * share(pe, 0.2):.0f}%")
    nref = sum(refused.values())
    console.print(f"[bold]Refused[/]: {nref} of {total} rows ({100 * nref / max(total, 1):.1f}%): "
                  + ", ".join(f"{k} {v}" for k, v in sorted(refused.items(), key=lambda kv: -kv[1])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=DEFAULT_ROWS, help="a serving_*.json file of measured rows")
    ap.add_argument("--every", type=int, default=1, help="run every Nth row only (quick looks while developing)")
    ap.add_argument("--only", default="", help="only rows whose backend/model/precision text contains this")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--rounds", type=int, default=MEASURED_ROUNDS, help="measured requests per client")
    ap.add_argument("--limits", choices=("defaults", "aiconfigurator"),
                    help="engine limits for every row (default: per engine, simcore.serving.silicon.LIMITS)")
    ap.add_argument("--no-cache", action="store_true", help="simulate every row again")
    ap.add_argument("--quiet", action="store_true", help="summary only, no per-row table")
    a = ap.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 200)
    rows = json.loads(a.rows.read_text())["rows"][:: a.every]
    if a.only:
        rows = [r for r in rows if a.only.lower() in " ".join(map(str, r.values())).lower()]
    start = time.perf_counter()
    results = run_rows(rows, a.jobs, a.rounds, not a.no_cache, console, limits=a.limits)
    if not a.quiet:
        print_rows(console, results)
    summarize(console, results)
    console.print(f"[dim]wall {time.perf_counter() - start:.1f} s, {a.jobs} workers[/]")


if __name__ == "__main__":
    main()
