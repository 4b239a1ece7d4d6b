"""Sweeps: many experiments from one base and axes by field path, run on a local pool or Ray,
stored one row per point in SQLite (resumable), and reported as tables, CSV and plots."""

from simcore.sweep.expand import Plan, Point, expand, plan, point_key
from simcore.sweep.report import pareto_front
from simcore.sweep.run import SweepResult, run_sweep
from simcore.sweep.spec import Sweep, load_sweep, sweep_from_dict
from simcore.sweep.store import Store

__all__ = ["Plan", "Point", "Store", "Sweep", "SweepResult", "expand", "load_sweep", "pareto_front", "plan",
           "point_key", "run_sweep", "sweep_from_dict"]
