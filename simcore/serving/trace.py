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

from simcore.config.validation import MAX_DEPTH, clip
from simcore.errors import SimcoreError
from simcore.config.serving import MAX_REQUESTS, MAX_SECONDS, MAX_TOKENS
from simcore.serving.requests import Requests, read_lines

REQUIRED = ("arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL = ("session", "prefix", "prefix_tokens")


def _json_row(path: Path, i: int, line: str) -> dict:
    if line.count("[") + line.count("{") > 4 * MAX_DEPTH:
        raise SimcoreError(f"{path}:{i}: nested too deeply; expected a flat JSON object with {', '.join(REQUIRED)}")
    try:
        row = json.loads(line, parse_constant=lambda c: c)  # NaN / Infinity come back as strings: refused below
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer past Python's digit limit
        raise SimcoreError(f"{path}:{i}: not a JSON object: {getattr(exc, 'msg', None) or clip(str(exc))}") from None
    if not isinstance(row, dict):
        raise SimcoreError(f"{path}:{i}: expected a JSON object with {', '.join(REQUIRED)}")
    return row


def _rows(path: Path):
    lines = read_lines(path, "workload.trace")
    if path.suffix.lower() in (".jsonl", ".json"):
        for i, line in enumerate(lines, 1):
            if line.strip():
                yield i, _json_row(path, i, line)
        return
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    missing = [f for f in REQUIRED if f not in header]
    if missing:
        raise SimcoreError(f"{path}:1: header lacks {', '.join(missing)}; required: {', '.join(REQUIRED)}; "
                           f"optional: {', '.join(OPTIONAL)}")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise SimcoreError(f"{path}:1: column '{clip(twice[0])}' appears twice in the header")
    for row in reader:
        i = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            raise SimcoreError(f"{path}:{i}: {len(row)} cells, but the header names {len(header)} columns")
        yield i, {k: v for k, v in zip(header, row) if v.strip() != ""}


LIMITS = {"arrival_s": MAX_SECONDS, "prompt_tokens": MAX_TOKENS, "output_tokens": MAX_TOKENS,
          "prefix_tokens": MAX_TOKENS}


def _num(path: Path, line: int, row: dict, field: str, kind, low: float):
    if field not in row:
        raise SimcoreError(f"{path}:{line}: field '{field}' missing")
    v = row[field]
    high = LIMITS[field]
    try:
        if isinstance(v, bool):  # JSON true is not the number 1
            raise TypeError
        x = float(v)
        ok = math.isfinite(x) and low <= x <= high and (kind is float or x == int(x))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        what = "a number" if kind is float else "a whole number"
        raise SimcoreError(f"{path}:{line}: field '{field}' = {clip(repr(v))}: expected {what} >= {low:g} "
                           f"and <= {high:g}")
    return kind(x)


def load_trace(path: Path) -> Requests:
    arr, pr, out, sess, grp, plen = [], [], [], [], [], []
    ids: dict[str, dict] = {"session": {}, "prefix": {}}
    for line, row in _rows(path):
        unknown = set(row) - set(REQUIRED) - set(OPTIONAL)
        if unknown:
            raise SimcoreError(f"{path}:{line}: unknown field '{clip(sorted(map(str, unknown))[0])}'; allowed: "
                               f"{', '.join(REQUIRED + OPTIONAL)}")
        if len(arr) >= MAX_REQUESTS:
            raise SimcoreError(f"{path}:{line}: more than {MAX_REQUESTS:,} requests; a trace holds at most "
                               f"{MAX_REQUESTS:,}")
        arr.append(_num(path, line, row, "arrival_s", float, 0))
        pr.append(_num(path, line, row, "prompt_tokens", int, 1))
        out.append(_num(path, line, row, "output_tokens", int, 1))
        for key, dest in (("session", sess), ("prefix", grp)):
            v = row.get(key)
            if v is not None and not isinstance(v, (str, int)) or isinstance(v, bool):
                raise SimcoreError(f"{path}:{line}: field '{key}' = {clip(repr(v))}: expected a string or a "
                                   f"whole number (an id)")
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
