"""Requests as plain arrays: arrival times, lengths, prefix groups, sessions; seeded.

A request either arrives at a fixed time (`arrival`) or `delay` seconds after its `parent`
finishes (arrival NaN): closed-loop clients chain their requests this way, and so do the turns
of a multi-turn session. docs/serving.md describes every choice.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from simcore.config.validation import clip
from simcore.errors import SimcoreError
from simcore.config.serving import MAX_TOKENS, Lengths, RequestsWorkload
from simcore.serving.requests import Requests, read_lines
from simcore.serving.trace import load_trace


def lognormal_params(mean: float, cv: float) -> tuple[float, float]:
    """(mu, sigma) of the underlying normal for a lognormal with this mean and coefficient of variation."""
    s2 = math.log1p(cv**2)
    return math.log(mean) - s2 / 2, math.sqrt(s2)


def sample_lengths(d: Lengths, n: int, rng: np.random.Generator, field: str) -> np.ndarray:
    if d.dist == "fixed":
        x = np.full(n, float(d.value))
    elif d.dist == "uniform":
        x = rng.integers(d.low, d.high + 1, n).astype(float)
    elif d.dist == "normal":
        x = rng.normal(d.mean, d.std, n)
    elif d.dist == "lognormal":
        x = rng.lognormal(*lognormal_params(d.mean, d.cv), n)
    else:
        x = rng.choice(read_empirical(Path(d.path), field), n).astype(float)
    hi = d.max if d.max is not None else MAX_TOKENS  # the bound also keeps huge samples out of int64 overflow
    return np.clip(np.nan_to_num(np.rint(x), nan=d.min), d.min, hi).astype(np.int64)


def read_empirical(path: Path, field: str) -> np.ndarray:
    lines = read_lines(path, f"{field}.path")
    out = []
    for i, line in enumerate(lines, 1):
        cell = line.split(",")[0].strip()
        if not cell or (i == 1 and not cell.lstrip("-").isdigit()):
            continue  # blank line or header
        v = int(cell) if cell.isascii() and cell.isdigit() and len(cell) <= 10 else 0
        if not 1 <= v <= MAX_TOKENS:
            raise SimcoreError(f"{path}:{i}: length {clip(repr(cell))}: expected a whole number >= 1 and "
                               f"<= {MAX_TOKENS}")
        out.append(v)
    if not out:
        raise SimcoreError(f"field '{field}.path' = {str(path)!r}: no lengths in the file")
    return np.array(out, dtype=np.int64)


def open_loop_times(w: RequestsWorkload, n: int, rng: np.random.Generator) -> np.ndarray:
    a = w.arrival
    if a.process == "fixed":
        gaps = np.full(n, 1.0 / a.rate)
    elif a.process == "gamma":
        k = 1.0 / a.cv**2
        gaps = rng.gamma(k, 1.0 / (a.rate * k), n)
    else:
        gaps = rng.exponential(1.0 / a.rate, n)
    t = np.cumsum(gaps)
    return t - t[0]  # the first request arrives at t = 0


def reissue_delays(a, n: int, rng: np.random.Generator) -> np.ndarray | float:
    """Seconds from a closed-loop client's last token to its next request reaching the engine (the tool's
    response handling, its next request's HTTP and the server's input processing): reissue_delay_s each,
    or draws of that mean: exponential, or lognormal with coefficient of variation reissue_delay_cv."""
    if a.reissue_delay_dist == "exponential":
        return rng.exponential(a.reissue_delay_s, n)
    if a.reissue_delay_dist == "lognormal":  # mean m, cv: sigma^2 = ln(1 + cv^2), mu = ln(m) - sigma^2 / 2
        s2 = math.log1p(a.reissue_delay_cv**2)
        return rng.lognormal(math.log(a.reissue_delay_s) - s2 / 2, math.sqrt(s2), n)
    return a.reissue_delay_s


def generate(w: RequestsWorkload) -> Requests:
    if w.arrival.process == "trace":
        return load_trace(Path(w.trace))
    rng_t, rng_p, rng_o, rng_x, rng_d = (np.random.default_rng(s) for s in np.random.SeedSequence(w.seed).spawn(5))
    turns = w.sessions.turns
    sessions = math.ceil(w.requests / turns)
    n = sessions * turns
    user = sample_lengths(w.prompt_tokens, n, rng_p, "workload.prompt_tokens")
    output = sample_lengths(w.output_tokens, n, rng_o, "workload.output_tokens")
    group = np.full(n, -1, dtype=np.int64)
    plen = np.zeros(n, dtype=np.int64)
    sp = w.shared_prefix
    if sp is not None:
        has = np.repeat(rng_x.random(sessions) < sp.fraction, turns)  # a session keeps its system prompt
        if sp.zipf > 0:  # skewed popularity: group k with probability ~ 1 / (k + 1)^zipf
            w_k = 1.0 / np.arange(1, sp.groups + 1) ** sp.zipf
            g = np.repeat(rng_x.choice(sp.groups, sessions, p=w_k / w_k.sum()), turns)
        else:
            g = np.repeat(rng_x.integers(0, sp.groups, sessions), turns)
        group = np.where(has, g, -1)
        plen = np.where(has, sp.tokens, 0)
    # turn k resends turn k-1's prompt and answer, then a new user message
    prompt = plen + user
    if turns > 1:
        for k in range(1, turns):
            idx = np.arange(sessions) * turns + k
            prompt[idx] = prompt[idx - 1] + output[idx - 1] + user[idx]
        session = np.repeat(np.arange(sessions), turns)
    else:
        session = np.full(n, -1, dtype=np.int64)
    arrival = np.full(n, np.nan)
    parent = np.full(n, -1, dtype=np.int64)
    delay = np.zeros(n)
    first = np.arange(sessions) * turns
    later = np.setdiff1d(np.arange(n), first)
    parent[later] = later - 1
    delay[later] = w.sessions.think_time_s
    if w.arrival.process == "closed":
        c = w.arrival.concurrency
        arrival[first[:c]] = 0.0
        parent[first[c:]] = first[: max(0, sessions - c)] + turns - 1  # the client's previous request
        delay[first[c:]] = reissue_delays(w.arrival, len(first[c:]), rng_d)
    else:
        arrival[first] = open_loop_times(w, sessions, rng_t)
    keep = slice(0, w.requests)  # sessions round up; trailing turns beyond `requests` are cut
    return Requests(arrival[keep], parent[keep], delay[keep], prompt[keep], output[keep], group[keep],
                    plen[keep], session[keep])
