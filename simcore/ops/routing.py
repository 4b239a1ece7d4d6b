"""How a MoE router's token assignments fall on expert-parallel ranks.

With T tokens each routed to k experts and the experts split evenly over `ranks` GPUs, a rank
receives on average T k / ranks rows, but the step waits for the busiest rank. Assignments are
taken as independent and uniform (a balanced router; hot experts only add to this), so the
rows per rank are multinomial and the busiest rank's expected load is E[max] of the counts:
exact for small counts, the normal approximation (mean + sd x expected max of `ranks`
standard normals, + 1/2 for the discrete counts) beyond.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

EXACT_LIMIT = 64  # assignments up to which E[max] is computed exactly (beyond: normal, within ~1%)


@cache
def expected_max_normal(m: int) -> float:
    """E[max of m independent standard normals] (0 for m = 1), by numeric integration."""
    if m <= 1:
        return 0.0
    x = np.linspace(-10.0, 10.0, 20001)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    pdf = np.exp(-x * x / 2.0) / math.sqrt(2.0 * math.pi)
    return float(np.trapezoid(x * m * cdf ** (m - 1) * pdf, x))


def _binomial_pmf(n: int, p: float) -> np.ndarray:
    """pmf[r, j] = P(Binomial(r, p) = j) for r, j in 0..n."""
    pmf = np.zeros((n + 1, n + 1))
    pmf[0, 0] = 1.0
    for r in range(1, n + 1):
        pmf[r, 1:] = pmf[r - 1, :-1] * p
        pmf[r, :] += pmf[r - 1, :] * (1.0 - p)
    return pmf


@cache
def expected_max_load(n: int, m: int) -> float:
    """E[max over m bins of the counts] when n balls fall uniformly and independently into m bins."""
    if m <= 1 or n == 0:
        return float(n)
    if n > EXACT_LIMIT:
        mean, sd = n / m, math.sqrt(n * (1 / m) * (1 - 1 / m))
        return min(float(n), mean + sd * expected_max_normal(m) + 0.5)  # + continuity correction
    # P(max <= c): fill bins one at a time; bin i takes Binomial(remaining, 1/(m - i)) of what is left.
    pmfs = [_binomial_pmf(n, 1.0 / (m - i)) for i in range(m - 1)]
    expected, c = 0.0, math.ceil(n / m) - 1  # P(max <= c) = 0 below the mean
    expected += c + 1  # sum over c' < ceil(n/m) of P(max > c') = 1 each
    while True:
        c += 1
        ok = (np.arange(n + 1) <= c).astype(float)  # the last bin takes whatever remains
        for pmf in reversed(pmfs):
            ok = (pmf[:, : c + 1] * ok[np.arange(n + 1)[:, None] - np.arange(c + 1)[None, :]].clip(0)
                  * (np.arange(n + 1)[:, None] >= np.arange(c + 1)[None, :])).sum(axis=1)
        tail = 1.0 - ok[n]
        if tail < 1e-9 or c >= n:
            return expected
        expected += tail


def busiest_rank_factor(tokens: int, top_k: int, ranks: int) -> float:
    """Rows on the busiest of `ranks` expert-parallel GPUs over the mean rows per GPU (>= 1)."""
    n = tokens * top_k
    if ranks <= 1 or n == 0:
        return 1.0
    return expected_max_load(n, ranks) / (n / ranks)
