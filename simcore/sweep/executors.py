"""Where points run: in this process, a local process pool (the default), or a Ray cluster.

Every executor has the same shape: `execute(experiments, on_done)` calls `on_done(i, outcome)`
in the parent as each point finishes, in completion order, so the parent alone writes the store.
At most a few points per worker are in flight, which keeps memory flat and makes Ctrl-C quick.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

from simcore.errors import SimcoreError

IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class Outcome:
    summary: dict | None
    error: str | None
    elapsed_s: float


def run_point(experiment: dict) -> Outcome:
    """Run one validated experiment; never raises, so one broken point cannot stop a sweep."""
    from simcore.runner import run_dict

    start = time.perf_counter()
    try:
        return Outcome(run_dict(experiment, None, "point"), None, time.perf_counter() - start)
    except SimcoreError as exc:
        error = " ".join(line.strip() for line in str(exc).splitlines())
    except Exception as exc:  # a simulator bug: keep the message, go on with the other points
        where = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"internal error: {type(exc).__name__}: {exc} (at {os.path.basename(where.filename)}:{where.lineno})"
    return Outcome(None, error, time.perf_counter() - start)


Done = Callable[[int, Outcome], None]


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_serial(experiments: Sequence[dict], on_done: Done) -> None:
    for i, exp in enumerate(experiments):
        on_done(i, run_point(exp))


def _exit_with_parent(parent: int) -> None:
    """Pool workers leave when the parent dies (even by SIGKILL) instead of idling forever."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def run_local(experiments: Sequence[dict], on_done: Done, workers: int, started: Callable[[], None] = lambda: None) -> None:
    """A process pool of `workers` processes; 1 runs in this process (no pool to pay for)."""
    if workers <= 1 or len(experiments) <= 1:
        started()
        return run_serial(experiments, on_done)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(experiments)), initializer=_exit_with_parent,
                               initargs=(os.getpid(),))
    try:
        pool.submit(int).result()  # start the workers before a progress display starts its thread
        started()

        def finished(pending):
            return [(f, f.result()) for f in wait(pending, return_when=FIRST_COMPLETED)[0]]

        _bounded(experiments, lambda exp: pool.submit(run_point, exp), finished,
                 workers * IN_FLIGHT_PER_WORKER, on_done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _bounded(experiments: Sequence[dict], submit, finished, limit: int, on_done: Done) -> None:
    """Keep at most `limit` points in flight; finished(pending) -> [(handle, Outcome)] waits for at least one."""
    pending: dict = {}
    todo = iter(enumerate(experiments))
    while True:
        for i, exp in todo:
            pending[submit(exp)] = i
            if len(pending) >= limit:
                break
        if not pending:
            break
        for handle, outcome in finished(pending):
            on_done(pending.pop(handle), outcome)


def require_ray():
    """Ray is an optional extra, imported only when chosen."""
    try:
        import ray
    except ImportError:
        raise SimcoreError("--executor ray: Ray is not installed; install it with pip install 'simcore[ray]'") from None
    return ray


def run_ray(experiments: Sequence[dict], on_done: Done, workers: int | None, address: str | None,
            started: Callable[[], None] = lambda: None) -> None:
    """The same points as Ray tasks: on the cluster at `address`, or on a local Ray started here."""
    ray = require_ray()
    owns = not ray.is_initialized()
    if owns:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, log_to_driver=False, include_dashboard=False)
        except Exception as exc:  # ConnectionError and Ray's own errors: one line for the user
            raise SimcoreError(f"--executor ray: cannot start Ray"
                               f"{f' at --ray-address {address}' if address else ''}: {exc}") from None
    try:
        remote = ray.remote(num_cpus=1)(run_point)
        started()
        limit = max(1, int(workers or ray.cluster_resources().get("CPU", 1))) * IN_FLIGHT_PER_WORKER

        def finished(pending):
            out = []
            for ref in ray.wait(list(pending), num_returns=1)[0]:
                try:
                    out.append((ref, ray.get(ref)))
                except Exception as exc:  # the task's worker died: the point fails, the sweep goes on
                    out.append((ref, Outcome(None, f"ray task failed: {type(exc).__name__}: {exc}".splitlines()[0], 0.0)))
            return out

        _bounded(experiments, remote.remote, finished, limit, on_done)
    finally:
        if owns:
            ray.shutdown()
