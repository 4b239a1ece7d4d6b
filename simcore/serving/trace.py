"""Trace replay: CSV (with a header row) or JSONL, one request per row.

Fields: arrival_s, prompt_tokens, output_tokens (required); session, prefix, prefix_tokens
(optional). A bad row is a one-line error naming file, line and field.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from simcore.errors import SimcoreError
from simcore.serving.requests import Requests

REQUIRED = ("arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL = ("session", "prefix", "prefix_tokens")


def _rows(path: Path):
    try:
        text = path.read_text()
    except OSError as exc:
        raise SimcoreError(f"field 'workload.trace' = {str(path)!r}: cannot read: {exc.strerror}") from None
    if path.suffix.lower() in (".jsonl", ".json"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SimcoreError(f"{path}:{i}: not a JSON object: {exc.msg}") from None
            if not isinstance(row, dict):
                raise SimcoreError(f"{path}:{i}: expected a JSON object with {', '.join(REQUIRED)}")
            yield i, row
        return
    reader = csv.DictReader(text.splitlines())
    missing = [f for f in REQUIRED if f not in (reader.fieldnames or [])]
    if missing:
        raise SimcoreError(f"{path}:1: header lacks {', '.join(missing)}; required: {', '.join(REQUIRED)}; "
                           f"optional: {', '.join(OPTIONAL)}")
    for i, row in enumerate(reader, 2):
        yield i, {k: v for k, v in row.items() if v not in (None, "")}


def _num(path: Path, line: int, row: dict, field: str, kind, low: float):
    if field not in row:
        raise SimcoreError(f"{path}:{line}: field '{field}' missing")
    v = row[field]
    try:
        x = float(v)
        ok = math.isfinite(x) and x >= low and (kind is float or x == int(x))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        what = "a number" if kind is float else "a whole number"
        raise SimcoreError(f"{path}:{line}: field '{field}' = {v!r}: expected {what} >= {low:g}")
    return kind(x)


def load_trace(path: Path) -> Requests:
    arr, pr, out, sess, grp, plen = [], [], [], [], [], []
    ids: dict[str, dict] = {"session": {}, "prefix": {}}
    for line, row in _rows(path):
        unknown = set(row) - set(REQUIRED) - set(OPTIONAL)
        if unknown:
            raise SimcoreError(f"{path}:{line}: unknown field '{sorted(unknown)[0]}'; allowed: "
                               f"{', '.join(REQUIRED + OPTIONAL)}")
        arr.append(_num(path, line, row, "arrival_s", float, 0))
        pr.append(_num(path, line, row, "prompt_tokens", int, 1))
        out.append(_num(path, line, row, "output_tokens", int, 1))
        for key, dest in (("session", sess), ("prefix", grp)):
            v = row.get(key)
            dest.append(-1 if v is None else ids[key].setdefault(str(v), len(ids[key])))
        n = _num(path, line, row, "prefix_tokens", int, 0) if "prefix_tokens" in row else 0
        if n > pr[-1]:
            raise SimcoreError(f"{path}:{line}: field 'prefix_tokens' = {n}: exceeds prompt_tokens = {pr[-1]}")
        plen.append(n if grp[-1] >= 0 else 0)
    if not arr:
        raise SimcoreError(f"field 'workload.trace' = {str(path)!r}: no requests in the file")
    order = np.argsort(np.array(arr), kind="stable")
    n = len(arr)

    def a(x, dt=np.int64):
        return np.array(x, dtype=dt)[order]

    return Requests(a(arr, float), np.full(n, -1, dtype=np.int64), np.zeros(n), a(pr), a(out), a(grp), a(plen),
                    a(sess))
