"""From a sweep to its points: expand the axes, drop what the filters reject, validate the rest.

Every point is validated (experiment_from_dict + resolve) before any runs: a bad point becomes
a failed row naming the point and the field; the others go on.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import json
import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from simcore import __version__
from simcore.config.experiment import Experiment, allowed_tp, apply_values, experiment_from_dict, resolve
from simcore.errors import SimcoreError
from simcore.config.validation import clip
from simcore.sweep.spec import DERIVED, MAX_POINTS, Filter, Sweep, compile_expr


@dataclass(frozen=True)
class Point:
    index: int  # position in the expansion (grid product order, then explicit points)
    overrides: dict[str, Any]  # axis path -> value (the `set` fields are not repeated here)


@dataclass
class Task:
    """A point ready to run (experiment is the validated model_dump) or already failed (error)."""

    point: Point
    key: str
    experiment: dict
    error: str | None = None


@dataclass
class Plan:
    sweep: Sweep
    tasks: list[Task] = field(default_factory=list)  # valid points, and invalid ones with .error
    filtered: Counter = field(default_factory=Counter)  # reason -> points dropped
    duplicates: int = 0  # points identical (same key) to an earlier one

    @property
    def invalid(self) -> list[Task]:
        return [t for t in self.tasks if t.error is not None]

    @property
    def expanded(self) -> int:
        return len(self.tasks) + sum(self.filtered.values()) + self.duplicates


def expand(sweep: Sweep, max_points: int = MAX_POINTS) -> list[Point]:
    """Grid axes and zipped groups crossed (last varies fastest), then the explicit points.
    The points are counted first: past `max_points` nothing is expanded."""
    if sweep.size > max_points:
        raise SimcoreError(f"{sweep.source}: expands to {sweep.size:,} points; allowed: at most {max_points:,} "
                           f"(raise it with --max-points, or narrow the axes)")
    factors: list[list[dict]] = [[{path: v} for v in values] for path, values in sweep.grid.items()]
    for group in sweep.zips:
        paths = list(group)
        factors.append([dict(zip(paths, vals)) for vals in zip(*group.values())])
    combos = [] if not factors else [
        {k: v for part in combo for k, v in part.items()} for combo in itertools.product(*factors)
    ]
    return [Point(i, o) for i, o in enumerate(combos + [dict(p) for p in sweep.points])]


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def point_key(experiment: dict, version: str = __version__) -> str:
    """Identity of a result: the fully resolved experiment and the simcore version that ran it."""
    return hashlib.sha256(canonical({"experiment": experiment, "simcore_version": version}).encode()).hexdigest()


def describe(point: Point) -> str:
    return "point {} ({})".format(point.index, ", ".join(f"{k}={clip(json.dumps(v, default=str))}"
                                                         for k, v in point.overrides.items()))


# -- filters ---------------------------------------------------------------------------------------

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
           ast.NotIn: lambda a, b: a not in b}


def lookup(data: dict, path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


MAX_EXPONENT = 1024  # |b| in a ** b, unless a is 0, 1 or -1
MAX_BITS = 4096  # an integer an expression computes
MAX_LENGTH = 10_000  # a string or list an expression computes


class _TooBig(Exception):
    """A filter expression computed past a bound; evaluate() callers say it as a SimcoreError."""


def _arith(op: ast.operator, a: Any, b: Any) -> Any:
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if isinstance(op, ast.Pow) and num(a) and num(b) and abs(b) > MAX_EXPONENT and abs(a) not in (0, 1):
        raise _TooBig(f"exponent {clip(repr(b), 40)} exceeds {MAX_EXPONENT}")
    if isinstance(op, ast.Pow) and isinstance(a, int) and isinstance(b, int) and b > 0 \
            and a.bit_length() * b > MAX_BITS:
        raise _TooBig(f"{clip(repr(a), 40)} ** {b} exceeds {MAX_BITS} bits")
    if isinstance(op, ast.Mult):
        for seq, n in ((a, b), (b, a)):
            if isinstance(seq, (str, list)) and isinstance(n, int) and len(seq) * max(n, 0) > MAX_LENGTH:
                raise _TooBig(f"a repeated string or list past {MAX_LENGTH:,} items")
    out = _BINOPS[type(op)](a, b)
    if isinstance(out, int) and out.bit_length() > MAX_BITS:
        raise _TooBig(f"a number past {MAX_BITS} bits")
    if isinstance(out, (str, list)) and len(out) > MAX_LENGTH:
        raise _TooBig(f"a string or list past {MAX_LENGTH:,} items")
    return out


def evaluate(node: ast.AST, exp: dict) -> Any:
    """Evaluate a checked filter expression (spec.compile_expr) against an experiment's data."""
    if isinstance(node, ast.Expression):
        return evaluate(node.body, exp)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [evaluate(e, exp) for e in node.elts]
    if isinstance(node, (ast.Name, ast.Attribute)):
        path = ast.unparse(node)
        if path in DERIVED:
            return evaluate(ast.parse(DERIVED[path], mode="eval"), exp)
        return lookup(exp, path)
    if isinstance(node, ast.BoolOp):
        values = (evaluate(v, exp) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        v = evaluate(node.operand, exp)
        return (not v) if isinstance(node.op, ast.Not) else -v
    if isinstance(node, ast.BinOp):
        return _arith(node.op, evaluate(node.left, exp), evaluate(node.right, exp))
    if isinstance(node, ast.Compare):
        left = evaluate(node.left, exp)
        for op, comp in zip(node.ops, node.comparators):
            right = evaluate(comp, exp)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    raise SimcoreError(f"filter expression: {type(node).__name__} is not allowed")  # compile_expr prevents this


def _field_of(message: str) -> str:
    found = re.search(r"fields? '([^']+)'", message)
    return found.group(1) if found else message.split(":")[-1].strip()[:60]


@functools.cache
def _compiled(expr: str) -> ast.Expression:
    return compile_expr(expr, "filter")


def _pre_resolve(f: Filter, exp: Experiment, data: dict, sweep_source: str = "sweep") -> str | None:
    """Reason to drop the point, for filters that need only the validated experiment."""
    if f.kind == "expr":
        try:
            keep = evaluate(_compiled(f.expr), data)
        except _TooBig as exc:
            raise SimcoreError(f"{clip(sweep_source)}: filters: expr {clip(repr(f.expr))}: {exc}; filter "
                               f"expressions are bounded (docs/sweeps.md)") from None
        except OverflowError as exc:
            raise SimcoreError(f"{clip(sweep_source)}: filters: expr {clip(repr(f.expr))}: {exc}") from None
        except (KeyError, TypeError, ZeroDivisionError, ValueError) as exc:
            return f"expr {clip(repr(f.expr))} cannot be evaluated ({type(exc).__name__}: {clip(str(exc), 80)})"
        return None if keep else f.reason
    if f.kind == "allowed_tp":
        from simcore.config.model import load_model

        try:
            model = load_model(exp.model)
        except SimcoreError:
            return None  # resolve() reports the unknown model
        tps = allowed_tp(model)
        if exp.parallelism.tp not in tps:
            return f"allowed_tp: tp {exp.parallelism.tp} does not split the heads of {model.name} " \
                   f"(allowed: {', '.join(map(str, tps))})"
    return None


def _fits(run) -> str | None:
    from simcore.memory import static_memory

    if run.experiment.workload.kind != "static":
        return None  # only static batches have one size to check
    try:
        static_memory(run)
    except SimcoreError:
        return "fits: does not fit in GPU memory"
    return None


def check(sweep: Sweep, point: Point) -> tuple[str | None, dict | None, str | None]:
    """(drop reason, validated experiment data, error) for one point; at most one is not None."""
    kinds = {f.kind for f in sweep.filters}
    raw = apply_values(sweep.base, {**sweep.fixed, **point.overrides})
    try:
        exp = experiment_from_dict(raw, None, describe(point))
    except SimcoreError as exc:
        return (f"valid: {_field_of(str(exc))}", None, None) if "valid" in kinds else (None, raw, str(exc))
    data = exp.model_dump(mode="json")
    for f in sweep.filters:
        reason = _pre_resolve(f, exp, data, sweep.source)
        if reason:
            return reason, None, None
    try:
        run = resolve(exp)
    except SimcoreError as exc:
        if "valid" in kinds:
            return f"valid: {_field_of(str(exc))}", None, None
        return None, data, f"{describe(point)}: {exc}"
    if "fits" in kinds:
        reason = _fits(run)
        if reason:
            return reason, None, None
    return None, data, None


def plan(sweep: Sweep, max_points: int = MAX_POINTS) -> Plan:
    """Expand and check every point; raises for a sweep with no points at all, past max_points, or
    with a filter expression that computes past its bounds."""
    out = Plan(sweep)
    seen: set[str] = set()
    for point in expand(sweep, max_points):
        reason, data, error = check(sweep, point)
        if reason:
            out.filtered[reason] += 1
            continue
        key = point_key(data if error is None else {"invalid": data})
        if key in seen:
            out.duplicates += 1
            continue
        seen.add(key)
        out.tasks.append(Task(point, key, data, error))
    if not out.tasks:
        dropped = "; ".join(f"{n} {r}" for r, n in out.filtered.items())
        raise SimcoreError(f"{sweep.source}: every point was filtered out ({dropped}); nothing to run")
    return out
