"""Write the per-row provenance the shared silicon rows dropped: simcore/validate/data/silicon_provenance.json.

Usage: git -C AICONFIGURATOR show 095f58a51:aic-core/src/aiconfigurator_core/systems/silicon_sample.csv > sample.csv
       python benchmarks/silicon_provenance.py sample.csv [--system h100_sxm h200_sxm b200_sxm] [--out FILE]

aiconfigurator's public silicon_sample.csv (github.com/ai-dynamo/aiconfigurator @095f58a51) holds the same rows as
../shared/calibration/serving_h100.json plus an `id` and a `silicon_data_source` column (source file or campaign,
image, measured date). This script keeps, for each distinct configuration of each system (every column the shared
file has except the measured latencies), that column's first field (the source, which names the campaign) and the day the configuration's rows were
measured (`measured=YYYY-MM-DD`, when they share one: which generator or InferenceX recipe version configured the
engine; simcore.serving.recipes holds the recipes; else `measured_from=` / `measured_to=`, the first and last day). It reads configuration columns and `silicon_data_source` only,
never a measured latency. (A disaggregated row that records no load cannot get one here: rows that differ only in
their concurrency share a configuration, so the configuration does not name a row's silicon_concurrency.) The H200
and B200 rows are written too, configuration columns only, so that a rows file of those GPUs
(held out: their latencies are never read here) gets the same reading of its client as the H100 rows.
simcore/validate/provenance.py puts the columns back on matching rows (`simcore validate`, serving_silicon.py);
simcore.serving.silicon.campaign() reads which benchmark (and so which client) measured a row
(docs/validation.md, "Round 7").
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simcore.serving.silicon import campaign  # noqa: E402
from simcore.validate.provenance import row_key  # noqa: E402

OUT = ROOT / "simcore" / "validate" / "data" / "silicon_provenance.json"  # package data: simcore/validate/provenance.py
SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm")
# the configuration columns of the shared rows (../shared/calibration/serving_h100.json), latencies excluded
KEY = ("system", "backend", "backend_version", "model_path", "precision", "mode", "isl", "osl", "gemm_quant_mode",
       "moe_quant_mode", "batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size",
       "prefill_batch_size", "prefill_num_workers", "prefill_tp_size", "decode_batch_size", "decode_num_workers",
       "decode_tp_size")
MEASURED = re.compile(r"measured=(\d{4}-\d\d-\d\d)")


def provenance(rows: list[dict], system: str) -> list[dict]:
    """One entry per distinct configuration of `system`: its KEY columns (non-empty ones), the first
    silicon_data_source in sorted order (duplicates of a configuration all come from one campaign, else the
    configuration is left out)."""
    seen: dict[tuple, list[str]] = {}
    for r in rows:
        if r.get("system") == system:
            seen.setdefault(row_key(r, KEY), []).append(r.get("silicon_data_source") or "")
    out = []
    for k, sources in sorted(seen.items()):
        if len({campaign(s) for s in sources}) != 1:
            continue
        entry = {c: v for c, v in zip(KEY, k) if v}
        entry["silicon_data_source"] = sorted(sources)[0].split(";")[0].strip()  # the source (what campaign() reads)
        dates = {m.group(1) for s in sources for m in [MEASURED.search(s)] if m}
        if len(dates) == 1 and all(MEASURED.search(s) for s in sources):
            # the day every row of the configuration was measured: which generator wrote its engine's config
            # (simcore.serving.generator.graphs)
            entry["silicon_data_source"] += f"; measured={dates.pop()}"
        elif dates and all(MEASURED.search(s) for s in sources):
            # rows of several days: the first and the last, which bound the recipe versions that can have run
            # (simcore.serving.recipes)
            entry["silicon_data_source"] += f"; measured_from={min(dates)}; measured_to={max(dates)}"
        out.append(entry)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="aiconfigurator's silicon_sample.csv")
    ap.add_argument("--system", nargs="+", default=list(SYSTEMS), help="aiconfigurator system names of the rows to keep")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    try:
        with a.csv.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        print(f"error: {a.csv}: {exc}", file=sys.stderr)
        sys.exit(2)
    if not rows or "silicon_data_source" not in rows[0]:
        print(f"error: {a.csv}: no silicon_data_source column (expected aiconfigurator's silicon_sample.csv)",
              file=sys.stderr)
        sys.exit(2)
    entries = [e for system in a.system for e in provenance(rows, system)]
    about = (f"Per-configuration provenance of aiconfigurator's silicon rows (silicon_sample.csv @095f58a51, systems "
             f"{', '.join(a.system)}): the source of silicon_data_source (its first field) with the day its rows were measured where they share one (else the first and last day). Written by benchmarks/silicon_provenance.py; configuration columns only, no latencies.")
    body = ",\n".join(json.dumps(e) for e in entries)  # one configuration a line
    a.out.write_text(f'{{"about": {json.dumps(about)},\n"key": {json.dumps(list(KEY))},\n"rows": [\n{body}\n]}}\n')
    counts: dict = {}
    for e in entries:
        counts[campaign(e["silicon_data_source"])] = counts.get(campaign(e["silicon_data_source"]), 0) + 1
    print(f"{len(entries)} configurations -> {a.out}: {counts}")


if __name__ == "__main__":
    main()
