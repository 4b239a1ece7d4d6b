"""Replica.coast (plain decode steps back to back) gives exactly the run of one step() per loop turn."""

from __future__ import annotations

import numpy as np
import pytest

from simcore.serving.replica import Replica
from simcore.serving.simulate import simulate
from test_serving import RANDOM_WORKLOADS, check_invariants, serving_run

TIGHT = {"gpu_memory_utilization": 0.25}  # 8B on one H100: ~1100 blocks of 16 tokens, so decodes preempt
PREEMPTING = {"requests": 60, "arrival": {"process": "closed", "concurrency": 32},
              "prompt_tokens": {"value": 1500}, "output_tokens": {"value": 600}}


def outputs(run, tmp_path, name):
    csv = tmp_path / f"{name}.csv"
    res = simulate(run, csv_path=csv, keep_series=True)
    if run.experiment.serving.max_time_s is None:  # stopped runs leave requests holding blocks
        check_invariants(res)
    s = {k: v for k, v in res.summary.items() if k != "wall_s"}
    m = res.metrics
    return s, csv.read_text(), m.first_token.copy(), m.finish.copy(), list(m.series)


def stepwise(monkeypatch):
    """Count the iterations coast() books itself; the second run takes one step() per loop turn instead."""
    coasted = [0]
    real = Replica.coast

    def counting(self, until, limit, other):
        before = self.iterations
        out = real(self, until, limit, other)
        coasted[0] += self.iterations - before - 1  # the last one may be a step() of its own
        return out

    monkeypatch.setattr(Replica, "coast", counting)
    return coasted


CASES = [
    (RANDOM_WORKLOADS[0], {}, {}),
    (RANDOM_WORKLOADS[1], {"prefix_caching": True}, {}),
    (RANDOM_WORKLOADS[2], {"scheduler": "sglang"}, {}),
    (RANDOM_WORKLOADS[3], {"engine": "trtllm"}, {}),
    (RANDOM_WORKLOADS[0], {"engine": "sglang", "router": "least_outstanding"}, {"parallelism": {"dp": 2}}),
    (RANDOM_WORKLOADS[2], {"engine": "vllm"}, {"speculative": {"method": "eagle", "k": 2, "acceptance": 0.7}}),
    (PREEMPTING, {}, {"engine": TIGHT}),
    (PREEMPTING, {"scheduler": "sglang", "prefix_caching": True}, {"engine": TIGHT}),
    (RANDOM_WORKLOADS[0], {"max_time_s": 1.5}, {}),
    (RANDOM_WORKLOADS[1], {"scheduler": "sarathi"}, {}),
    (RANDOM_WORKLOADS[3], {"scheduler": "prefill_first", "max_num_seqs": 8}, {}),
    (RANDOM_WORKLOADS[0], {"scheduler": "static", "max_num_seqs": 16}, {}),
    (PREEMPTING, {"scheduler": "trtllm"}, {"engine": TIGHT}),
]


@pytest.mark.parametrize("wl,serving,extra", CASES)
def test_coasting_is_exactly_one_step_at_a_time(wl, serving, extra, monkeypatch, tmp_path):
    run = serving_run(wl, serving, **extra)
    coasted = stepwise(monkeypatch)
    fast = outputs(run, tmp_path, "coast")
    assert coasted[0] > 0  # the case does run plain decode steps back to back
    monkeypatch.setattr(Replica, "coast", lambda self, until, limit, other: self.step())
    slow = outputs(run, tmp_path, "step")
    assert fast[0] == slow[0]  # summaries, bit for bit
    assert fast[1] == slow[1]  # the per-request CSV, byte for byte
    for a, b in zip(fast[2:4], slow[2:4]):
        assert np.array_equal(a, b, equal_nan=True)
    assert fast[4] == slow[4]  # the time series sampled every iteration


def test_a_traced_or_pipelined_replica_does_not_coast(monkeypatch):
    from simcore.report.serving_trace import SpanLog

    calls = []
    monkeypatch.setattr(Replica, "coast", lambda self, *a: calls.append(1) or self.step())
    simulate(serving_run(RANDOM_WORKLOADS[0], {}), spans=SpanLog())
    simulate(serving_run(RANDOM_WORKLOADS[0], {}, model="llama-3.1-70b", parallelism={"tp": 2, "pp": 2}))
    assert calls == []
