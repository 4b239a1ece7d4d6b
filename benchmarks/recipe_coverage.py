"""Which rows of a silicon-rows file take an InferenceX recipe (simcore/serving/recipes.py), by system, engine and
model. Configuration columns only: no latency is read.

Usage: python benchmarks/recipe_coverage.py ROWS.json [--no-provenance]

Each aggregated InferenceX row (after the shipped provenance puts its source and day back) reads as `recipe` (the
recipe of its day is known and applied), `unknown` (no recipe, or a day whose version cannot be told: MTP recipes on
the same image, no day where versions differ) or `attention DP` (TensorRT-LLM and SGLang rows with attention DP keep
their reading). Other rows (aiconfigurator's sweep, disaggregated rows) are counted as `not InferenceX`.
(docs/validation-log.md, "Round 17").
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simcore.errors import SimcoreError  # noqa: E402
from simcore.serving import silicon  # noqa: E402
from simcore.validate.provenance import RowExtras  # noqa: E402


def coverage(rows: list[dict]) -> collections.Counter:
    """(system, backend, model, reading) -> rows; reading as silicon.recipe_reading ("" model: not InferenceX)."""
    out: collections.Counter = collections.Counter()
    for r in rows:
        reading = silicon.recipe_reading(r)
        model = "" if reading == "not InferenceX" else (r.get("model_path") or "").split("/")[-1]
        out[(r.get("system"), r.get("backend"), model, reading)] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", type=Path, help="a silicon-rows JSON file ({\"rows\": [...]})")
    ap.add_argument("--no-provenance", action="store_true", help="read the rows as the file holds them")
    a = ap.parse_args()
    try:
        rows = json.loads(a.rows.read_text(encoding="utf-8"))["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise SimcoreError(f"{a.rows}: rows: allowed: a list of objects")
        if not a.no_provenance:
            rows = RowExtras().apply(rows, a.rows.name)
    except (OSError, ValueError, KeyError, TypeError, SimcoreError) as exc:
        print(f"error: {a.rows}: {exc}", file=sys.stderr)
        sys.exit(2)
    cov = coverage(rows)
    print(f"{'system':9} {'engine':7} {'model':26} {'reading':15} {'rows':>5}")
    for (system, engine, model, reading), n in sorted(cov.items(), key=lambda kv: [str(x) for x in kv[0]]):
        print(f"{system!s:9} {engine!s:7} {model:26} {reading:15} {n:5d}")
    took = sum(n for k, n in cov.items() if k[3] == "recipe")
    print(f"{took} of {len(rows)} rows take a recipe")


if __name__ == "__main__":
    main()
