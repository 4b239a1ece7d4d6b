"""TensorRT-LLM step mechanics (issue 11, docs/validation-log.md "Round 7"): which decode batches are padded to a CUDA
graph (and so whether the padding request holds a slot), the deployment's own graph sizes, and the host floor of a
step with prefill tokens, which runs without a CUDA graph. Hand-computed values on small cases."""

from __future__ import annotations

import pytest

from simcore.errors import SimcoreError
from simcore.serving.cost import IterationCost
from simcore.serving.engines import get_profile, pads, resolve as resolve_engine
from tests.test_serving import serving_run
from tests.test_serving_engines import ONE


def test_a_batch_is_padded_only_below_the_largest_graph_within_the_limit():
    assert pads(8, (1, 2, 4, 8, 16))  # 3, 5, 6, 7 have no graph and 8 <= 8 does
    assert pads(4, (1, 2, 4))  # 3 runs as 4
    assert not pads(3, (1, 2, 4, 8))  # 3 would pad to 4 > max_batch_size 3: TensorRT-LLM runs it unpadded
    assert not pads(8, tuple(range(1, 9)))  # every size has its own graph
    assert not pads(2, (1, 2)) and not pads(1, (1,))
    assert pads(16, tuple(range(1, 9)) + (16,))  # 9..15 pad to 16


@pytest.mark.parametrize("sizes, slots", [
    (None, 15),  # the profile's graphs (1, 2, 4, 8, 16, ...): a padded batch's request holds one of 16
    (list(range(1, 17)), 16),  # a graph per size: nothing is padded, no request is held
    (list(range(1, 9)) + [16], 15),
    ([16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 15], 16),  # order and repeats do not matter
])
def test_the_padding_request_holds_a_slot_only_where_batches_are_padded(sizes, slots):
    serving = {"engine": "trtllm", "max_num_seqs": 16}
    if sizes is not None:
        serving["cuda_graph_batch_sizes"] = sizes
    run = serving_run(ONE, serving)
    _, cfg, prof = resolve_engine(run, run.experiment.serving)
    assert cfg.max_num_seqs == slots
    if sizes is not None:
        assert prof.capture_sizes == tuple(sorted(set(sizes)))  # decode steps replay these graphs


def test_graph_sizes_need_an_engine_and_positive_sizes():
    with pytest.raises(SimcoreError, match="cuda_graph_batch_sizes.*needs serving.engine") as e:
        run = serving_run(ONE, {"cuda_graph_batch_sizes": [1, 2]})
        resolve_engine(run, run.experiment.serving)
    assert "\n" not in str(e.value)
    for bad in ([0, 1], [], [1, 2.5]):
        with pytest.raises(SimcoreError, match="cuda_graph_batch_sizes"):
            serving_run(ONE, {"engine": "trtllm", "cuda_graph_batch_sizes": bad})


def _pricer(engine: str, monkeypatch) -> IterationCost:
    from simcore.serving.engines import host_fit

    # host terms zeroed; the fitted eager floor (eager_layer_us) kept
    monkeypatch.setitem(host_fit.HOST, engine, {**host_fit.HOST[engine], "const_us": 0.0, "per_request_us": 0.0,
                                                "per_token_us": 0.0})
    run = serving_run(ONE, {"engine": engine})
    run, _, prof = resolve_engine(run, run.experiment.serving)
    return IterationCost(run, prof)


def test_a_step_with_prefill_tokens_takes_at_least_the_eager_host_floor(monkeypatch):
    """TensorRT-LLM launches a prompt step op by op: its step takes at least layers x the fitted floor per layer
    (host_fit.py eager_layer_us, 600 us); a decode-only step replays its graph; serving.eager_layer_us overrides."""
    cost = _pricer("trtllm", monkeypatch)
    floor = 32 * 600e-6  # Llama-3.1-8B: 32 layers
    assert cost.eager_floor == pytest.approx(floor)
    assert cost.gpu_time(0, 0.0, 1, 16, 0.0) < floor / 2
    assert cost.time(0, 0.0, 1, 16, 0.0) == pytest.approx(floor, rel=1e-12)  # host terms zeroed: the floor
    assert cost.time(4, 100.0, 1, 16, 0.0) == pytest.approx(floor, rel=1e-12)
    assert cost.time(4, 100.0, 0, 0, 0.0) == pytest.approx(cost.gpu_time(4, 100.0, 0, 0, 0.0), rel=1e-12)
    big = cost.gpu_time(0, 0.0, 1, 8192, 0.0)  # a prompt whose kernels outlast the floor: the kernels alone
    assert big > floor and cost.time(0, 0.0, 1, 8192, 0.0) == pytest.approx(big, rel=1e-12)
    from simcore.serving.engines import host_fit

    monkeypatch.setitem(host_fit.HOST, "trtllm", {"const_us": 0.0, "per_request_us": 0.0, "per_token_us": 0.0})
    run = serving_run(ONE, {"engine": "trtllm", "eager_layer_us": 100.0})
    run, _, prof = resolve_engine(run, run.experiment.serving)
    assert IterationCost(run, prof).eager_floor == pytest.approx(32 * 100e-6)


def test_engines_that_graph_mixed_steps_have_no_eager_floor(monkeypatch):
    for engine in ("vllm", "sglang"):
        cost = _pricer(engine, monkeypatch)
        assert cost.eager_floor == 0.0
        assert cost.time(0, 0.0, 1, 16, 0.0) == pytest.approx(cost.gpu_time(0, 0.0, 1, 16, 0.0), rel=1e-12)
    with pytest.raises(SimcoreError, match="serving.eager_layer_us.*needs serving.engine") as e:
        run = serving_run(ONE, {"eager_layer_us": 100.0})
        resolve_engine(run, run.experiment.serving)
    assert "\n" not in str(e.value)
    with pytest.raises(SimcoreError, match="eager_layer_us"):
        serving_run(ONE, {"engine": "trtllm", "eager_layer_us": -1})
