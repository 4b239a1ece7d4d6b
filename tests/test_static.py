"""Static-batch runs: physics bounds, KV traffic totals, sampling error, determinism, overlap."""

import numpy as np
import pytest

from simcore.run.static import simulate
from simcore.ops.kv import kv_bytes_per_token
from simcore.ops.linears import total_params
from tests.helpers import make_run

H100_BW, H100_BF16 = 3350e9, 989.4e12


def test_decode_step_is_bounded_below_by_weight_streaming():
    run = make_run("llama-3.1-8b", batch=1, prompt=128, output=4)
    res = simulate(run)
    weights = res.memory.weights - run.model.vocab * run.model.hidden * 2  # the embedding table is gathered, not read
    floor = weights / H100_BW
    assert res.step_times[0] > floor
    assert res.step_times[0] < 1.5 * floor


def test_prefill_is_bounded_below_by_flops_over_peak():
    run = make_run("llama-3.1-8b", batch=1, prompt=8192, output=2)
    res = simulate(run)
    flops = sum(op.op.flops for w in res.prefill.stages for op in w.ops)
    assert flops > 2 * total_params(run.model) * 8192 * 0.9  # weights x tokens, plus attention
    assert res.ttft > flops / H100_BF16


def test_kv_traffic_totals_match_the_closed_form():
    b, s, n = 2, 100, 9
    run = make_run("llama-3.1-8b", batch=b, prompt=s, output=n, engine={"decode_sample_steps": 3})
    res = simulate(run)
    per_token = kv_bytes_per_token(run.model, "bf16")
    assert res.kv_written_per_rank == pytest.approx(b * (s + n - 1) * per_token)
    # decode step i reads the s + i tokens cached after its own store
    assert res.kv_read_per_rank == pytest.approx(sum(b * (s + i) * per_token for i in range(1, n)))


def test_sampled_decode_within_one_percent_of_every_step():
    for model, prompt, output in (("llama-3.1-8b", 512, 400), ("mistral-7b", 3900, 400)):
        full = simulate(make_run(model, batch=8, prompt=prompt, output=output, engine={"decode_sample_steps": 0}))
        sampled = simulate(make_run(model, batch=8, prompt=prompt, output=output, engine={"decode_sample_steps": 8}))
        assert len(sampled.sampled_steps) < 16 < len(full.sampled_steps)
        assert sampled.e2e == pytest.approx(full.e2e, rel=0.01)
        assert sampled.kv_read_per_rank == pytest.approx(full.kv_read_per_rank, rel=0.01)


def test_sliding_window_flattens_decode_step_growth():
    res = simulate(make_run("mistral-7b", batch=8, prompt=4000, output=300, engine={"decode_sample_steps": 0}))
    steps = res.step_times
    assert steps[200] == pytest.approx(steps[-1])  # past the 4096 window the fetch stops growing
    assert steps[0] < steps[200]


def test_runs_are_deterministic():
    a = simulate(make_run("mixtral-8x7b", batch=4, prompt=256, output=16, parallelism={"tp": 2, "dp": 2, "ep": 4}))
    b = simulate(make_run("mixtral-8x7b", batch=4, prompt=256, output=16, parallelism={"tp": 2, "dp": 2, "ep": 4}))
    assert a.e2e == b.e2e and np.array_equal(a.step_times, b.step_times)


def test_fetch_overlap_never_slows_and_hides_more_from_a_host_tier():
    base = dict(model="llama-3.1-8b", batch=32, prompt=4096, output=4)
    t = {}
    for tier in ("hbm", "host"):
        for overlap in (False, True):
            res = simulate(make_run(**base, inference={"kvcache_type": tier, "kvcache_fetch_overlap": overlap}))
            t[tier, overlap] = res.step_times[0]
    assert t["hbm", True] <= t["hbm", False]
    assert t["host", True] < t["host", False]
    assert t["host", False] > t["hbm", False]  # PCIe is slower than HBM


def test_pipeline_adds_stage_transfers_and_micro_batches_fill_it():
    one = simulate(make_run("llama-3.1-8b", batch=4, prompt=512, output=4))
    two = simulate(make_run("llama-3.1-8b", batch=4, prompt=512, output=4, parallelism={"pp": 2},
                            engine={"micro_batches": 1}))
    assert two.ttft > one.ttft  # one batch walks both stages in turn, plus the send
    assert two.ttft == pytest.approx(one.ttft, rel=0.05)
    assert two.memory.weights < one.memory.weights
    piped = simulate(make_run("llama-3.1-8b", batch=4, prompt=512, output=4, parallelism={"pp": 2}))
    assert piped.ttft < 0.8 * one.ttft  # two micro-batches keep both stages busy
    assert piped.prefill.bubble > 0


def test_tensor_parallel_speeds_up_decode():
    one = simulate(make_run("llama-3.1-70b", batch=8, prompt=512, output=4, parallelism={"tp": 2}))
    eight = simulate(make_run("llama-3.1-70b", batch=8, prompt=512, output=4, parallelism={"tp": 8}))
    assert eight.step_times[0] < one.step_times[0] / 2


def test_without_cuda_graphs_small_batches_become_host_bound():
    graphs = simulate(make_run("llama-3.2-1b", batch=1, prompt=32, output=4))
    eager = simulate(make_run("llama-3.2-1b", batch=1, prompt=32, output=4,
                              engine={"cuda_graphs": False, "kernel_launch_us": 20.0}))
    kernels = sum(1 for op in eager.decode_first.stages[0].ops if op.op.kernel)
    assert eager.step_times[0] == pytest.approx(kernels * 20e-6)
    assert graphs.step_times[0] < eager.step_times[0]
    big = dict(model="llama-3.1-8b", batch=64, prompt=2048, output=2)  # GPU-bound: launches hide behind work
    assert simulate(make_run(**big, engine={"cuda_graphs": False})).ttft == simulate(make_run(**big)).ttft


def test_a_host_cache_must_fit_in_host_memory():
    from simcore.errors import SimcoreError

    # 512 sequences x 60k tokens x 128 KiB per token = 3.7 TiB of cache; the HGX node has 2 TiB of DRAM
    run = make_run("llama-3.1-8b", batch=512, prompt=60000, output=4, inference={"kvcache_type": "host"})
    with pytest.raises(SimcoreError, match="host memory"):
        simulate(run)
