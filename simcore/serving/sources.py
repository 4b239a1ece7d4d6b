"""What a silicon row's `silicon_data_source` says about the benchmark behind it (aiconfigurator's public
silicon_sample.csv; the shared extracts get it back from simcore/validate/data/silicon_provenance.json): which
campaign measured it, and on which days. The campaign picks the client and the engine settings
(simcore.serving.silicon), the day picks the generator's rules (simcore.serving.generator) or the InferenceX recipe
(simcore.serving.recipes) that configured the engine."""

from __future__ import annotations

import re


def campaign(source: str | None) -> str | None:
    """The benchmark campaign a row's `silicon_data_source` (aiconfigurator's silicon_sample.csv) names:
    "inferencex" for an InferenceX database export (`source_file=YYYY-MM-DD.csv`, `db-dump/YYYY-MM-DD`),
    "aiconfigurator" for aiconfigurator's own aiperf sweep (`.../aic-auto-gap-analysis/data/...`), else None."""
    if not source:
        return None
    head = source.split(";")[0].strip()
    if re.fullmatch(r"source_file=\d{4}-\d\d-\d\d\.csv|db-dump/\d{4}-\d\d-\d\d", head):
        return "inferencex"
    if "aic-auto-gap-analysis/" in head:
        return "aiconfigurator"
    return None


def measured_days(source: str | None) -> tuple[str | None, str | None]:
    """(first, last) day a configuration's rows were measured, from the provenance's `measured=` (one day: both) or
    `measured_from=` / `measured_to=` (benchmarks/silicon_provenance.py); (None, None) when not recorded."""
    one = re.search(r"measured=(\d{4}-\d\d-\d\d)", source or "")
    if one:
        return one.group(1), one.group(1)
    first, last = (re.search(rf"measured_{k}=(\d{{4}}-\d\d-\d\d)", source or "") for k in ("from", "to"))
    return (first.group(1), last.group(1)) if first and last else (None, None)


def generator_day(source: str | None) -> str | None:
    """The day a row of aiconfigurator's own sweep was measured (its generator of that day configured the engine);
    None for a row of another campaign or without a day."""
    return measured_days(source)[0] if campaign(source) == "aiconfigurator" else None
