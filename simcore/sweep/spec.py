"""Sweep files: a base experiment plus axes by dotted field path, checked before anything runs.

A sweep is plain data (`Sweep`); `expand.py` turns it into points. Every message here is one
line that names the sweep file and the part of it that is wrong.
"""

from __future__ import annotations

import ast
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from simcore.config.experiment import WORKLOADS, Experiment, relative_to
from simcore.config.validation import clip, read_yaml, show, yaml_kind
from simcore.errors import SimcoreError, close_matches

TOP_LEVEL = ("name", "description", "base", "set", "grid", "zip", "points", "filters")
NAMED_FILTERS = ("allowed_tp", "valid", "fits")
DERIVED = {"gpus": "parallelism.tp * parallelism.pp * parallelism.dp * parallelism.attention_dp"}  # names an expr may use besides fields
MAX_POINTS = 10_000  # points a sweep may expand to unless --max-points raises it (docs/sweeps.md)
MAX_EXPR_CHARS = 1_000  # a filter expression's length
MAX_EXPR_DEPTH = 32  # nesting of a filter expression's syntax tree


@dataclass(frozen=True)
class Filter:
    """`kind` is one of NAMED_FILTERS or 'expr' (then `expr` holds the expression and `reason` its label)."""

    kind: str
    expr: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Sweep:
    name: str
    source: str  # where it came from, for messages
    base: dict  # the base experiment as plain data
    fixed: dict[str, Any] = field(default_factory=dict)  # `set`: path -> value on every point
    grid: dict[str, list] = field(default_factory=dict)  # path -> values, crossed
    zips: list[dict[str, list]] = field(default_factory=list)  # groups of paths whose values pair up
    points: list[dict[str, Any]] = field(default_factory=list)  # explicit points, appended
    filters: list[Filter] = field(default_factory=list)
    description: str | None = None

    @property
    def size(self) -> int:
        """Points the axes expand to, counted without expanding them."""
        crossed = 1 if self.grid or self.zips else 0
        for values in self.grid.values():
            crossed *= len(values)
        for group in self.zips:
            crossed *= len(next(iter(group.values())))
        return crossed + len(self.points)

    def as_dict(self) -> dict:
        """JSON-able description kept in the results store."""
        return {"name": self.name, "description": self.description, "base": self.base, "set": self.fixed,
                "grid": self.grid, "zip": self.zips, "points": self.points,
                "filters": [f.__dict__ for f in self.filters]}


def _models_in(annotation) -> list[type[BaseModel]]:
    """The schema classes a field may hold (unwrapping Optional, Union and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _subs(model: type[BaseModel], name: str) -> list[type[BaseModel]]:
    """The schemas field `name` of `model` may hold; the workload is any of its kinds."""
    if model is Experiment and name == "workload":
        return list(WORKLOADS.values())
    return _models_in(model.model_fields[name].annotation)


def field_paths(model: type[BaseModel] = Experiment, prefix: str = "") -> list[str]:
    """Every leaf dotted path of the experiment schema (for close-match hints)."""
    out = []
    for name in model.model_fields:
        subs = _subs(model, name)
        if subs:
            for sub in subs:
                out += [p for p in field_paths(sub, f"{prefix}{name}.") if p not in out]
        elif f"{prefix}{name}" not in out:
            out.append(f"{prefix}{name}")
    return out


def check_path(path: str, where: str) -> None:
    """Raise unless `path` names an experiment field, as `--set` would (a field of any workload kind)."""
    if not isinstance(path, str) or not path or not all(path.split(".")):
        raise SimcoreError(f"{where}: {show(path)} is not a dotted field path like workload.batch_size")
    models: list[type[BaseModel]] = [Experiment]
    parts = path.split(".")
    for i, part in enumerate(parts):
        holders = [m for m in models if part in m.model_fields]
        if not holders:
            raise SimcoreError(f"{where}: unknown field '{clip(path)}'{close_matches(path, field_paths())}")
        subs = [s for m in holders for s in _subs(m, part)]
        leaf = any(not _subs(m, part) for m in holders)
        if i == len(parts) - 1:
            if not leaf:
                raise SimcoreError(f"{where}: '{path}' is a section; name one of its fields, e.g. "
                                   f"{', '.join(p for p in field_paths() if p.startswith(path + '.'))}")
            return
        if not subs:
            raise SimcoreError(f"{where}: unknown field '{clip(path)}': '{'.'.join(parts[:i + 1])}' is a value, "
                               f"not a section")
        models = subs


def _axes(value: Any, where: str) -> dict[str, list]:
    if not isinstance(value, dict):
        raise SimcoreError(f"{where}: expected a mapping of field path -> list of values, got {yaml_kind(value)}")
    if not value:
        raise SimcoreError(f"{where}: no axes (empty mapping); give at least one field path -> list of values")
    for path, values in value.items():
        check_path(path, where)
        if not isinstance(values, list):
            raise SimcoreError(f"{where}: axis '{path}': expected a list of values, got {yaml_kind(values)}")
        if not values:
            raise SimcoreError(f"{where}: axis '{path}' has no values")
    return dict(value)


def _zips(value: Any, where: str) -> list[dict[str, list]]:
    groups = value if isinstance(value, list) else [value]
    if not groups:
        raise SimcoreError(f"{where}: no zipped groups (empty list)")
    out = []
    for i, group in enumerate(groups):
        here = f"{where}[{i}]" if isinstance(value, list) else where
        group = _axes(group, here)
        lengths = {p: len(v) for p, v in group.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"'{p}' has {n}" for p, n in lengths.items())
            raise SimcoreError(f"{here}: zipped axes must have equal lengths; {listed}")
        out.append(group)
    return out


def _filters(value: Any, where: str) -> list[Filter]:
    if not isinstance(value, list):
        raise SimcoreError(f"{where}: expected a list of filters, got {yaml_kind(value)}")
    out = []
    known = ", ".join(NAMED_FILTERS) + ", {expr: ..., reason: ...}"
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if isinstance(item, str):
            if item not in NAMED_FILTERS:
                raise SimcoreError(f"{here}: unknown filter {clip(repr(item))}{close_matches(item, NAMED_FILTERS)}; known: {known}")
            out.append(Filter(item))
        elif isinstance(item, dict) and "expr" in item and set(item) <= {"expr", "reason"}:
            expr = item["expr"]
            if not isinstance(expr, str):
                raise SimcoreError(f"{here}: expr must be a string, got {yaml_kind(expr)}")
            compile_expr(expr, here)
            out.append(Filter("expr", expr, clip(str(item.get("reason") or f"not {expr}"))))
        else:
            raise SimcoreError(f"{here}: expected a filter name or a mapping with 'expr' (and optional 'reason'); "
                               f"known: {known}")
    return out


_ALLOWED_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.BinOp,
                  ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.Compare, ast.Eq,
                  ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Constant, ast.Name,
                  ast.Attribute, ast.Load, ast.List, ast.Tuple)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _depth(tree: ast.AST) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack += [(child, d + 1) for child in ast.iter_child_nodes(node)]
    return deepest


def compile_expr(expr: str, where: str) -> ast.Expression:
    """Parse a filter expression: arithmetic, comparisons, and/or/not over field paths and `gpus`.
    Bounded in length and depth (docs/sweeps.md) so that no expression exhausts the parser."""
    if len(expr) > MAX_EXPR_CHARS:
        raise SimcoreError(f"{where}: expr {clip(repr(expr), 60)}: {len(expr):,} characters; allowed: at most "
                           f"{MAX_EXPR_CHARS:,}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise SimcoreError(f"{where}: cannot parse expr {clip(repr(expr))}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SimcoreError(f"{where}: cannot parse expr {clip(repr(expr))}: {type(exc).__name__}") from None
    if _depth(tree) > MAX_EXPR_DEPTH:
        raise SimcoreError(f"{where}: expr {clip(repr(expr))}: nested deeper than {MAX_EXPR_DEPTH} levels")
    expr = clip(expr)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # a.b inside a.b.c
    for node in ast.walk(tree):
        if id(node) in inner:
            continue
        if not isinstance(node, _ALLOWED_NODES):
            raise SimcoreError(f"{where}: expr {expr!r}: {type(node).__name__} is not allowed (use field paths, "
                               f"numbers, strings, arithmetic, comparisons, and/or/not)")
        if isinstance(node, (ast.Name, ast.Attribute)):
            path = _dotted(node)
            if path is None:
                raise SimcoreError(f"{where}: expr {expr!r}: only field paths may be named")
            if path not in DERIVED:
                check_path(path, f"{where}: expr")
    return tree


def _base(value: Any, base_dir: Path, source: str) -> dict:
    if isinstance(value, str):
        path = (base_dir / value).resolve()
        if not path.is_file():
            raise SimcoreError(f"{source}: base: experiment file not found: {value} (looked for {path})")
        value = read_yaml(path)
        if not isinstance(value, dict):
            raise SimcoreError(f"{path}: expected a mapping of experiment fields, got {yaml_kind(value)}")
        return relative_to(value, path.parent)
    if isinstance(value, dict):
        return relative_to(value, base_dir)
    raise SimcoreError(f"{source}: base: expected a path to an experiment file or a mapping of experiment "
                       f"fields, got {yaml_kind(value)}")


def sweep_from_dict(raw: Any, base_dir: str | Path = ".", source: str = "sweep", default_name: str = "sweep") -> Sweep:
    """Check a sweep given as plain data; `base` paths are relative to `base_dir`."""
    if not isinstance(raw, dict):
        raise SimcoreError(f"{source}: expected a mapping of sweep fields ({', '.join(TOP_LEVEL)}), "
                           f"got {yaml_kind(raw)}")
    for key in raw:
        if key not in TOP_LEVEL:
            raise SimcoreError(f"{source}: unknown field '{key}'{close_matches(str(key), TOP_LEVEL)}; "
                               f"allowed: {', '.join(TOP_LEVEL)}")
    if "base" not in raw:
        raise SimcoreError(f"{source}: missing required field 'base' (a path to an experiment file or a mapping)")
    for key in ("name", "description"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise SimcoreError(f"{source}: field '{key}' = {show(raw[key])}: expected a string")
    fixed = raw.get("set") or {}
    if not isinstance(fixed, dict):
        raise SimcoreError(f"{source}: set: expected a mapping of field path -> value, got {yaml_kind(fixed)}")
    for path in fixed:
        check_path(path, f"{source}: set")
    grid = _axes(raw["grid"], f"{source}: grid") if "grid" in raw else {}
    zips = _zips(raw["zip"], f"{source}: zip") if "zip" in raw else []
    points = raw.get("points", [])
    if not isinstance(points, list) or ("points" in raw and not points):
        raise SimcoreError(f"{source}: points: expected a non-empty list of mappings (field path -> value)")
    for i, point in enumerate(points):
        if not isinstance(point, dict):
            raise SimcoreError(f"{source}: points[{i}]: expected a mapping of field path -> value, "
                               f"got {yaml_kind(point)}")
        for path in point:
            check_path(path, f"{source}: points[{i}]")
    if not grid and not zips and not points:
        raise SimcoreError(f"{source}: no axes: give at least one of grid, zip or points")
    seen: dict[str, str] = {p: "set" for p in fixed}
    for where, paths in [("grid", grid)] + [(f"zip[{i}]", z) for i, z in enumerate(zips)]:
        for path in paths:
            if path in seen:
                raise SimcoreError(f"{source}: field '{path}' is given twice ({seen[path]} and {where})")
            seen[path] = where
    return Sweep(
        name=raw.get("name") or default_name, source=source, base=_base(raw["base"], Path(base_dir), source),
        fixed=dict(fixed), grid=grid, zips=zips, points=[dict(p) for p in points],
        filters=_filters(raw.get("filters", []), f"{source}: filters"), description=raw.get("description"),
    )


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    if path.is_dir():
        raise SimcoreError(f"{path}: is a folder; give a sweep YAML file")
    if not path.is_file():
        raise SimcoreError(f"sweep file not found: {path}")
    return sweep_from_dict(read_yaml(path), path.parent, str(path), path.stem)
