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


def export_layout(row: dict, node: int | None = None) -> dict:
    """The row with InferenceX's export of an expert-parallel recipe read back. InferenceX's recipes run tp GPUs with ep
    1 or ep = tp (`.github/configs/nvidia-master.yaml` search spaces: `{tp: 8, ep: 8}`, `{tp: 8, ep: 8, dp-attn:
    true}`), but some of its database exports write the recipe's tp as moe_tp_size, its ep as moe_ep_size and their
    product as tp_size x attention_dp_size: `qwen3.5-fp8-h200-sglang` `{tp: 8, ep: 8}` (2026-03-04) became tp_size
    64, moe 8 x 8, and `dsr1-fp8-h200-trt` `{tp: 8, ep: 8, dp-attn: true}` attention_dp_size 64 with batch_size =
    clients / 64 (its id's silicon_concurrency = batch_size x 64 = the recipe's 64 clients). An ep = tp recipe read
    as the rows' own aiconfigurator layout (moe_tp x moe_ep = the worker's GPUs) has moe_tp 1, so moe_tp = moe_ep = n
    > 1 with tp_size x attention_dp_size = n x n is this export: n GPUs, ep n, attention DP over them where the row
    has any, the clients kept (batch_size per rank rescaled). Applied to InferenceX's rows, and to rows of no recorded
    campaign whose n x n GPUs exceed one node (`node`); other rows are returned as they are."""
    def num(key: str) -> int:
        try:
            return int(float(row.get(key) or 1))
        except (TypeError, ValueError):
            return 0
    n, ep, tp, adp = num("moe_tp_size"), num("moe_ep_size"), num("tp_size"), num("attention_dp_size")
    source = campaign(row.get("silicon_data_source"))
    if not (n == ep > 1 and tp * adp == n * n and row.get("mode", "agg") == "agg"):
        return row
    if source != "inferencex" and not (source is None and node and n * n > node):
        return row
    ranks = n if adp > 1 else 1
    out = dict(row, tp_size=str(n // ranks), attention_dp_size=str(ranks), moe_tp_size="1", moe_ep_size=str(n))
    if adp > 1 and row.get("batch_size"):
        out["batch_size"] = str(num("batch_size") * adp // ranks)
    return out
