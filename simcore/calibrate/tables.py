"""Rich tables of a calibration: fitted parameters and per-family errors (also used by benchmarks/)."""

from __future__ import annotations

from rich.table import Table

from simcore.calibrate.fit import PARAMS, Calibration


def apct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_table(table: dict, title: str | None = None) -> Table:
    """family -> {"all", "hbm"} Stats (calibration.error_table) as a rich table."""
    t = Table(title=title or "Summary: |relative error| (HBM-resident = excluding decode rows whose KV fit in L2)")
    for col in ("family", "rows", "median", "max", "HBM rows", "HBM median", "HBM max"):
        t.add_column(col, justify="left" if col == "family" else "right")
    for fam, s in table.items():
        a, h = s["all"], s["hbm"]
        t.add_row(fam, str(a.count), apct(a.median_abs), apct(a.max_abs), str(h.count), apct(h.median_abs),
                  apct(h.max_abs), style="bold" if fam == "overall" else None)
    return t


def params_table(c: Calibration) -> Table:
    t = Table(title=f"{c.efficiency.name}: efficiency profile of {c.gpu}", title_justify="left")
    for col in ("parameter", "value", "bounds", "origin"):
        t.add_column(col)
    for name, v in c.fitted.items():
        lo, hi = PARAMS[name][:2]
        t.add_row(name, f"{v:g}", f"[{lo:g}, {hi:g}]", "fitted")
    for name, (v, how) in c.derived.items():
        t.add_row(name, f"{v:g}", "", how)
    if c.kept:
        t.add_row("kept", "", "", f"from {c.base} (no rows for them): {', '.join(c.kept)}", style="dim")
    return t
