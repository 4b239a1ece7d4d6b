"""Latency of one replica's static batch, from the simulator: TTFT is the prefill pass of the
batch, TPOT the mean decode step. Memoized per shape (gpu, tp, pp, batch, isl, osl, dtypes),
so every replica count that gives the same batch reuses one prediction."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from simcore.run.static import StaticSimulator
from simcore.ops.passes import decode, prefill, window_knee
from simcore.planner.capacity import build_run


@dataclass(frozen=True)
class Prediction:
    ttft_s: float  # prefill pass of the replica's whole batch
    tpot_s: float  # mean decode step
    e2e_s: float  # ttft + every decode step


@cache
def _simulator(model: str, gpu: str, tp: int, pp: int, weights: str, kv_dtype: str) -> StaticSimulator:
    return StaticSimulator(build_run(model, gpu, tp, pp, weights, kv_dtype))


@cache
def ttft(model: str, gpu: str, tp: int, pp: int, batch: int, isl: int, osl: int, weights: str, kv_dtype: str) -> float:
    """The prefill pass of the whole batch (osl is part of the shape key only)."""
    return _simulator(model, gpu, tp, pp, weights, kv_dtype).pass_(prefill(batch, isl)).time


def decode_points(steps: int, isl: int, window: int | None) -> list[tuple[int, int]]:
    """(decode step, how many steps it stands for): the middle step of each stretch over which the
    step time is linear in the context, so the weighted mean equals the mean over every step.
    The stretches break where a sliding window fills (the cache stops growing there)."""
    knee = window_knee(isl, window) or 0
    cuts = [1, knee, steps + 1] if 1 < knee <= steps else [1, steps + 1]
    return [((a + b - 1) // 2, b - a) for a, b in zip(cuts, cuts[1:])]


@cache
def predict(model: str, gpu: str, tp: int, pp: int, batch: int, isl: int, osl: int, weights: str = "auto",
            kv_dtype: str = "auto") -> Prediction:
    """TTFT, TPOT (mean decode step) and end-to-end time of one replica's static batch, each pass
    simulated by StaticSimulator. Memoized per shape: replica counts with the same batch share it."""
    sim = _simulator(model, gpu, tp, pp, weights, kv_dtype)
    first = ttft(model, gpu, tp, pp, batch, isl, osl, weights, kv_dtype)
    steps = osl - 1  # the prefill produces the first token
    if not steps:
        return Prediction(first, 0.0, first)
    decode_s = sum(n * sim.pass_(decode(batch, isl + i - 1)).time
                   for i, n in decode_points(steps, isl, sim.run.model.sliding_window))
    return Prediction(first, decode_s / steps, first + decode_s)
