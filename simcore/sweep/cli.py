"""`simcore sweep SWEEP.yaml [...]` runs a sweep; `simcore sweep report RESULTS.sqlite [...]` reads one.

`register(subparsers)` adds the `sweep` parser to the `simcore` command (simcore/cli.py).
"""

from __future__ import annotations

import argparse
import re

from rich.console import Console

from simcore.errors import SimcoreError
from simcore.report.console import stdout_console

EXIT_POINTS_FAILED = 1
RUN_FLAGS = ("executor", "workers", "db", "resume", "retry_failed", "ray_address", "no_progress", "max_points")
REPORT_FLAGS = ("x", "y", "hue", "csv", "plot", "pareto", "metrics")

USAGE = """%(prog)s SWEEP.yaml [--executor local|ray] [--workers N] [--db RESULTS.sqlite] [--resume]
                     [--retry-failed] [--ray-address ADDR] [--no-progress] [--max-points N]
       %(prog)s report RESULTS.sqlite [--x FIELD --y METRIC [--hue FIELD]] [--csv OUT.csv]
                     [--plot OUT.png] [--pareto X_METRIC,Y_METRIC] [--metrics M1,M2,...]"""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _given(args: argparse.Namespace, names) -> list[str]:
    return [_flag(n) for n in names if getattr(args, n) not in (None, False)]


def _dispatch(args: argparse.Namespace) -> int:
    if args.target == "report":
        if _given(args, RUN_FLAGS):
            raise SimcoreError(f"{', '.join(_given(args, RUN_FLAGS))}: options for running a sweep, not for 'report'")
        return _report(args)
    if args.results is not None:
        raise SimcoreError(f"unexpected argument {args.results!r}: run a sweep with 'simcore sweep SWEEP.yaml', "
                           f"read results with 'simcore sweep report RESULTS.sqlite'")
    if _given(args, REPORT_FLAGS):
        raise SimcoreError(f"{', '.join(_given(args, REPORT_FLAGS))}: options of 'simcore sweep report RESULTS.sqlite'")
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from simcore.sweep.run import run_sweep
    from simcore.sweep.spec import MAX_POINTS, load_sweep

    sweep = load_sweep(args.target)
    db = args.db or f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', sweep.name)[:100]}.sqlite"
    err = Console(stderr=True)
    result = run_sweep(sweep, db, executor=args.executor or "local", workers=args.workers, resume=args.resume,
                       retry_failed=args.retry_failed, ray_address=args.ray_address,
                       progress=not args.no_progress, console=err,
                       max_points=MAX_POINTS if args.max_points is None else args.max_points)
    for line in result.failures[result.invalid:]:
        err.print(f"failed: {line}", soft_wrap=True, markup=False, highlight=False)
    print(result.line())
    return EXIT_POINTS_FAILED if result.failed_in_store else 0


def _report(args: argparse.Namespace) -> int:
    from simcore.sweep import report as rp
    from simcore.sweep.store import Store

    if args.results is None:
        raise SimcoreError("sweep report: give the results file: simcore sweep report RESULTS.sqlite")
    with Store(args.results, create=False) as store:
        rows, meta = store.rows(), store.meta()
    if not rows:
        raise SimcoreError(f"{args.results}: holds no points yet")
    axes = rp.axes_of(rows, meta)
    if args.metrics:
        metrics = [rp.check_metric(m.strip(), rows, "--metrics") for m in args.metrics.split(",") if m.strip()]
    else:
        metrics = rp.key_metrics(rows)
    if (args.x or args.hue) and not args.plot:
        raise SimcoreError("--x and --hue choose what --plot draws; add --plot OUT.png")
    if args.plot and not args.y and not args.pareto:
        raise SimcoreError("--plot needs --x FIELD and --y METRIC (a metric against an axis), or --pareto X,Y")
    if args.y:
        if args.plot and not args.x:
            raise SimcoreError("--y needs --x FIELD to plot against (an axis such as workload.batch_size)")
        y = rp.check_metric(args.y, rows, "--y")
        metrics += [y] if y not in metrics else []
    x = rp.check_field(args.x, rows, "--x") if args.x else None
    hue = rp.check_field(args.hue, rows, "--hue") if args.hue else None
    front = pareto_x = pareto_y = None
    if args.pareto:
        front, pareto_x, pareto_y = rp.frontier(rows, args.pareto)
        metrics += [m for m in (pareto_x[0], pareto_y[0]) if m not in metrics]
    if args.csv:
        rp.write_csv(args.csv, rows, axes, metrics, front)
    if args.plot and args.y:
        rp.plot_lines(args.plot, rows, axes, x, y, hue)
    elif args.plot:
        rp.plot_pareto(args.plot, rows, front, pareto_x, pareto_y)
    out = stdout_console()  # files first: a bad path is one error line and nothing on stdout
    title = f"sweep {meta.get('sweep', '?')}: {len(rows)} points ({sum(r.status == 'ok' for r in rows)} ok)"
    out.print(rp.table(rows, axes, metrics, front, title))
    if front is not None:
        out.print(f"Pareto frontier of {pareto_x[0]} ({'max' if pareto_x[1] else 'min'}) and {pareto_y[0]} "
                  f"({'max' if pareto_y[1] else 'min'}): {len(front)} points, marked *", soft_wrap=True)
    for path in (args.csv, args.plot):
        if path:
            out.print(f"wrote {path}", soft_wrap=True)
    return 0


def register(subparsers) -> None:
    """Add `sweep` to the `simcore` command's subparsers."""
    p = subparsers.add_parser(
        "sweep", usage=USAGE, help="run a sweep of experiments, or report one ('sweep report RESULTS.sqlite')",
        description="Run every point of a sweep file (docs/sweeps.md) into a SQLite results file, or report one.")
    p.add_argument("target", metavar="SWEEP.yaml | report", help="a sweep file to run, or 'report'")
    p.add_argument("results", nargs="?", metavar="RESULTS.sqlite", help="with 'report': the results file to read")
    r = p.add_argument_group("running a sweep")
    r.add_argument("--executor", choices=["local", "ray"], help="local process pool (default) or a Ray cluster")
    r.add_argument("--workers", type=int, metavar="N", help="processes (local; default: all cores) or Ray tasks in flight")
    r.add_argument("--db", metavar="RESULTS.sqlite", help="results file (default: ./<sweep name>.sqlite)")
    r.add_argument("--resume", action="store_true", help="continue a results file: run only the missing points")
    r.add_argument("--retry-failed", action="store_true", help="with --resume: run failed points again too")
    r.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local Ray)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (never drawn off a terminal)")
    r.add_argument("--max-points", type=int, metavar="N",
                   help="refuse sweeps that expand past N points (default 10,000), counted before expanding")
    g = p.add_argument_group("report")
    g.add_argument("--x", metavar="FIELD", help="plot against this field (an axis, e.g. workload.batch_size)")
    g.add_argument("--y", metavar="METRIC", help="metric to plot (dotted path into the summary, e.g. e2e_s)")
    g.add_argument("--hue", metavar="FIELD", help="one line per value of this field")
    g.add_argument("--csv", metavar="OUT.csv", help="write one row per point")
    g.add_argument("--plot", metavar="OUT.png", help="draw --y against --x, or else the --pareto frontier")
    g.add_argument("--pareto", metavar="X,Y", help="mark the Pareto frontier of two metrics (max:/min: prefixes)")
    g.add_argument("--metrics", metavar="M1,M2", help="table and CSV metrics instead of the key ones")
    p.set_defaults(func=_dispatch)
