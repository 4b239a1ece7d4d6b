"""The `simcore` command. Bad input prints one line on stderr and exits 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from rich.console import Console

from simcore.errors import SimcoreError, clip
from simcore.report.console import stdout_console

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1  # a bug in simcore (the last-resort handler in main); bad input is 2
MAX_LINE = 1_000  # characters of one error line; values inside are already cut to a few hundred


@contextlib.contextmanager
def _pass_progress(mode: str, unit: str = "passes"):
    """A transient progress bar on stderr over simulated passes (or finished requests), when stderr is a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(f"simulating ({mode}) {unit}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task("passes", total=total)
        bar.update(task, completed=done)

    with bar:
        yield update


def _check_writable(path: str, flag: str) -> None:
    """Say before a long simulation, not after it, that an output file cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise SimcoreError(f"{flag} {path}: is a folder; {flag} takes a file path")
    if not p.parent.is_dir():
        raise SimcoreError(f"{flag} {path}: folder {p.parent} does not exist; create it first")


def _run(args: argparse.Namespace) -> int:
    from simcore.config.experiment import load_experiment
    from simcore.report.summary import write_breakdown
    from simcore.report.tables import print_run
    from simcore.runner import run

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise SimcoreError(f"--out {args.out}: is a file; --out takes a folder (created if missing)")
    if args.trace:
        _check_writable(args.trace, "--trace")
    overrides = list(args.set) + ([f"engine.mode={args.mode}"] if args.mode else []) + (
        ["engine.all_ranks=true"] if args.all_ranks else [])
    exp = load_experiment(args.experiment, overrides)
    if exp.workload.kind == "requests":
        return _serve(args, exp)
    if exp.workload.kind == "training":
        return _train(args, exp)
    with _pass_progress(exp.engine.mode) as progress:
        res, s = run(exp, progress=progress)
    from simcore.report.trace import write_trace

    return _finish(args, res, s, write_trace, write_breakdown, lambda console: print_run(res, s, console))


def _train(args: argparse.Namespace, exp) -> int:
    """One training step: summary table or JSON; --out writes summary.json and breakdown.csv; --trace the step."""
    from simcore.report.training import print_training, write_training_breakdown, write_training_trace
    from simcore.runner import run

    res, s = run(exp)
    return _finish(args, res, s, write_training_trace, write_training_breakdown,
                   lambda console: print_training(s, console))


def _finish(args: argparse.Namespace, res, s: dict, write_trace, write_breakdown, show) -> int:
    """The end of a static or training run: --trace, --out (summary.json, breakdown.csv), then JSON or tables."""
    if args.trace:
        try:
            write_trace(res, Path(args.trace))
        except OSError as exc:
            raise SimcoreError(f"--trace {args.trace}: cannot write: {exc.strerror}") from None
    if args.out:
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps(s, indent=2) + "\n")
            write_breakdown(res, out / "breakdown.csv")
        except OSError as exc:
            where = exc.filename or out
            raise SimcoreError(f"--out {args.out}: cannot write {where}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        console = stdout_console()
        show(console)
        if args.out:
            console.print(f"wrote {args.out}/summary.json and {args.out}/breakdown.csv", soft_wrap=True)
        if args.trace:
            console.print(f"wrote {args.trace}: open it at https://ui.perfetto.dev", soft_wrap=True)
    return 0


def _serve(args: argparse.Namespace, exp) -> int:
    """A request-level run: summary table or JSON; --out adds summary.json, requests.csv, timeline.png."""
    from simcore.report.serving import print_serving, write_outputs
    from simcore.runner import run

    from simcore.report.serving_trace import SpanLog

    spans = SpanLog() if args.trace else None
    out = Path(args.out) if args.out else None
    try:
        if out:
            out.mkdir(parents=True, exist_ok=True)
        with _pass_progress("serving", unit="requests") as progress:
            res, s = run(exp, requests_csv=out / "requests.csv" if out else None, spans=spans, progress=progress)
        if out:
            write_outputs(res, s, out)
    except OSError as exc:
        raise SimcoreError(f"--out {args.out}: cannot write {exc.filename or out}: {exc.strerror}") from None
    if spans is not None:
        try:
            spans.write(Path(args.trace))
        except OSError as exc:
            raise SimcoreError(f"--trace {args.trace}: cannot write: {exc.strerror}") from None
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        console = stdout_console()
        print_serving(s, console)
        if out:
            console.print(f"wrote {out}/summary.json, {out}/requests.csv and {out}/timeline.png", soft_wrap=True)
        if spans is not None:
            more = f" ({spans.dropped:,} spans past the limit dropped)" if spans.dropped else ""
            console.print(f"wrote {args.trace}{more}: open it at https://ui.perfetto.dev", soft_wrap=True)
    return 0


def _models(args: argparse.Namespace) -> int:
    from simcore.report.catalog_tables import models_table

    stdout_console().print(models_table())
    return 0


def _hardware(args: argparse.Namespace) -> int:
    from simcore.report.catalog_tables import hardware_table

    stdout_console().print(hardware_table())
    return 0


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # --debug is global: accepted before or after the command (suppressed default: the top-level one stands)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="on an internal error, show the Python traceback instead of one line")

    def error(self, message: str):  # argparse's usage errors also exit 2, on one line
        self.exit(EXIT_BAD_INPUT, f"error: {clip(message, MAX_LINE)} (see '{self.prog} --help')\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="simcore", description="Simulate LLM inference on GPU clusters, with the KV cache explicit.")
    p.set_defaults(debug=False)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run an experiment YAML")
    r.add_argument("experiment", help="path to an experiment YAML")
    r.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override a field by dotted path, e.g. --set workload.batch_size=64 (repeatable)")
    r.add_argument("--out", metavar="DIR", help="write summary.json and breakdown.csv here")
    r.add_argument("--json", action="store_true", help="print the JSON summary on stdout instead of tables")
    r.add_argument("--mode", choices=("analytical", "hybrid", "flattened"),
                   help="timing mode (same as --set engine.mode=MODE)")
    r.add_argument("--all-ranks", action="store_true",
                   help="flattened mode: simulate every TP rank, not one per stage (same times, full trace; "
                        "same as --set engine.all_ranks=true)")
    r.add_argument("--trace", metavar="PATH", help="write a Chrome/Perfetto trace JSON of the simulated passes")
    r.set_defaults(func=_run)
    sub.add_parser("models", help="list the model catalog").set_defaults(func=_models)
    sub.add_parser("hardware", help="list the hardware catalog").set_defaults(func=_hardware)
    from simcore.calibrate.cli import register as register_calibrate
    from simcore.planner.cli import register as register_planner
    from simcore.sweep.cli import register as register_sweep

    from simcore.validate.cli import register as register_validate

    register_planner(sub)
    register_sweep(sub)
    register_calibrate(sub)
    from simcore.ui import register as register_ui

    register_ui(sub)
    register_validate(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 ok, 2 bad input (one 'error: ...' line on stderr), 1 an internal error (one
    line naming the command; --debug shows the traceback), 130 interrupted."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2): returned, so callers in-process see it
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        return args.func(args)
    except SimcoreError as exc:
        print(f"error: {clip(' '.join(line.strip() for line in str(exc).splitlines()), MAX_LINE)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a path the user gave that the system refuses (too long, a loop, no permission)
        if args.debug:
            raise
        where = clip(str(exc.filename), 200) if exc.filename else f"simcore {args.command}"
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # the net under every specific check: a bug
        if args.debug:
            raise
        what = "ran out of memory" if isinstance(exc, MemoryError) else \
            f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())})"
        print(f"error: simcore {args.command}: {clip(what, 300)}; this is a bug in simcore: rerun with "
              f"'simcore --debug {args.command} ...' for the traceback and report it", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
