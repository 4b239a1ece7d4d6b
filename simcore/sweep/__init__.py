"""Sweeps: many experiments from one base and axes by field path, run on a local pool or Ray,
stored one row per point in SQLite (resumable), and reported as tables, CSV and plots.

The runner, store and report load on first use, so `simcore run` (whose parser registers the
sweep commands) does not import them. (`expand` is also a submodule's name: bound eagerly.)
"""

from __future__ import annotations

import importlib

from simcore.sweep.expand import Plan, Point, expand, plan, point_key
from simcore.sweep.spec import Sweep, load_sweep, sweep_from_dict

_EXPORTS = {"pareto_front": "report", "SweepResult": "run", "run_sweep": "run", "Store": "store"}
__all__ = sorted([*_EXPORTS, "Plan", "Point", "expand", "plan", "point_key", "Sweep", "load_sweep",
                  "sweep_from_dict"])


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'simcore.sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(f"simcore.sweep.{_EXPORTS[name]}"), name)
