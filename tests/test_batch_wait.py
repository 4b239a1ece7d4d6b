"""TensorRT-LLM's batch waiting (serving.batch_wait_iters / batch_wait_tokens_ratio; docs/serving.md "Batch waiting"):
while generation requests run, new contexts are held back until the step's tokens reach ratio x max_num_tokens or
they were held batch_wait_iters steps (py_executor.py _waiting_requests)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from simcore.errors import SimcoreError
from simcore.serving.engines import resolve as resolve_engine
from simcore.serving.schedulers.trtllm import TRTLLM
from tests.test_serving import run_checked, serving_run


def _rep(iters: int, ratio: float, waiting_tokens: int, budget_tokens: int = 1000):
    cfg = SimpleNamespace(batch_wait_iters=iters, batch_wait_tokens_ratio=ratio, max_num_batched_tokens=budget_tokens)
    return SimpleNamespace(cfg=cfg, waiting_context_tokens=lambda budget: waiting_tokens)


def test_contexts_wait_at_most_the_timeout_then_the_count_resets():
    s = TRTLLM()
    rep = _rep(iters=3, ratio=0.5, waiting_tokens=100)  # 100 + 10 decodes < 0.5 x 1000: below the ratio
    assert [s.hold(rep, 10, 1000) for _ in range(5)] == [True, True, True, False, True]


def test_enough_tokens_stop_the_wait_at_once():
    s = TRTLLM()
    assert s.hold(_rep(3, 0.5, waiting_tokens=490), 10, 1000) is False  # 490 + 10 = 0.5 x 1000
    assert s.hold(_rep(3, 0.5, waiting_tokens=489), 10, 1000) is True


def test_no_wait_without_decodes_or_contexts_or_when_off():
    s = TRTLLM()
    assert s.hold(_rep(3, 0.5, 100), 0, 1000) is False  # nothing running: no dead wait
    assert s.hold(_rep(3, 0.5, 0), 10, 1000) is False  # nothing would be admitted
    assert s.hold(_rep(0, 0.0, 100), 10, 1000) is False  # off (TensorRT-LLM's default)
    assert s.hold(_rep(0, 0.9, 100), 10, 1000) is False  # a timeout of 0 iterations never holds
    assert s.waited == 0


CLOSED = {"requests": 24, "arrival": {"process": "closed", "concurrency": 4}, "prompt_tokens": {"value": 512},
          "output_tokens": {"dist": "uniform", "low": 8, "high": 64}}  # clients fall out of step


def _ttft(serving: dict) -> float:
    res = run_checked(serving_run(CLOSED, {"engine": "trtllm", **serving}))
    m = res.metrics
    return float(np.nanmean(m.first_token - m.arrival))


def test_waiting_delays_first_tokens_by_at_most_the_held_steps():
    base = _ttft({})
    held = _ttft({"batch_wait_iters": 5, "batch_wait_tokens_ratio": 0.9})
    never = _ttft({"batch_wait_iters": 5, "batch_wait_tokens_ratio": 0.01})  # one prompt passes 1% of 8192 at once
    assert never == pytest.approx(base, rel=1e-12)
    assert held > base
    # a held prompt waits at most 5 steps of at most 4 decodes: each under a few ms for an 8B model on one H100
    assert held - base < 5 * 0.02


def test_batch_wait_needs_trtllm_and_no_attention_dp():
    for serving in ({"batch_wait_iters": 5}, {"engine": "vllm", "batch_wait_tokens_ratio": 0.5}):
        run = serving_run(CLOSED, serving)
        with pytest.raises(SimcoreError, match="batch waiting; allowed with scheduler trtllm") as e:
            resolve_engine(run, run.experiment.serving)
        assert "\n" not in str(e.value)
    run = serving_run(CLOSED, {"engine": "trtllm", "batch_wait_iters": 5}, model="qwen3-30b-a3b",
                      parallelism={"tp": 2, "attention_dp": 2, "ep": 2})
    with pytest.raises(SimcoreError, match="does not wait under attention DP"):
        resolve_engine(run, run.experiment.serving)
    for bad in ({"batch_wait_iters": -1}, {"batch_wait_tokens_ratio": 1.5}, {"batch_wait_iters": "many"}):
        with pytest.raises(SimcoreError, match="batch_wait"):
            serving_run(CLOSED, {"engine": "trtllm", **bad})
