"""How a MoE router's token assignments fall on experts and on expert-parallel ranks.

Which experts a step touches (hit_fraction): experts are not equally popular. Expert popularity is taken
as lognormal: the E experts' shares of the router's picks are exp(sigma z_e), normalised, z_e the E evenly spaced
quantiles (e + 1/2) / E of a standard normal, with one sigma for every router (FITTED_SIGMA, fitted by
benchmarks/fit_routing.py on the H100 MoE rows' mean TPOT; sigma = 0 is a uniform router).
A token picks expert e with probability min(1, k p_e), so T tokens leave expert e untouched with probability
(1 - min(1, k p_e))^T, and the step streams the weights of the mean 1 - that over the experts. Hot experts make
a step touch fewer distinct experts than a uniform router at the same T k: fewer expert weights to read. (A
Zipf popularity, rank^-s, fits the same rows less well, rms 0.1437 against 0.1397, and makes the hottest of 256
experts 32 times as popular as the mean: docs/validation-log.md "Round 18".)

The busiest rank (busiest_rank_factor): with T tokens each routed to k experts and the experts split evenly over
`ranks` GPUs, a rank receives on average T k / ranks rows, but the step waits for the busiest rank. Assignments are
taken as independent and uniform over the ranks (hot experts spread over them; giving the busiest rank its share of
the hot experts under a random placement moved the H100 MoE rows' TPOT by under a point: docs/validation.md
"Round 18"), so the rows per rank are multinomial and the busiest rank's expected load is E[max] of the counts:
exact for small counts, the normal approximation (mean + sd x expected max of `ranks`
standard normals, + 1/2 for the discrete counts) beyond.
"""

from __future__ import annotations

import math
from functools import cache
from statistics import NormalDist

import numpy as np

from simcore.ops.routing_fit import FITTED_SIGMA

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


@cache
def popularity(experts: int, sigma: float) -> np.ndarray:
    """Each expert's share of the router's picks: lognormal of spread sigma at the experts' evenly spaced normal
    quantiles, normalised (uniform at sigma 0)."""
    z = np.array([NormalDist().inv_cdf((e + 0.5) / experts) for e in range(experts)])
    w = np.exp(sigma * z)
    return w / w.sum()


def hit_fraction(tokens: float, top_k: int, experts: int, sigma: float | None = None) -> float:
    """Expected share of the `experts` that at least one of `tokens` tokens (each routed to top_k of them)
    picks: 1 - (1 - k/E)^T for a uniform router (sigma 0); fewer with hot experts (the module docstring). sigma
    None: the fitted spread (FITTED_SIGMA)."""
    sigma = FITTED_SIGMA if sigma is None else sigma
    if tokens <= 0 or experts <= 0:
        return 0.0
    if sigma <= 0:
        return 1.0 - (1.0 - top_k / experts) ** tokens
    pick = np.minimum(1.0, top_k * popularity(experts, sigma))
    return float(np.mean(1.0 - (1.0 - pick) ** tokens))
