"""Columns the shared silicon extract dropped, put back on the rows that match (docs/validation.md,
"`simcore validate`", "Silicon rows: what is merged").

Two files ship with simcore (simcore/validate/data/, package data):
- silicon_provenance.json (written by benchmarks/silicon_provenance.py from aiconfigurator's public
  silicon_sample.csv): per configuration (its `key` columns, no latencies) the `silicon_data_source` that says
  which benchmark measured the row (InferenceX's export: InferenceX's client and recipe; aiconfigurator's aiperf
  sweep: aiperf and the generator's limits; simcore.serving.sources.campaign) with the day or days it was measured
  (which generator or InferenceX recipe configured the engine). A row whose key columns equal an entry's gets the
  entry's other columns it lacks.
- silicon_disagg.json (written by the same script): per disaggregated row of the sample, the columns the shared
  extract dropped (the offered load `batch_size` = silicon_concurrency, each pool's pp / attention-DP / expert
  split, the row's source and day), under the row's identity: a few configuration columns (MATCH) and a digest
  of its measured latencies (`measured_digest`), which names the row without holding its values. Rows that
  differ only in their load share every configuration column, so the digest is what tells them apart. A disagg
  row whose identity equals an entry's gets the entry's columns it lacks. A user's `--disagg-rows` file holds
  full rows instead (latencies and all); their digests are computed on reading.

`simcore validate` and benchmarks/serving_silicon.py both read rows through readers.read with a RowExtras, so
both give the same numbers on the same file. A malformed file given by the user is one SimcoreError line.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib.resources import files
from pathlib import Path

from simcore.config.validation import read_text
from simcore.errors import SimcoreError

PROVENANCE = "silicon_provenance.json"
DISAGG = "silicon_disagg.json"
MATCH = ("system", "backend", "model_path", "mode", "isl", "osl")  # with measured_digest: a disagg row's identity
LATENCIES = ("silicon_ttft_ms", "silicon_tpot_ms")


def measured_digest(row: dict) -> str | None:
    """16 hex digits of SHA-256 over a row's measured mean TTFT and TPOT (read as numbers, so "12.50" and "12.5"
    agree): a name for one measured row that does not hold its values. None without both as finite numbers."""
    try:
        ttft, tpot = (float(row[k]) for k in LATENCIES)
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(ttft) and math.isfinite(tpot)):
        return None
    return hashlib.sha256(f"{ttft!r}|{tpot!r}".encode()).hexdigest()[:16]


def identity(row: dict) -> tuple | None:
    """What a disagg row is matched on: its MATCH columns and its measured_digest (given, or of its latencies)."""
    digest = row.get("measured_digest") or measured_digest(row)
    return (row_key(row, MATCH), digest) if digest else None


def row_key(row: dict, columns: tuple[str, ...]) -> tuple:
    """A row's values in `columns` as text ("" for a missing or empty one): what entries are matched on (and what
    benchmarks/silicon_provenance.py writes them under)."""
    return tuple(str(row.get(k) or "") for k in columns)


def shipped(name: str) -> str:
    """A data file shipped in the package, as text."""
    return files("simcore.validate").joinpath("data", name).read_text(encoding="utf-8")


def _rows(text: str, where: str) -> dict:
    """A rows file ({"rows": [objects of text / number values], ...}) parsed; anything else one error line."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SimcoreError(f"{where}: not JSON ({getattr(exc, 'msg', 'nested too deeply')}); expected "
                           f'{{"rows": [...]}} (docs/validation.md, "Silicon rows: what is merged")') from None
    rows = obj.get("rows") if isinstance(obj, dict) else None
    if not isinstance(rows, list):
        raise SimcoreError(f'{where}: no "rows" list; expected {{"rows": [{{column: value, ...}}, ...]}}')
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise SimcoreError(f"{where}: rows[{i}]: {type(r).__name__}; allowed: an object of columns")
        for k, v in r.items():
            if not (v is None or isinstance(v, (str, int, float))) or isinstance(v, bool):
                raise SimcoreError(f"{where}: rows[{i}].{k}: {json.dumps(v)[:40]}; allowed: text or a number")
    return obj


class RowExtras:
    """The provenance entries and disagg-row columns to merge into silicon rows; counts what apply() merged."""

    def __init__(self, provenance: Path | None = None, disagg: Path | None = None, note: bool | None = None):
        """provenance / disagg: the user's files (None: the shipped ones). note: say on notes when some of a
        file's disagg rows match no row of the disagg file (default: when the user gave that file)."""
        self.provenance_from = where = str(provenance) if provenance else f"simcore/validate/data/{PROVENANCE}"
        prov = _rows(read_text(provenance, "provenance") if provenance else shipped(PROVENANCE), where)
        key = prov.get("key")
        if not (isinstance(key, list) and key and all(isinstance(k, str) and k for k in key)):
            raise SimcoreError(f"{where}: key: {json.dumps(key)[:60]}; allowed: a list of the column names an "
                               f"entry is matched on")
        self.key = tuple(key)
        self.columns: dict[tuple, dict] = {}
        for e in prov["rows"]:
            self.columns.setdefault(row_key(e, self.key), {k: v for k, v in e.items() if k not in self.key})
        self.disagg_from = str(disagg) if disagg else f"simcore/validate/data/{DISAGG}"
        full = _rows(read_text(disagg, "disagg rows") if disagg else shipped(DISAGG), self.disagg_from)["rows"]
        self.layouts: dict[tuple, dict] = {}
        for i, r in enumerate(full):
            if r.get("mode") != "disagg":
                raise SimcoreError(f"{self.disagg_from}: rows[{i}].mode: {json.dumps(r.get('mode'))}; allowed: "
                                   f'"disagg" (a file of disagg rows with their full columns)')
            ident = identity(r)
            if ident is None:
                raise SimcoreError(f"{self.disagg_from}: rows[{i}]: no measured_digest and no finite "
                                   f"{' and '.join(LATENCIES)}; allowed: a row that names its measurement")
            self.layouts.setdefault(ident, {k: v for k, v in r.items() if k not in MATCH and k != "measured_digest"})
        self.note = disagg is not None if note is None else note
        self.with_provenance = self.with_layouts = 0  # rows apply() gave provenance columns / disagg columns
        self.notes: list[str] = []

    def apply(self, rows: list[dict], name: str = "the rows file") -> list[dict]:
        """rows with the columns they lack put back: a disagg row's from the disagg entry of its identity, then any
        row's from the provenance entry its key columns match. Row order and every column a row has stay."""
        out, unmatched = [], 0
        for r in rows:
            if r.get("mode") == "disagg":
                ident = identity(r)
                layout = self.layouts.get(ident) if ident else None
                unmatched += layout is None
                add = {k: v for k, v in (layout or {}).items() if r.get(k) in (None, "")}
                self.with_layouts += bool(add)
                r = {**r, **add}
            add = {k: v for k, v in self.columns.get(row_key(r, self.key), {}).items() if k not in r}
            self.with_provenance += bool(add)
            out.append({**r, **add})
        if unmatched and self.note:
            self.notes.append(f"{unmatched} disagg row(s) of {name} match no row of {self.disagg_from} (on "
                              f"{', '.join(MATCH)} and the measured latencies); kept as they are")
        return out
