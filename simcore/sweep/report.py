"""Reading a results store: a table, a CSV, a metric-against-axis plot and a Pareto frontier.

Metrics are dotted paths into the summary JSON (docs/results.md); fields are dotted paths into
the experiment (the same paths as `--set`).
"""

from __future__ import annotations

import csv
import math
from numbers import Real
from pathlib import Path
from typing import Any

from rich.table import Table

from simcore.report.plotting import pyplot, save
from simcore.errors import SimcoreError, close_matches
from simcore.sweep.expand import lookup
from simcore.sweep.store import Row

KEY_METRICS = ["ttft_s", "decode_step_s.mean", "e2e_s", "output_tokens_per_s", "output_tokens_per_s_per_gpu",
               "kv_cache_bytes_read", "memory_per_gpu_bytes.total"]
# Request-level (serving) points: percentiles of the per-request times, throughput and what was dropped.
SERVING_METRICS = ["ttft_s.p50", "ttft_s.p90", "ttft_s.p99", "tpot_s.p50", "tpot_s.p90", "tpot_s.p99",
                   "e2e_s.p50", "e2e_s.p99", "throughput.output_tokens_per_s", "goodput_requests_per_s",
                   "prefix_cache_hit_rate", "requests_dropped"]


def is_serving(row: Row) -> bool:
    workload = (row.experiment or {}).get("workload")
    return isinstance(workload, dict) and workload.get("kind") == "requests"


def key_metrics(rows: list[Row]) -> list[str]:
    """The default columns: static metrics, serving metrics, or both for a mixed store."""
    kinds = {is_serving(r) for r in rows if r.status == "ok"} or {is_serving(r) for r in rows}
    return (KEY_METRICS if False in kinds else []) + (SERVING_METRICS if True in kinds else [])


def leaves(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in leaves(v, f"{prefix}{k}.")]
    return [prefix[:-1]] if prefix else []


def _known(rows: list[Row], part: str) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        data = getattr(row, part)
        if isinstance(data, dict):
            seen.update(dict.fromkeys(leaves(data)))
    return list(seen)


def check_metric(name: str, rows: list[Row], flag: str) -> str:
    """Raise a one-line error unless `name` is a metric some finished point has."""
    known = _known([r for r in rows if r.status == "ok"], "summary")
    if name not in known:
        hint = close_matches(name, known) or f"; known: {', '.join(known)}"
        raise SimcoreError(f"{flag} {name!r}: unknown metric{hint}")
    return name


def check_field(name: str, rows: list[Row], flag: str) -> str:
    """A field of the experiment (an axis or any other), or a metric."""
    known = _known(rows, "experiment")
    if name in known or any(name in r.overrides for r in rows):
        return name
    metrics = _known([r for r in rows if r.status == "ok"], "summary")
    if name in metrics:
        return name
    raise SimcoreError(f"{flag} {name!r}: unknown field or metric{close_matches(name, dict.fromkeys(known + metrics))}")


def value(row: Row, name: str) -> Any:
    """An axis value, else the experiment's field, else the summary metric; None when absent."""
    if name in row.overrides:
        return row.overrides[name]
    for data in (row.experiment, row.summary):
        try:
            return lookup(data or {}, name)
        except KeyError:
            continue
    return None


def axes_of(rows: list[Row], meta: dict) -> list[str]:
    axes = list(meta.get("axes") or [])
    for row in rows:
        axes += [k for k in row.overrides if k not in axes]
    return axes


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dict):  # a section of the summary: its leaves, never a Python repr
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, bool) or not isinstance(v, Real):
        return str(v)
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table(rows: list[Row], axes: list[str], metrics: list[str], front: set[str] | None = None, title: str = "") -> Table:
    t = Table(title=title)
    t.add_column("point", justify="right")
    for a in axes:
        t.add_column(a)
    t.add_column("status")
    for m in metrics:
        t.add_column(m, justify="right")
    if front is not None:
        t.add_column("pareto")
    errors = any(r.error for r in rows)
    if errors:
        t.add_column("error", overflow="fold")
    for r in rows:
        cells = [str(r.point)] + [_fmt(r.overrides.get(a)) for a in axes] + [r.status]
        cells += [_fmt(value(r, m)) if r.status == "ok" else "" for m in metrics]
        if front is not None:
            cells.append("*" if r.key in front else "")
        if errors:
            cells.append(r.error or "")
        t.add_row(*cells)
    return t


def write_csv(path: str | Path, rows: list[Row], axes: list[str], metrics: list[str], front: set[str] | None = None) -> None:
    header = ["point", "key", "status"] + axes + metrics + (["pareto"] if front is not None else []) + ["error"]
    try:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for r in rows:
                w.writerow([r.point, r.key, r.status] + [r.overrides.get(a, "") for a in axes]
                           + [value(r, m) if r.status == "ok" else "" for m in metrics]
                           + ([str(r.key in front).lower()] if front is not None else []) + [r.error or ""])
    except OSError as exc:
        raise SimcoreError(f"--csv {path}: cannot write: {exc.strerror}") from None


# -- Pareto ----------------------------------------------------------------------------------------

def parse_pareto(text: str, rows: list[Row]) -> tuple[tuple[str, bool], tuple[str, bool]]:
    """'X,Y' with optional max:/min: prefixes -> ((x, maximize), (y, maximize)).
    Without a prefix a throughput (a name with 'per_s') is maximized and anything else minimized."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise SimcoreError(f"--pareto {text!r}: expected two metrics, X_METRIC,Y_METRIC "
                           f"(e.g. output_tokens_per_s_per_gpu,decode_step_s.mean)")
    out = []
    for p in parts:
        sense, _, name = p.rpartition(":")
        if sense not in ("", "max", "min"):
            raise SimcoreError(f"--pareto {text!r}: prefix {sense!r}: allowed: max:, min:")
        check_metric(name, rows, "--pareto")
        out.append((name, sense == "max" if sense else "per_s" in name))
    return out[0], out[1]


def pareto_front(points: list[tuple[float, float]], maximize: tuple[bool, bool] = (False, False)) -> list[int]:
    """Indices of the points no other point beats: at least as good on both and better on one."""
    sx, sy = (-1 if m else 1 for m in maximize)
    order = sorted(range(len(points)), key=lambda i: (sx * points[i][0], sy * points[i][1]))
    front, best, last = [], math.inf, None
    for i in order:
        x, y = sx * points[i][0], sy * points[i][1]
        if y < best or (x, y) == last:
            front.append(i)
            best, last = y, (x, y)
    return sorted(front)


def numeric(rows: list[Row], name: str, flag: str) -> list[float]:
    vals = [value(r, name) for r in rows]
    bad = [v for v in vals if isinstance(v, bool) or not isinstance(v, Real)]
    if bad:
        raise SimcoreError(f"{flag} {name!r}: not a number (e.g. {bad[0]!r})")
    return [float(v) for v in vals]


def frontier(rows: list[Row], spec: str) -> tuple[set[str], tuple[str, bool], tuple[str, bool]]:
    (x, mx), (y, my) = parse_pareto(spec, rows)
    ok = [r for r in rows if r.status == "ok"]
    pts = list(zip(numeric(ok, x, "--pareto"), numeric(ok, y, "--pareto")))
    return {ok[i].key for i in pareto_front(pts, (mx, my))}, (x, mx), (y, my)


# -- plots -----------------------------------------------------------------------------------------

def plot_lines(path: str | Path, rows: list[Row], axes: list[str], x: str, y: str, hue: str | None) -> None:
    """`y` against `x`, one line per value of `hue` (and of any other axis that varies)."""
    plt = pyplot()
    ok = [r for r in rows if r.status == "ok"]
    ys = numeric(ok, y, "--y")
    xs = [value(r, x) for r in ok]
    numeric_x = all(isinstance(v, Real) and not isinstance(v, bool) for v in xs)
    cats = list(dict.fromkeys(map(str, xs)))
    others = [hue] if hue else []
    others += [a for a in axes if a not in (x, hue) and len({str(value(r, a)) for r in ok}) > 1]
    lines: dict[tuple, list[tuple[Any, float]]] = {}
    for r, xv, yv in zip(ok, xs, ys):
        lines.setdefault(tuple(value(r, a) for a in others), []).append((xv if numeric_x else cats.index(str(xv)), yv))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, pts in lines.items():
        pts.sort()
        label = ", ".join(f"{a}={_fmt(v)}" for a, v in zip(others, key)) or None
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    if numeric_x and min(xs) > 0 and max(xs) / min(xs) >= 50:
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
    if not numeric_x:
        ax.set_xticks(range(len(cats)), cats)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)
    save(fig, path, "--plot", dpi=120)


def plot_pareto(path: str | Path, rows: list[Row], front: set[str], x: tuple[str, bool], y: tuple[str, bool]) -> None:
    plt = pyplot()
    ok = [r for r in rows if r.status == "ok"]
    xs, ys = numeric(ok, x[0], "--pareto"), numeric(ok, y[0], "--pareto")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(xs, ys, color="0.6", s=18, label="points")
    on = sorted((xv, yv) for r, xv, yv in zip(ok, xs, ys) if r.key in front)
    ax.plot([p[0] for p in on], [p[1] for p in on], color="C3", marker="o", label=f"Pareto frontier ({len(on)})")
    better = lambda m: "higher is better" if m else "lower is better"  # noqa: E731
    ax.set_xlabel(f"{x[0]} ({better(x[1])})")
    ax.set_ylabel(f"{y[0]} ({better(y[1])})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path, "--plot", dpi=120)
