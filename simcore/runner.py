"""Run an experiment and get its summary: the entry point for the CLI, sweeps and scripts."""

from __future__ import annotations

from simcore.config.experiment import Experiment, experiment_from_dict, resolve
from simcore.run.static import StaticResult, simulate
from simcore.report.summary import summary


def run(exp: Experiment, requests_csv=None, spans=None, progress=None):
    """(result, JSON summary). Request-level experiments (workload kind requests) go to the serving
    simulator, which streams one CSV row per request to `requests_csv` when given and records
    trace spans into `spans` (a simcore.report.serving_trace.SpanLog) when given."""
    if exp.workload.kind == "requests":
        from simcore.report.serving import serving_summary
        from simcore.serving.simulate import simulate as serve

        res = serve(resolve(exp), requests_csv, keep_series=requests_csv is not None, spans=spans, progress=progress)
        return res, serving_summary(res)
    if exp.workload.kind == "training":
        from simcore.run.training import simulate as train
        from simcore.report.training import training_summary

        res = train(resolve(exp))
        return res, training_summary(res)
    res: StaticResult = simulate(resolve(exp), progress)
    return res, summary(res)


def run_dict(raw: dict, overrides: list[str] | None = None, source: str = "experiment") -> dict:
    """Validate plain experiment data, run it, return the JSON summary (raises SimcoreError on bad input)."""
    return run(experiment_from_dict(raw, overrides, source))[1]
