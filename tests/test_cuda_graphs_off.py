"""engine.cuda_graphs false under a serving engine profile (TensorRT-LLM cuda_graph_config: null; docs/serving.md
"Steps without a CUDA graph"): no step replays a graph, so a decode-only step is launched op by op too: it takes at
least layers x the profile's eager floor, runs at its own batch size (nothing to pad to) and no padding request holds
a slot. The same holds for a decode batch above the largest captured size. Hand-computed on a 3-layer model; the
per-kernel launch time of engine.cuda_graphs false is zeroed where a test isolates the floor or the padding."""

from __future__ import annotations

import pytest

from simcore.errors import SimcoreError
from simcore.serving.engines import resolve as resolve_engine
from tests.test_moe_prompt_step import _cost, tiny_moe  # noqa: F401  (fixture)
from tests.test_serving import serving_run
from tests.test_serving_engines import ONE

NO_GRAPHS = {"cuda_graphs": False, "kernel_launch_us": 0.0}


def test_a_decode_step_takes_the_eager_floor(tiny_moe, monkeypatch):  # noqa: F811
    # 3 layers x 5 ms = 15 ms, far above the kernels of 4 decodes on this model: the step is the floor
    cost = _cost(tiny_moe, {"engine": "trtllm", "eager_layer_us": 5000.0}, monkeypatch, engine=NO_GRAPHS)
    assert cost.max_graph == 0 and cost.eager_floor == pytest.approx(15e-3, rel=1e-12)
    assert cost.gpu_time(4, 100.0, 0, 0, 0.0) < 15e-3
    assert cost.time(4, 100.0, 0, 0, 0.0) == pytest.approx(15e-3, rel=1e-12)
    # with graphs (the default) the same step is its kernels only, never the floor
    on = _cost(tiny_moe, {"engine": "trtllm", "eager_layer_us": 5000.0}, monkeypatch)
    assert on.max_graph == 128 and on.time(4, 100.0, 0, 0, 0.0) < 15e-3


def test_a_decode_batch_above_the_largest_graph_takes_the_eager_floor(tiny_moe, monkeypatch):  # noqa: F811
    # TensorRT-LLM captures decode graphs up to 128 by default: 128 decodes replay theirs, 129 launch op by op
    # (_maybe_get_cuda_graph: no graph for the size, none to pad to) and take 3 layers x 5 ms
    on = _cost(tiny_moe, {"engine": "trtllm", "eager_layer_us": 5000.0}, monkeypatch)
    assert on.time(128, 100.0, 0, 0, 0.0) < 15e-3
    assert on.gpu_time(129, 100.0, 0, 0, 0.0) < 15e-3
    assert on.time(129, 100.0, 0, 0, 0.0) >= 15e-3
    assert on.time(129, 100.0, 0, 0, 0.0) == pytest.approx(on.host.step(15e-3, 129, 129), rel=1e-12)
    # graphs up to 256 (serving.cuda_graph_batch_sizes): 129 is padded to 256 and replays it, no floor
    wide = _cost(tiny_moe, {"engine": "trtllm", "eager_layer_us": 5000.0, "cuda_graph_batch_sizes": [128, 256]},
                 monkeypatch)
    assert wide.time(129, 100.0, 0, 0, 0.0) < 15e-3


def test_no_graph_means_no_padding(tiny_moe, monkeypatch):  # noqa: F811
    # a tiny floor (3 x 1 us) leaves the kernels in charge: 5 decodes run as 5 rows, not the graph of 8
    off = _cost(tiny_moe, {"engine": "trtllm", "eager_layer_us": 1.0}, monkeypatch, engine=NO_GRAPHS)
    on = _cost(tiny_moe, {"engine": "trtllm", "eager_layer_us": 1.0}, monkeypatch)
    assert off.time(5, 100.0, 0, 0, 0.0) == pytest.approx(off.gpu_time(5, 100.0, 0, 0, 0.0), rel=1e-12)
    # the default sizes 1, 2, 4, 8, ...: 5 decodes replay the graph of 8, the padding rows holding no context
    assert on.time(5, 100.0, 0, 0, 0.0) == pytest.approx(on.gpu_time(8, 100.0 * 5 / 8, 0, 0, 0.0), rel=1e-12)
    assert off.time(5, 100.0, 0, 0, 0.0) < on.time(5, 100.0, 0, 0, 0.0)
    # TensorRT-LLM's padding request holds one of 48 slots when a batch is padded; with no graphs none exists
    for engine, seqs in (({}, 47), (NO_GRAPHS, 48)):
        run = serving_run(ONE, {"engine": "trtllm", "max_num_seqs": 48}, model=tiny_moe, engine=engine)
        assert resolve_engine(run, run.experiment.serving)[1].max_num_seqs == seqs


def test_prompt_steps_keep_their_floor(tiny_moe, monkeypatch):  # noqa: F811
    cost = _cost(tiny_moe, {"engine": "trtllm", "eager_layer_us": 5000.0}, monkeypatch, engine=NO_GRAPHS)
    assert cost.time(2, 100.0, 1, 16, 0.0) == pytest.approx(15e-3, rel=1e-12)


def test_an_engine_without_a_floor_keeps_the_kernel_launches(tiny_moe, monkeypatch):  # noqa: F811
    # vLLM has no fitted eager floor: its graph-less decode step is priced by engine.kernel_launch_us per kernel
    # (a pass takes at least kernels x launch), never by its kernels alone
    fast = _cost(tiny_moe, {"engine": "vllm"}, monkeypatch, engine={"cuda_graphs": False, "kernel_launch_us": 0.0})
    slow = _cost(tiny_moe, {"engine": "vllm"}, monkeypatch, engine={"cuda_graphs": False, "kernel_launch_us": 400.0})
    assert fast.max_graph == slow.max_graph == 0 and fast.eager_floor == slow.eager_floor == 0.0
    assert slow.time(4, 100.0, 0, 0, 0.0) > fast.time(4, 100.0, 0, 0, 0.0)


def test_graph_sizes_with_no_graphs_is_one_line(tiny_moe):  # noqa: F811
    with pytest.raises(SimcoreError, match=r"serving.cuda_graph_batch_sizes: \[1, 2\]: set with engine.cuda_graphs "
                                           r"false") as e:
        run = serving_run(ONE, {"engine": "trtllm", "cuda_graph_batch_sizes": [1, 2]}, model=tiny_moe,
                          engine=NO_GRAPHS)
        resolve_engine(run, run.experiment.serving)
    assert "\n" not in str(e.value)
    with pytest.raises(SimcoreError, match="cuda_graphs"):  # serving has no such field: engine.cuda_graphs is the one
        serving_run(ONE, {"engine": "trtllm", "cuda_graphs": False}, model=tiny_moe)
