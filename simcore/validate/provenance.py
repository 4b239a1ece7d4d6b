"""Columns the shared silicon extract dropped, put back on the rows that match (docs/validation.md,
"`simcore validate`", "Silicon rows: what is merged").

Two files ship with simcore (simcore/validate/data/, package data):
- silicon_provenance.json (written by benchmarks/silicon_provenance.py from aiconfigurator's public
  silicon_sample.csv): per configuration (its `key` columns, no latencies) the `silicon_data_source` that says
  which benchmark measured the row (InferenceX's export: InferenceX's client and recipe; aiconfigurator's aiperf
  sweep: aiperf and the generator's limits; simcore.serving.silicon.campaign) and, where the recipe sets them,
  `kv_cache_dtype` and `max_num_seqs`. A row whose key columns equal an entry's gets the entry's other columns it lacks.
- aiconfigurator_disagg_h100.json: the H100 disagg rows as aiconfigurator publishes them, with the per-pool
  layout and load columns the shared extract dropped. When a file's disagg rows are those rows (equal on the
  file's columns, as multisets), each is swapped in place for its full row.

`simcore validate` and benchmarks/serving_silicon.py both read rows through readers.read with a RowExtras, so
both give the same numbers on the same file. A malformed file given by the user is one SimcoreError line.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from simcore.config.validation import read_text
from simcore.errors import SimcoreError

PROVENANCE = "silicon_provenance.json"
DISAGG = "aiconfigurator_disagg_h100.json"


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
    """The provenance entries and full disagg rows to merge into silicon rows; counts what apply() merged."""

    def __init__(self, provenance: Path | None = None, disagg: Path | None = None, note: bool | None = None):
        """provenance / disagg: the user's files (None: the shipped ones). note: say on notes when a file's
        disagg rows are not those of the disagg file (default: when the user gave that file)."""
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
        for i, r in enumerate(full):
            if r.get("mode") != "disagg":
                raise SimcoreError(f"{self.disagg_from}: rows[{i}].mode: {json.dumps(r.get('mode'))}; allowed: "
                                   f'"disagg" (a file of disagg rows with their full columns)')
        self.full = full
        self.note = disagg is not None if note is None else note
        self.with_provenance = self.with_layouts = 0  # rows apply() gave provenance columns / full disagg rows
        self.notes: list[str] = []

    def apply(self, rows: list[dict], name: str = "the rows file") -> list[dict]:
        """rows with their disagg rows swapped for the full ones (when the file's disagg rows are those), then
        the provenance columns each lacks put on the rows whose key columns match an entry."""
        rows = self._layouts(rows, name)
        out = []
        for r in rows:
            add = {k: v for k, v in self.columns.get(row_key(r, self.key), {}).items() if k not in r}
            self.with_provenance += bool(add)
            out.append({**r, **add})
        return out

    def _layouts(self, rows: list[dict], name: str) -> list[dict]:
        mine = [i for i, r in enumerate(rows) if r.get("mode") == "disagg"]
        if not mine:
            return rows
        cols = {k for i in mine for k in rows[i]}

        def key(r: dict) -> tuple:
            return tuple(sorted((k, json.dumps(v)) for k, v in r.items() if k in cols))

        if sorted(key(rows[i]) for i in mine) != sorted(map(key, self.full)):
            if self.note:
                self.notes.append(f"the disagg rows of {name} are not those of {self.disagg_from}; kept as they are")
            return rows
        spare: dict[tuple, list[dict]] = {}
        for f in self.full:
            spare.setdefault(key(f), []).append(f)
        out = list(rows)
        for i in mine:  # equal rows take the full rows in the full file's order
            out[i] = spare[key(rows[i])].pop(0)
        self.with_layouts += len(mine)
        return out
