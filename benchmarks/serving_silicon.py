"""Serving simulator vs measured vLLM / SGLang / TensorRT-LLM servers (issue 11).

Usage: python benchmarks/serving_silicon.py [--rows ../shared/calibration/serving_h100.json]
       [--disagg-rows FULL_DISAGG_ROWS.json] [--every N]
       [--only TEXT] [--jobs J] [--rounds R] [--limits defaults|aiconfigurator] [--no-cache] [--quiet]

A thin wrapper over `simcore validate` (simcore/validate/): the rows are read, built into
experiments and simulated by the same functions, and the summary lines are the same, so
`simcore validate ../shared/calibration/serving_h100.json` prints the same figures. What this
script adds: each result is cached under benchmarks/.cache/ by the hash of the experiment and of
simcore's code and catalogs (a rerun only simulates what changed), the per-row table with the
rows' own columns, and a summary per (engine, model, precision). The shared file's disagg rows lack
their layout columns and every row the provenance column that says which benchmark (and client) measured
it; both are merged back by the one code path `simcore validate` uses (simcore/validate/provenance.py, its
data files under simcore/validate/data/; docs/validation.md, "Silicon rows: what is merged").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.errors import SimcoreError  # noqa: E402
from simcore.serving.silicon import MEASURED_ROUNDS  # noqa: E402
from simcore.validate.cli import progress_bar  # noqa: E402
from simcore.validate.compare import MAX_SEEDS, err, experiments, run_seeds, summarize, summary_lines  # noqa: E402
from simcore.validate.provenance import DISAGG, RowExtras  # noqa: E402
from simcore.validate.readers import read  # noqa: E402

DEFAULT_ROWS = ROOT / ".." / "shared" / "calibration" / "serving_h100.json"
CACHE = ROOT / "benchmarks" / ".cache" / "serving_silicon"


def code_digest() -> str:
    """Hash of everything a result depends on besides the experiment: simcore's code and catalogs."""
    h = hashlib.sha256()
    merged = ROOT / "simcore" / "validate" / "data"  # the rows' merged columns reach a result only through its experiment
    for sub in ("simcore", "models", "hardware"):
        for p in sorted((ROOT / sub).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".json", ".yaml", ".yml") and p.parent != merged:
                h.update(str(p.relative_to(ROOT)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


class DiskCache:
    def __init__(self, use: bool):
        self.use, self.digest = use, code_digest()
        CACHE.mkdir(parents=True, exist_ok=True)

    def _path(self, exp: dict, overrides) -> Path:
        key = hashlib.sha256((self.digest + json.dumps([exp, list(overrides)], sort_keys=True)).encode())
        return CACHE / f"{key.hexdigest()[:24]}.json"

    def get(self, exp: dict, overrides) -> dict | None:
        p = self._path(exp, overrides)
        return json.loads(p.read_text()) if self.use and p.is_file() else None

    def put(self, exp: dict, overrides, res: dict) -> None:
        self._path(exp, overrides).write_text(json.dumps(res))


def label(o) -> tuple[str, str, str]:
    """(engine, model, precision); disagg rows get their own groups, " disagg*" where workers were assumed."""
    r = o.record
    mode = (" disagg*" if r.assumed else " disagg") if r.mode == "disagg" else ""
    return r.engine or "", (r.model or "").split("/")[-1] + mode, r.precision or "bf16"


def pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def mean(o, metric: str, side: str) -> float:
    return (o.record.latency if side == "measured" else o.result["latency"])[metric]["mean"]


def print_rows(console: Console, outcomes: list) -> None:
    t = Table(title="Per row: measured vs predicted mean TTFT / TPOT (ms); error = predicted / measured - 1",
              title_justify="left")
    for col in ("engine", "model", "prec", "tp", "ep", "c", "ISL/OSL", "TTFT meas", "TTFT pred", "err",
                "TPOT meas", "TPOT pred", "err ", "note"):
        t.add_column(col, justify="left" if col in ("engine", "model", "prec", "ISL/OSL", "note") else "right")
    for o in outcomes:
        if o.refused:
            continue
        mt, pt = mean(o, "ttft", "measured"), mean(o, "ttft", "predicted")
        mp, pp = mean(o, "tpot", "measured"), mean(o, "tpot", "predicted")
        r = o.record
        note = f"{o.result['preemptions']} preempt" if o.result.get("preemptions") else ""
        tp, ep = str(r.tp), str(r.ep)
        if r.pools:  # prefill / decode: workers x layout
            tp, ep = ("/".join(f"{p.workers or '?'}x{p.tp}" + (f"a{p.attention_dp}" if p.attention_dp > 1 else "")
                               for p in r.pools.values()), "/".join(str(p.ep) for p in r.pools.values()))
        t.add_row(*label(o), tp, ep, str(r.concurrency), f"{r.isl}/{r.osl}", f"{mt:,.1f}",
                  f"{pt:,.1f}", pct(err(pt, mt)), f"{mp:.2f}", f"{pp:.2f}", pct(err(pp, mp)), note)
    console.print(t)


def print_groups(console: Console, outcomes: list) -> None:
    # a file of several GPUs (the held-out rows) is summarized per GPU too
    by_gpu = len({o.record.gpu for o in outcomes if not o.refused}) > 1
    groups: dict[tuple, list] = {}
    for o in outcomes:
        if not o.refused:
            groups.setdefault(((o.record.gpu or "",) if by_gpu else ()) + label(o), []).append(o)
    head = ("gpu",) if by_gpu else ()
    t = Table(title=f"Summary per ({', '.join(head + ('engine', 'model', 'precision'))}): |error| median / max, "
                    f"signed median", title_justify="left")
    for col in head + ("engine", "model", "prec", "n", "TTFT med|e|", "TTFT max|e|", "TTFT med e", "TPOT med|e|",
                       "TPOT max|e|", "TPOT med e"):
        t.add_column(col, justify="left" if col in ("gpu", "engine", "model", "prec") else "right")
    for key in sorted(groups):
        items = groups[key]
        cells = []
        for m in ("ttft", "tpot"):
            e = [err(mean(o, m, "predicted"), mean(o, m, "measured")) for o in items]
            cells += [f"{100 * statistics.median(map(abs, e)):.1f}%", f"{100 * max(map(abs, e)):.0f}%",
                      pct(statistics.median(e))]
        t.add_row(*key, str(len(items)), *cells)
    console.print(t)


def fail(msg: str) -> None:
    """One error line, exit 2 (the project's rule for bad input)."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def add_row_args(ap: argparse.ArgumentParser, jobs: int = os.cpu_count() or 1) -> None:
    """The flags every script over measured rows shares: which rows, which of them, workers, rounds."""
    ap.add_argument("--rows", type=Path, default=DEFAULT_ROWS, help="a serving_*.json file of measured rows")
    ap.add_argument("--disagg-rows", type=Path, default=None,
                    help="disagg rows with their full columns: a row of the rows file that is one of them (same "
                         "system, engine, model, lengths and measured latencies) gets the columns it lacks "
                         f"(default: simcore/validate/data/{DISAGG}, every published disagg row by digest)")
    ap.add_argument("--only", default="", help="only rows whose backend/model/precision text contains this")
    ap.add_argument("--jobs", type=int, default=jobs, help="worker processes")
    ap.add_argument("--rounds", type=int, default=MEASURED_ROUNDS, help="measured requests per client")


def selected_records(a: argparse.Namespace, limits: str | None = None, every: int = 1) -> list:
    """The records add_row_args' flags select: the rows file (its disagg rows with their full columns when
    --disagg-rows holds them), every Nth, those matching --only. A bad file or flag is one error line."""
    if a.rounds < 1:
        fail(f"--rounds: {a.rounds}: allowed: 1 or more")
    try:  # the columns the shared extract dropped, merged as `simcore validate` merges them
        extras = RowExtras(disagg=a.disagg_rows)
        records = read(a.rows, limits=limits, extras=extras)[::every]
    except SimcoreError as exc:
        fail(str(exc).splitlines()[0])
    for line in extras.notes:
        print(f"note: {line}", file=sys.stderr)
    if a.only:  # the source's file name and row, not its folders (a folder named like a model matched every row)
        records = [r for r in records if a.only.lower() in " ".join(str(v) for v in (
            r.engine, r.model, r.gpu, r.precision, Path(str(r.source)).name, r.mode)).lower()]
    return records


def add_seeds_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seeds", type=int, default=1, metavar="N",
                    help="simulate each row under N client seeds and compare their mean (default 1: seed 0 only)")


def checked_seeds(n: int) -> int:
    """--seeds N, or one error line and exit 2."""
    if not 1 <= n <= MAX_SEEDS:
        fail(f"--seeds: {n}: allowed: 1 to {MAX_SEEDS}")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_row_args(ap)
    ap.add_argument("--every", type=int, default=1, help="run every Nth row only (quick looks while developing)")
    ap.add_argument("--limits", choices=("defaults", "aiconfigurator"),
                    help="engine limits for every row, in place of the InferenceX recipes and simcore.serving.silicon.LIMITS "
                         "(default: a row's recipe, else LIMITS per engine)")
    ap.add_argument("--no-cache", action="store_true", help="simulate every row again")
    ap.add_argument("--quiet", action="store_true", help="summary only, no per-row table")
    add_seeds_arg(ap)
    a = ap.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 200)
    if a.every < 1:
        fail(f"--every: {a.every}: allowed: 1 or more")
    checked_seeds(a.seeds)
    records = selected_records(a, a.limits, a.every)
    start = time.perf_counter()
    outcomes = experiments(records, rounds=a.rounds)
    with progress_bar("simulating rows") as update:
        run_seeds(outcomes, a.seeds, a.jobs, progress=update, cache=DiskCache(not a.no_cache))
    if not a.quiet:
        print_rows(console, outcomes)
    print_groups(console, outcomes)
    for line in summary_lines(summarize(outcomes)):
        console.print(line, soft_wrap=True, highlight=False)
    console.print(f"[dim]wall {time.perf_counter() - start:.1f} s, {a.jobs} workers[/]")


if __name__ == "__main__":
    main()
