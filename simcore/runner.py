"""Run an experiment and get its summary: the entry point for the CLI, sweeps and scripts."""

from __future__ import annotations

from simcore.config.experiment import Experiment, experiment_from_dict, resolve
from simcore.engine.static import StaticResult, simulate
from simcore.report.summary import summary


def run(exp: Experiment) -> tuple[StaticResult, dict]:
    res = simulate(resolve(exp))
    return res, summary(res)


def run_dict(raw: dict, overrides: list[str] | None = None, source: str = "experiment") -> dict:
    """Validate plain experiment data, run it, return the JSON summary (raises SimcoreError on bad input)."""
    return run(experiment_from_dict(raw, overrides, source))[1]
