"""Write the columns the shared silicon rows dropped: simcore/validate/data/silicon_provenance.json and silicon_disagg.json.

Usage: git -C AICONFIGURATOR show 095f58a51:aic-core/src/aiconfigurator_core/systems/silicon_sample.csv > sample.csv
       python benchmarks/silicon_provenance.py sample.csv [--system h100_sxm h200_sxm b200_sxm] [--out FILE]

aiconfigurator's public silicon_sample.csv (github.com/ai-dynamo/aiconfigurator @095f58a51) holds the same rows as
../shared/calibration/serving_h100.json plus an `id` and a `silicon_data_source` column (source file or campaign,
image, measured date). This script keeps, for each distinct configuration of each system (every column the shared
file has except the measured latencies), that column's first field (the source, which names the campaign) and the day the configuration's rows were
measured (`measured=YYYY-MM-DD`, when they share one: which generator or InferenceX recipe version configured the
engine; simcore.serving.recipes holds the recipes; else `measured_from=` / `measured_to=`, the first and last day). For the
configurations it reads configuration columns and `silicon_data_source` only, never a measured latency. (A
disaggregated row that records no load cannot get one from its configuration: rows that differ only in their
concurrency share every configuration column.) The H200 and B200 rows are written too, so that a rows file of those
GPUs (held out: their latencies are not read for any figure here) gets the same reading as the H100 rows.
silicon_disagg.json gets one entry per disaggregated row: the offered load (`batch_size` = its silicon_concurrency)
and each pool's pp / attention-DP / expert split, which the extract dropped, with the row's source and day, under
the row's identity: a few configuration columns and a digest of its measured latencies
(simcore.validate.provenance.measured_digest), which names the row without holding or reading out its values.
simcore/validate/provenance.py puts the columns back on matching rows (`simcore validate`, serving_silicon.py);
simcore.serving.sources.campaign() reads which benchmark (and so which client) measured a row
(docs/validation-log.md, "Round 7").
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

from simcore.serving.sources import campaign  # noqa: E402
from simcore.validate.provenance import DISAGG, MATCH, measured_digest, row_key  # noqa: E402

DATA = ROOT / "simcore" / "validate" / "data"  # package data: simcore/validate/provenance.py
OUT = DATA / "silicon_provenance.json"
SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm")
# the configuration columns of the shared rows (../shared/calibration/serving_h100.json), latencies excluded
KEY = ("system", "backend", "backend_version", "model_path", "precision", "mode", "isl", "osl", "gemm_quant_mode",
       "moe_quant_mode", "batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size",
       "prefill_batch_size", "prefill_num_workers", "prefill_tp_size", "decode_batch_size", "decode_num_workers",
       "decode_tp_size")
MEASURED = re.compile(r"measured=(\d{4}-\d\d-\d\d)")
CONCURRENCY = re.compile(r"silicon_concurrency=(\d+)")
# a disagg row's columns the shared extract dropped or may lack: each pool's layout and size
POOL_COLUMNS = tuple(f"{pool}_{c}" for pool in ("prefill", "decode") for c in (
    "batch_size", "num_workers", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size"))


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


def disagg_layouts(rows: list[dict], system: str) -> list[dict]:
    """One entry per distinct disaggregated row of `system` (the sample exports some measurements twice): its MATCH
    columns, measured_digest, the load (batch_size = silicon_concurrency, where the source names it), its pools'
    non-empty POOL_COLUMNS and its source with the day it was measured."""
    seen: dict[tuple, dict] = {}
    for r in rows:
        digest = measured_digest(r)
        if r.get("system") != system or r.get("mode") != "disagg" or digest is None:
            continue
        source = r.get("silicon_data_source") or ""
        entry = {c: r[c] for c in MATCH if r.get(c)}
        entry["measured_digest"] = digest
        load = CONCURRENCY.search(source)
        if load:
            entry["batch_size"] = load.group(1)
        entry.update({c: r[c] for c in POOL_COLUMNS if r.get(c)})
        day = MEASURED.search(source)
        entry["silicon_data_source"] = source.split(";")[0].strip() + (f"; measured={day.group(1)}" if day else "")
        seen.setdefault((row_key(entry, MATCH), digest), entry)
    return list(seen.values())


def _write(path: Path, about: str, entries: list[dict], key: tuple[str, ...] | None = None) -> None:
    body = ",\n".join(json.dumps(e) for e in entries)  # one entry a line
    keyed = f'"key": {json.dumps(list(key))},\n' if key else ""
    path.write_text(f'{{"about": {json.dumps(about)},\n{keyed}"rows": [\n{body}\n]}}\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="aiconfigurator's silicon_sample.csv")
    ap.add_argument("--system", nargs="+", default=list(SYSTEMS), help="aiconfigurator system names of the rows to keep")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--disagg-out", type=Path, default=DATA / DISAGG)
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
    _write(a.out, about, entries, KEY)
    counts: dict = {}
    for e in entries:
        counts[campaign(e["silicon_data_source"])] = counts.get(campaign(e["silicon_data_source"]), 0) + 1
    print(f"{len(entries)} configurations -> {a.out}: {counts}")
    layouts = [e for system in a.system for e in disagg_layouts(rows, system)]
    about = (f"The columns the shared extract of aiconfigurator's silicon rows (silicon_sample.csv @095f58a51, systems "
             f"{', '.join(a.system)}) dropped from its disaggregated rows: the offered load (batch_size = the "
             f"silicon_concurrency of silicon_data_source), each pool's layout and the source with its day, under "
             f"the row's identity ({', '.join(MATCH)} and measured_digest: 16 hex digits of SHA-256 over the "
             f"measured mean TTFT and TPOT, which names the row without holding its values). Written by "
             f"benchmarks/silicon_provenance.py; simcore/validate/provenance.py puts them back.")
    _write(a.disagg_out, about, layouts)
    loads = sum("batch_size" in e for e in layouts)
    print(f"{len(layouts)} disagg rows ({loads} with their load) -> {a.disagg_out}")


if __name__ == "__main__":
    main()
