"""Run a sweep: plan every point, check the store, run what is missing, commit each as it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from simcore import __version__
from simcore.errors import SimcoreError
from simcore.sweep import executors
from simcore.sweep.expand import Plan, Task, describe, plan
from simcore.sweep.spec import MAX_POINTS, Sweep
from simcore.sweep.store import Row, Store, now

EXECUTORS = ("local", "ray")


@dataclass
class SweepResult:
    plan: Plan
    db: Path
    ran: int = 0  # points simulated by this call
    ok: int = 0  # of those, finished
    failed: int = 0  # of those, failed
    invalid: int = 0  # points that failed validation, written as failed rows by this call
    already: int = 0  # points found in the store and not run again
    failures: list[str] = field(default_factory=list)  # invalid points first, then points that failed running
    failed_in_store: int = 0  # this sweep's points whose stored row is failed (this call or earlier)

    def line(self) -> str:
        p = self.plan
        parts = [f"sweep '{p.sweep.name}': {p.expanded} points"]
        if p.filtered:
            parts.append(f"{sum(p.filtered.values())} filtered")
        if p.duplicates:
            parts.append(f"{p.duplicates} duplicates")
        if self.already:
            parts.append(f"{self.already} already in {self.db}")
        if self.invalid:
            parts.append(f"{self.invalid} invalid")
        parts.append(f"{self.ran} ran: {self.ok} ok, {self.failed} failed")
        return ", ".join(parts) + f"; results in {self.db}"


def _row(sweep: Sweep, task: Task, status: str, error: str | None, summary: dict | None, elapsed: float | None) -> Row:
    return Row(task.key, sweep.name, task.point.index, task.point.overrides, task.experiment, status, error,
               summary, __version__, elapsed, now())


def _open_store(sweep: Sweep, db: Path, resume: bool) -> Store:
    store = Store(db)
    stored = store.count()
    owner = store.meta().get("sweep")
    if stored and not resume:
        store.close()
        raise SimcoreError(
            f"--db {db} already holds {stored} points of sweep '{owner}'; pass --resume to run only the "
            f"missing points, or give a new --db to start over")
    if stored and owner != sweep.name:
        store.close()
        raise SimcoreError(f"--db {db} holds sweep '{owner}', not '{sweep.name}'; give another --db")
    meta = store.meta()
    store.set_meta(sweep=sweep.name, source=sweep.source, spec=sweep.as_dict(), simcore_version=__version__,
                   created=meta.get("created", now()), axes=_axes(sweep))
    return store


def _axes(sweep: Sweep) -> list[str]:
    paths = list(sweep.grid) + [p for z in sweep.zips for p in z]
    return paths + [p for point in sweep.points for p in point if p not in paths]


def _progress(console: Console, name: str) -> Progress:
    return Progress(
        TextColumn(f"sweep {name}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=console,
    )


def run_sweep(sweep: Sweep, db: str | Path, executor: str = "local", workers: int | None = None,
              resume: bool = False, retry_failed: bool = False, ray_address: str | None = None,
              progress: bool = True, console: Console | None = None, max_points: int = MAX_POINTS) -> SweepResult:
    """Run every point of `sweep` missing from `db`; raises SimcoreError for bad input."""
    if executor not in EXECUTORS:
        raise SimcoreError(f"--executor {executor!r}: allowed: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise SimcoreError(f"--workers {workers}: must be at least 1")
    if retry_failed and not resume:
        raise SimcoreError("--retry-failed needs --resume (it re-runs the failed points of an existing results file)")
    if ray_address and executor != "ray":
        raise SimcoreError("--ray-address needs --executor ray")
    if executor == "ray":
        executors.require_ray()
    console = console or Console(stderr=True)
    if max_points < 1:
        raise SimcoreError(f"--max-points {max_points}: must be at least 1")
    the_plan = plan(sweep, max_points)
    result = SweepResult(the_plan, Path(db))
    with _open_store(sweep, Path(db), resume) as store:
        if the_plan.filtered:
            console.print("filtered: " + "; ".join(f"{n} x {r}" for r, n in the_plan.filtered.most_common()),
                          soft_wrap=True, markup=False, highlight=False)
        stored = store.statuses()
        keep = {k for k, s in stored.items() if s == "ok" or not retry_failed}
        todo: list[Task] = []
        for task in the_plan.tasks:
            if task.key in keep:
                result.already += 1
            elif task.error is not None:
                store.put(_row(sweep, task, "failed", task.error, None, None))
                result.invalid += 1
                result.failures.append(task.error)
            else:
                todo.append(task)
        for line in result.failures:
            console.print(f"invalid: {line}", soft_wrap=True, markup=False, highlight=False)

        bar = _progress(console, sweep.name) if progress and todo and console.is_terminal else None
        handle = None

        def started() -> None:
            nonlocal handle
            if bar is not None:
                bar.start()
                handle = bar.add_task("points", total=len(todo), failed=0)

        def on_done(i: int, out: executors.Outcome) -> None:
            task = todo[i]
            status = "ok" if out.error is None else "failed"
            store.put(_row(sweep, task, status, out.error, out.summary, out.elapsed_s))
            result.ran += 1
            if out.error is None:
                result.ok += 1
            else:
                result.failed += 1
                result.failures.append(f"{describe(task.point)}: {out.error}")
            if bar is not None:
                bar.update(handle, advance=1, failed=result.failed)

        experiments = [t.experiment for t in todo]
        try:
            if todo and executor == "ray":
                executors.run_ray(experiments, on_done, workers, ray_address, started)
            elif todo:
                executors.run_local(experiments, on_done, workers or executors.default_workers(), started)
        finally:
            if handle is not None:
                bar.stop()
        stored = store.statuses()
        result.failed_in_store = sum(stored.get(t.key) == "failed" for t in the_plan.tasks)
    return result
