"""A Calibration as an efficiency-profile YAML: each value says where it came from."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from simcore.calibrate.fit import Calibration
from simcore.cost.calibration import FAMILIES

_KEPT = re.compile(r"^kept( from \S+)? \(not in the data\): ")
_LINE = re.compile(r"^(\s*)([A-Za-z_0-9]+):\s*([^#]*?)\s*(?:#\s*(.*))?$")


def comments(text: str) -> dict[str, str]:
    """dotted key -> its trailing comment in a profile YAML (so kept values keep their provenance)."""
    out, parent = {}, ""
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        indent, key, value, note = m.groups()
        path = f"{parent}.{key}" if indent else key
        if not indent:
            parent = key if not value else ""
        if note:
            out[path] = note
    return out


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def error_lines(c: Calibration) -> list[str]:
    """Per family: |relative error| median / max over the rows the fit used (HBM-resident)."""
    lines = []
    for fam in FAMILIES:
        if fam not in c.table:
            continue
        a, h = c.table[fam]["all"], c.table[fam]["hbm"]
        extra = "" if a.count == h.count else f"; all {a.count} rows incl. L2-resident: {pct(a.median_abs)} / {pct(a.max_abs)}"
        lines.append(f"  {fam}: {h.count} rows: {pct(h.median_abs)} / {pct(h.max_abs)}{extra}")
    return lines


def render(c: Calibration, data_label: str, meta: dict, base_text: str = "", tool: str = "simcore calibrate") -> str:
    """The YAML text. data_label names the microbenchmark file as it should appear in the header."""
    kept_notes = comments(base_text)
    eff = c.efficiency
    counts = ", ".join(f"{fam} {n} rows" for fam, n in c.rows.items())
    source = f"fitted by {tool} to {data_label} ({counts})"
    identity = ", ".join(f"{k} {meta[k]}" for k in ("gpu", "torch", "hip", "cuda", "driver") if meta.get(k))
    head = [
        f"{c.gpu} efficiency profile. Written by `{tool}`; rerun it rather than editing by hand.",
        f"Source: {data_label} ({identity or 'device identity not recorded'}).",
        f"Method: {c.method}, minimizing sum(log(predicted/measured)^2)",
        "  with every row priced by simcore's Pricer through the Ops the builder emits (simcore/cost/calibration.py).",
    ]
    if c.l2_rows:
        head += [f"  decode_attn rows with KV <= L2 ({c.l2_rows}) are not fitted: the benchmark reused its KV buffers, so they",
                 "  ran partly from L2; a real decode step streams each layer's KV from HBM."]
    head += [f"Date: {datetime.date.today().isoformat()}",
             "Resulting |relative error|, median / max (HBM-resident rows):", *error_lines(c),
             "Check: python benchmarks/op_fidelity.py", ""]
    lines = [f"# {h}" if h else "#" for h in head]
    lines += ["kind: efficiency", f"name: {eff.name}", f"measured_on: {eff.measured_on}", f'source: "{source}"']

    def note(path: str) -> str:
        if path in c.fitted:
            return "fitted"
        if path in c.derived:
            return c.derived[path][1]
        old = _KEPT.sub("", kept_notes.get(path, ""))
        who = "kept" if c.base == eff.name else f"kept from {c.base}"
        return f"{who} (not in the data)" + (f": {old}" if old else "")

    for key, value in eff.model_dump().items():
        if key in ("kind", "name", "measured_on", "source"):
            continue
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {_fmt(v)}  # {note(f'{key}.{k}')}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {_fmt(value)}  # {note(key)}")
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.1f}"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
