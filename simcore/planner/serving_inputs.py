"""What a serving recommendation is asked for: the SLOs (at percentiles), the offered load and the
request lengths. Plain data, parsed once; simcore/planner/serving_search.py searches against them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from simcore.errors import SimcoreError


@dataclass(frozen=True)
class SLOTarget:
    metric: str  # ttft | tpot
    percentile: float | None  # None: the mean
    seconds: float

    @property
    def label(self) -> str:
        at = "mean" if self.percentile is None else f"p{self.percentile:g}"
        value = f"{self.seconds:g} s" if self.metric == "ttft" else f"{self.seconds * 1e3:g} ms"
        return f"{at} {self.metric.upper()} <= {value}"

    def of(self, values: np.ndarray) -> float:
        if not len(values):
            return math.inf
        return float(values.mean() if self.percentile is None else np.percentile(values, self.percentile))


_SLO = re.compile(r"^\s*(?:(p)(\d+(?:\.\d+)?)|(mean))\s*:\s*(.+)$", re.IGNORECASE)


def parse_slo(name: str, value, metric: str) -> SLOTarget | None:
    """'p90:1.0' (the 90th percentile within 1 s), 'mean:0.05', or a bare number of seconds (the mean)."""
    if value is None:
        return None
    allowed = "seconds > 0, optionally at a percentile: p90:1.0, p99:0.05 or mean:0.05"
    pct, seconds = None, value
    if isinstance(value, str):
        m = _SLO.match(value)
        if m:
            pct, seconds = (float(m.group(2)) if m.group(1) else None), m.group(4)
            if pct is not None and not 0 < pct < 100:
                raise SimcoreError(f"{name}: {value!r}: the percentile must be between 0 and 100 (exclusive); "
                                   f"allowed: {allowed}")
        try:
            seconds = float(seconds)
        except ValueError:
            raise SimcoreError(f"{name}: {value!r}: allowed: {allowed}") from None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0 or math.isinf(seconds):
        raise SimcoreError(f"{name}: {value!r}: allowed: {allowed}")
    return SLOTarget(metric, pct, float(seconds))


def is_percentile(value) -> bool:
    return isinstance(value, str) and bool(_SLO.match(value))


@dataclass(frozen=True)
class Load:
    """What the deployment must serve: `rate` requests/s (arrival process poisson | gamma | fixed,
    gamma's `cv`), or `concurrency` closed-loop clients, or a `trace` file (its own arrivals)."""

    rate: float | None = None
    concurrency: int | None = None
    process: str = "poisson"
    cv: float = 1.0
    trace: str | None = None
    requests: int = 400  # simulated per serving run
    seed: int = 0


@dataclass(frozen=True)
class Lengths:
    """Prompt and output tokens: fixed, or lognormal with this mean and coefficient of variation."""

    input_len: int
    output_len: int
    input_cv: float = 0.0
    output_cv: float = 0.0

    TAIL = 4  # lognormal lengths are clipped at 4x their mean

    @staticmethod
    def spec(mean: int, cv: float) -> dict:
        if not cv:
            return {"dist": "fixed", "value": mean}
        return {"dist": "lognormal", "mean": float(mean), "cv": cv, "max": Lengths.TAIL * mean}

    @property
    def longest(self) -> int:
        """The longest request (prompt + output): max_model_len of the deployment."""
        return ((self.TAIL if self.input_cv else 1) * self.input_len
                + (self.TAIL if self.output_cv else 1) * self.output_len)
