"""Serving simulator vs measured vLLM / SGLang / TensorRT-LLM servers (issue 11).

Usage: python benchmarks/serving_silicon.py [--rows ../shared/calibration/serving_h100.json]
       [--disagg-rows benchmarks/data/aiconfigurator_disagg_h100.json] [--every N]
       [--only TEXT] [--jobs J] [--rounds R] [--limits defaults|aiconfigurator] [--no-cache] [--quiet]

A thin wrapper over `simcore validate` (simcore/validate/): the rows are read, built into
experiments and simulated by the same functions, and the summary lines are the same, so
`simcore validate ../shared/calibration/serving_h100.json` prints the same figures. What this
script adds: each result is cached under benchmarks/.cache/ by the hash of the experiment and of
simcore's code and catalogs (a rerun only simulates what changed), the per-row table with the
rows' own columns, and a summary per (engine, model, precision). The shared file's disagg rows lack
their layout columns; benchmarks/data/aiconfigurator_disagg_h100.json has them (docs/validation.md,
"Disaggregated rows") and is swapped in. Its rows also lack the provenance column that says which benchmark
(and client) measured them; benchmarks/data/silicon_provenance.json puts it back (docs/validation.md,
"Round 7"), so on the shared file itself `simcore validate` differs for the InferenceX rows.
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
from simcore.validate.compare import err, experiments, run, summarize, summary_lines  # noqa: E402
from simcore.validate.readers import read  # noqa: E402

DEFAULT_ROWS = ROOT / ".." / "shared" / "calibration" / "serving_h100.json"
# the same disagg rows as aiconfigurator publishes them, with the layout and load columns the shared extract dropped
DISAGG_ROWS = ROOT / "benchmarks" / "data" / "aiconfigurator_disagg_h100.json"
CACHE = ROOT / "benchmarks" / ".cache" / "serving_silicon"
# per configuration, the provenance columns the shared extract dropped (benchmarks/silicon_provenance.py)
PROVENANCE = ROOT / "benchmarks" / "data" / "silicon_provenance.json"


def with_disagg_layouts(rows_path: Path, full_path: Path, note: bool = True) -> Path:
    """rows_path with its disagg rows swapped for full_path's, when those are the same rows with more columns
    (every disagg row of rows_path equals one of full_path's on rows_path's columns, as multisets); else
    rows_path unchanged (with a note on stderr if `note`). Returns the file to read (a merged copy under the
    cache). A file that is not a rows file is returned as it is: the reader says what is wrong with it."""
    rows, full = _rows_of(rows_path), _rows_of(full_path)
    if rows is None or full is None:
        return rows_path
    mine = [r for r in rows if r.get("mode") == "disagg"]
    cols = {k for r in mine for k in r}

    def key(r: dict) -> tuple:
        return tuple(sorted((k, v) for k, v in r.items() if k in cols))

    if not mine:
        return rows_path
    try:
        same = sorted(map(key, mine)) == sorted(map(key, full))
    except TypeError:  # values of mixed types: not the same rows
        same = False
    if not same:
        if note:
            print(f"note: the disagg rows of {rows_path.name} are not those of {full_path.name}; kept as they are",
                  file=sys.stderr)
        return rows_path
    merged = [r for r in rows if r.get("mode") != "disagg"] + full
    return _merged_file(merged, f"{rows_path} with the disagg rows of {full_path}")


def with_provenance(rows_path: Path, prov_path: Path = PROVENANCE) -> Path:
    """rows_path with the provenance columns of prov_path (silicon_data_source, kv_cache_dtype) put back on each
    row whose configuration columns (prov_path's `key`) equal an entry's and that lacks them; rows_path itself
    when nothing matches or either file is not a rows file. The row builder reads the columns
    (simcore.serving.silicon.campaign: which benchmark, and so which client, measured the row)."""
    rows, entries = _rows_of(rows_path), _rows_of(prov_path)
    if rows is None or entries is None:
        return rows_path
    cols = json.loads(prov_path.read_text()).get("key")  # a rows file, so it parses
    if not isinstance(cols, list):
        return rows_path

    def key(r: dict) -> tuple:
        return tuple(str(r.get(k) or "") for k in cols)

    extra = {key(e): {k: v for k, v in e.items() if k not in cols} for e in entries}
    merged, hits = [], 0
    for r in rows:
        add = {k: v for k, v in extra.get(key(r), {}).items() if k not in r}
        hits += bool(add)
        merged.append({**r, **add})
    if not hits:
        return rows_path
    return _merged_file(merged, f"{rows_path} with the provenance columns of {prov_path}")


def _rows_of(path: Path) -> list | None:
    """The `rows` of a rows file when every one is an object; None for anything else (the reader of the
    rows file itself says what is wrong with it)."""
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows) else None


def _merged_file(rows: list, about: str) -> Path:
    """A rows file under the cache holding `rows` (named by their hash, so equal merges share one file)."""
    out = CACHE.parent / f"rows-{hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:12]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"about": about, "rows": rows}))
    return out


def code_digest() -> str:
    """Hash of everything a result depends on besides the experiment: simcore's code and catalogs."""
    h = hashlib.sha256()
    for sub in ("simcore", "models", "hardware"):
        for p in sorted((ROOT / sub).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".json", ".yaml", ".yml"):
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
                    help="the rows file's disagg rows with their full columns, swapped in when they match "
                         f"(default: {DISAGG_ROWS.relative_to(ROOT)})")
    ap.add_argument("--only", default="", help="only rows whose backend/model/precision text contains this")
    ap.add_argument("--jobs", type=int, default=jobs, help="worker processes")
    ap.add_argument("--rounds", type=int, default=MEASURED_ROUNDS, help="measured requests per client")


def selected_records(a: argparse.Namespace, limits: str | None = None, every: int = 1) -> list:
    """The records add_row_args' flags select: the rows file (its disagg rows with their full columns when
    --disagg-rows holds them), every Nth, those matching --only. A bad file or flag is one error line."""
    if a.rounds < 1:
        fail(f"--rounds: {a.rounds}: allowed: 1 or more")
    try:
        full = a.disagg_rows or DISAGG_ROWS
        rows = with_disagg_layouts(a.rows, full, note=a.disagg_rows is not None) if full.is_file() else a.rows
        rows = with_provenance(rows) if PROVENANCE.is_file() else rows
        records = read(rows, limits=limits)[::every]
    except SimcoreError as exc:
        fail(str(exc).splitlines()[0])
    if a.only:
        records = [r for r in records if a.only.lower() in
                   " ".join(str(v) for v in (r.engine, r.model, r.gpu, r.precision, r.source, r.mode)).lower()]
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_row_args(ap)
    ap.add_argument("--every", type=int, default=1, help="run every Nth row only (quick looks while developing)")
    ap.add_argument("--limits", choices=("defaults", "aiconfigurator"),
                    help="engine limits for every row (default: per engine, simcore.serving.silicon.LIMITS)")
    ap.add_argument("--no-cache", action="store_true", help="simulate every row again")
    ap.add_argument("--quiet", action="store_true", help="summary only, no per-row table")
    a = ap.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 200)
    if a.every < 1:
        fail(f"--every: {a.every}: allowed: 1 or more")
    records = selected_records(a, a.limits, a.every)
    start = time.perf_counter()
    outcomes = experiments(records, rounds=a.rounds)
    with progress_bar("simulating rows") as update:
        run(outcomes, a.jobs, progress=update, cache=DiskCache(not a.no_cache))
    if not a.quiet:
        print_rows(console, outcomes)
    print_groups(console, outcomes)
    for line in summary_lines(summarize(outcomes)):
        console.print(line, soft_wrap=True, highlight=False)
    console.print(f"[dim]wall {time.perf_counter() - start:.1f} s, {a.jobs} workers[/]")


if __name__ == "__main__":
    main()
