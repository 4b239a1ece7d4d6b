"""`simcore validate RESULTS...`: measured serving benchmarks against the simulator; `--fit` fits the
engine's host constants to them. `register(subparsers)` adds the command (simcore/cli.py)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from simcore.errors import SimcoreError, unknown
from simcore.report.console import stdout_console
from simcore.serving.silicon import ENGINES, GPUS, MEASURED_ROUNDS, MODELS, catalog_name
from simcore.validate.compare import MAX_SEEDS, SIM_STATS, comparisons, experiments, run_seeds, summarize, summary_lines
from simcore.validate.provenance import RowExtras
from simcore.validate.readers import Facts, read

CSV_FIELDS = ("source", "name", "engine", "model", "gpu", "tp", "concurrency", "rate", "isl", "osl", "status",
              "metric", "stat", "unit", "measured", "predicted", "error")


@contextlib.contextmanager
def progress_bar(what: str):
    """update(done, total) on a transient bar on stderr, only when stderr is a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())
    task = None

    def update(done: int, total: int | None = None) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task(what, total=total)
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def facts(args: argparse.Namespace) -> Facts:
    """The deployment flags, checked against the catalogs and engines (unknown names: one line)."""
    from simcore.config.catalog import entries

    if args.model and catalog_name("model", args.model, MODELS) is None:
        raise unknown("model (--model)", args.model, list(entries("models", ".json")) + list(MODELS))
    if args.gpu and catalog_name("gpu", args.gpu, GPUS) is None:
        raise unknown("gpu (--gpu)", args.gpu, list(entries("hardware/gpus", ".yaml")) + list(GPUS))
    if args.engine and args.engine not in ENGINES:
        raise unknown("engine (--engine)", args.engine, ENGINES)
    return Facts(model=args.model, gpu=args.gpu, tp=args.tp, pp=args.pp, ep=args.ep, engine=args.engine,
                 engine_version=args.engine_version, precision=args.precision)


def _label(o) -> str:
    return o.experiment["name"] if o.experiment else o.record.source


def record_json(o) -> dict:
    r = o.record
    d = {k: v for k, v in asdict(r).items() if k not in ("latency", "throughput", "refused", "requests")}
    d.update(name=_label(o), requests_measured=r.requests,
             requests_simulated=o.experiment["workload"]["requests"] if o.experiment else None,
             measured={"latency_ms": r.latency, "throughput": r.throughput})
    if o.refused:
        d.update(status="refused", reason=o.refused, detail=o.result.get("detail", ""))
    else:
        d.update(status="simulated", comparisons=comparisons(o), preemptions=o.result.get("preemptions"),
                 dropped=o.result.get("dropped"))
    return d


def _cell(cs: list[dict], metric: str, stat: str) -> str:
    for c in cs:
        if c["metric"] == metric and c["stat"] == stat:
            fmt = ",.2f" if c["measured"] < 100 else ",.0f"
            return f"{c['measured']:{fmt}} / {c['predicted']:{fmt}} ({100 * c['error']:+.1f}%)"
    return ""


def print_table(outcomes: list, console: Console) -> None:
    stats = list(SIM_STATS) + ["requests_per_s", "output_tokens_per_s"]
    t = Table(title="Measured / predicted (error = predicted / measured - 1); latencies in ms, throughput per s",
              title_justify="left")
    present = {c["stat"] for o in outcomes for c in comparisons(o)}
    stats = [s for s in stats if s in present]  # only the statistics some file has
    for col in ["record", "metric"] + stats:
        t.add_column(col, justify="left" if col in ("record", "metric") else "right")
    for o in outcomes:
        cs = comparisons(o)
        for metric in dict.fromkeys(c["metric"] for c in cs):
            t.add_row(_label(o), metric, *[_cell(cs, metric, s) for s in stats])
    if present:
        console.print(t)


def write_csv(path: Path, outcomes: list) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for o in outcomes:
            r = o.record
            head = {"source": r.source, "name": _label(o), "engine": r.engine, "model": r.model, "gpu": r.gpu,
                    "tp": r.tp, "concurrency": r.concurrency, "rate": r.rate, "isl": r.isl, "osl": r.osl}
            if o.refused:
                w.writerow({**head, "status": f"refused: {o.refused}"})
            for c in comparisons(o):
                w.writerow({**head, "status": "simulated", **c})


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v}; allowed: 1 or more")
    return v


def _seeds(text: str) -> int:
    v = _positive(text)
    if v > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"{v}; allowed: 1 to {MAX_SEEDS}")
    return v


def _not_a_result(path: Path, results: list[str]) -> None:
    """Refuse to write the fitted profile over one of the measured result files it was fitted to."""
    if any(path.resolve() == Path(r).resolve() for r in results):
        raise SimcoreError(f"--profile-out {path}: is a result file read by this command; give another path "
                           f"(unset: ENGINE-host-profile.yaml in --out or here)")


def row_extras(args: argparse.Namespace) -> RowExtras | None:
    """What --no-provenance, --provenance and --disagg-rows ask to merge into silicon rows (None: nothing)."""
    if args.no_provenance:
        if args.provenance or args.disagg_rows:
            raise SimcoreError(f"--no-provenance: not with {'--provenance' if args.provenance else '--disagg-rows'}"
                               f" (which names a file to merge)")
        return None
    return RowExtras(Path(args.provenance) if args.provenance else None,
                     Path(args.disagg_rows) if args.disagg_rows else None)


def _validate(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out and out.exists() and not out.is_dir():
        raise SimcoreError(f"--out {args.out}: is a file; --out takes a folder (created if missing)")
    if args.profile_out and not args.fit:
        raise SimcoreError("--profile-out: only with --fit (it names the fitted profile file)")
    if args.profile_out:
        _not_a_result(Path(args.profile_out), args.results)
    f = facts(args)
    extras = row_extras(args)
    records = [rec for path in args.results for rec in read(path, f, extras=extras)][:: args.every]
    for line in extras.notes if extras is not None else ():
        print(f"note: {line}", file=sys.stderr)
    if args.only:
        records = [r for r in records if args.only.lower() in
                   " ".join(str(v) for v in (r.engine, r.model, r.gpu, r.precision, r.source)).lower()]
        if not records:
            raise SimcoreError(f"--only {args.only!r}: matches no record")
    overrides = tuple(args.set)
    outcomes = experiments(records, requests=args.requests, rounds=MEASURED_ROUNDS)
    unknown_systems = sorted({o.result["detail"] for o in outcomes if o.refused == "gpu not in catalog"})
    if unknown_systems and all(o.refused == "gpu not in catalog" for o in outcomes):
        raise SimcoreError(f"system: {unknown_systems[0].removeprefix('gpu not in catalog: ')}")
    with progress_bar("simulating records") as update:
        run_seeds(outcomes, args.seeds, args.jobs, overrides, progress=update)
    summary = summarize(outcomes)
    report = {"records": [record_json(o) for o in outcomes], "summary": summary}
    if extras is not None:
        report["provenance"] = {"rows": extras.with_provenance, "disagg_layouts": extras.with_layouts,
                                "files": [extras.provenance_from, extras.disagg_from]}
    fit = None
    if args.fit:
        from simcore.validate.fit import fit_host, write_profile

        with progress_bar("fitting host constants: simulations") as update:
            fit = fit_host(outcomes, args.jobs, overrides, progress=lambda n: update(n))
        path = Path(args.profile_out) if args.profile_out else (out or Path(".")) / f"{fit.engine}-host-profile.yaml"
        _not_a_result(path, args.results)
        brief = {"records": fit.after["simulated"], "sources": sorted({o.record.source.split(":")[0].split("#")[0]
                                                                      for o in fit.outcomes}),
                 "start_us": fit.start_us,
                 "median_abs_error_before": {f"{m['metric']} {m['stat']}": round(m["median_abs_error"], 4)
                                             for m in fit.before["metrics"]},
                 "median_abs_error_after": {f"{m['metric']} {m['stat']}": round(m["median_abs_error"], 4)
                                            for m in fit.after["metrics"]}}
        version = fit.outcomes[0].experiment["serving"].get("engine_version")
        write_profile(path, fit.engine, version, fit.fitted_us, brief)
        report["fit"] = {"engine": fit.engine, "engine_version": version, "start_us": fit.start_us,
                         "fitted_us": fit.fitted_us, "iterations": fit.iterations, "simulations": fit.simulations,
                         "rows": fit.rows, "rms_log_error_tpot": fit.rms,
                         "before": fit.before, "after": fit.after, "profile": str(path)}
    if out:
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "validate.json").write_text(json.dumps(report, indent=2) + "\n")
            write_csv(out / "comparisons.csv", outcomes)
        except OSError as exc:
            raise SimcoreError(f"--out {args.out}: cannot write {exc.filename or out}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    console = stdout_console()
    print_table(outcomes, console)
    for line in summary_lines(summary):
        console.print(line, soft_wrap=True, highlight=False)
    for line in unknown_systems:  # one line per system no catalog GPU stands for
        console.print(f"refused, unknown system: {line.removeprefix('gpu not in catalog: ')}", soft_wrap=True,
                      highlight=False)
    if extras is not None and (extras.with_provenance or extras.with_layouts):
        console.print(f"Merged (--no-provenance: off): which benchmark measured the row, on {extras.with_provenance} "
                      f"rows ({extras.provenance_from}); the load and layout, on {extras.with_layouts} disagg rows "
                      f"({extras.disagg_from})", soft_wrap=True, highlight=False)
    if fit is not None:
        consts = ", ".join(f"{k} {fit.start_us[k]:.4g} -> {fit.fitted_us[k]:.4g}" for k in fit.start_us)
        console.print(f"[bold]Fit[/] of {fit.engine}'s host constants to the mean TPOT of {fit.rows} dense records "
                      f"(grid search, {fit.simulations} simulations, rms log error {fit.rms:.3f}): {consts}",
                      soft_wrap=True)
        for b, a in zip(fit.before["metrics"], fit.after["metrics"]):
            console.print(f"  {b['metric'].upper() if b['metric'] != 'throughput' else b['metric']} {b['stat']}: "
                          f"median |error| {100 * b['median_abs_error']:.1f}% -> {100 * a['median_abs_error']:.1f}%",
                          soft_wrap=True, highlight=False)
        console.print(f"wrote {report['fit']['profile']}: use it with --set serving.engine_profile="
                      f"{report['fit']['profile']}", soft_wrap=True, highlight=False)
    if out:
        console.print(f"wrote {out}/validate.json and {out}/comparisons.csv", soft_wrap=True, highlight=False)
    return 0


def register(subparsers) -> None:
    """Add `validate` to the `simcore` command's subparsers."""
    p = subparsers.add_parser(
        "validate", help="compare measured serving benchmarks (vLLM, SGLang, silicon rows) with simcore",
        description="Read vLLM `bench serve --save-result` JSON, SGLang `bench_serving` JSONL or silicon rows, "
                    "simulate each run and print measured vs predicted latencies and throughput (docs/validation.md).")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="result files")
    d = p.add_argument_group("deployment facts (override the files'; needed where a file lacks them)")
    d.add_argument("--model", help="catalog name or Hugging Face id of the served model")
    d.add_argument("--gpu", help="catalog GPU, e.g. h100-sxm")
    d.add_argument("--tp", type=_positive, help="tensor-parallel size")
    d.add_argument("--pp", type=_positive, help="pipeline-parallel size")
    d.add_argument("--ep", type=_positive, help="expert-parallel size")
    d.add_argument("--engine", help="serving engine: " + ", ".join(ENGINES))
    d.add_argument("--engine-version", help="engine version, e.g. 0.11.0 (defaults differ between versions)")
    d.add_argument("--precision", help="weights: bf16, fp16, fp8, fp4 (default: the checkpoint's)")
    p.add_argument("--requests", type=_positive, metavar="N",
                   help=f"measured requests simulated per record (default: {MEASURED_ROUNDS} per client, closed "
                        f"loop; at most 500 open loop; never more than the file measured)")
    p.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, metavar="J", help="worker processes")
    p.add_argument("--seeds", type=_seeds, default=1, metavar="N",
                   help="simulate each record under N client seeds and compare their mean (default 1)")
    p.add_argument("--only", metavar="TEXT", help="only records whose engine/model/gpu/precision/source contains TEXT")
    p.add_argument("--every", type=_positive, default=1, metavar="N", help="every Nth record only")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a field of every simulated experiment, e.g. serving.engine_profile=P.yaml")
    p.add_argument("--fit", action="store_true", help="fit the engine's host constants to the records")
    p.add_argument("--profile-out", metavar="PATH", help="with --fit: the profile file to write "
                   "(default: <engine>-host-profile.yaml in --out or here)")
    p.add_argument("--no-provenance", action="store_true",
                   help="silicon rows: merge nothing (default: put back the columns the shared extract dropped on "
                        "rows that match: which benchmark measured them, the load and layout of disagg rows)")
    p.add_argument("--provenance", metavar="FILE", help="silicon rows: the provenance file to merge (default: "
                   "the one shipped, written by benchmarks/silicon_provenance.py)")
    p.add_argument("--disagg-rows", metavar="FILE", help="silicon rows: the disagg rows with their full columns, "
                   "put back on the file's disagg rows that are one of them: same system, engine, model, lengths and "
                   "measured latencies (default: the published H100 / H200 / B200 rows' columns, shipped)")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout instead of tables")
    p.add_argument("--out", metavar="DIR", help="write validate.json and comparisons.csv here")
    p.set_defaults(func=_validate)
