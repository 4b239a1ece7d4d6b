"""Engine start-up memory (simcore/memory/): weights as stored, the profile-run peak as live tensor
sets, each engine's KV budget, against hand-derived values and logged vLLM start-ups."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from simcore.config.hardware import GIB
from simcore.errors import SimcoreError
from simcore.memory import engine_memory, kv_budget, vllm_defaults
from simcore.memory.activations import CUBLAS_WORKSPACE, sampler_peak
from simcore.memory.engines import (CUDA_CONTEXT, NCCL_GROUP, NON_TORCH_BASE, kv_cache_groups,
                                    sglang_default_fraction)
from simcore.memory.weights import linear_bytes, stage_weight_bytes
from simcore.ops.linears import Linear
from simcore.planner.capacity import build_run

LOGS = json.loads((Path(__file__).parent / "data" / "vllm_startup_logs.json").read_text())["rows"]
COMPONENTS = {"weights": "weights", "activation": "activation", "non_torch": "non_torch", "cudagraph": "cudagraph",
              "kv": "kv_bytes"}


def predict(row: dict):
    run = build_run(row["catalog_model"], row["gpu"], row["tp"], gpu_mem_util=row["flags"].get("gpu_memory_utilization", 0.9))
    if row.get("moe_kernel"):  # the MoE kernel the logged server ran (engine.moe_kernel)
        engine = run.experiment.engine.model_copy(update={"moe_kernel": row["moe_kernel"]})
        run = dataclasses.replace(run, experiment=run.experiment.model_copy(update={"engine": engine}))
    return engine_memory(run, row.get("engine", "vllm"), **row["flags"])


@pytest.mark.parametrize("row", LOGS, ids=lambda r: f"{r['model']}-tp{r['tp']}-{r['source'][-6:]}")
def test_logged_vllm_startups_within_half_a_gib_and_kv_within_3_percent(row):
    mem = predict(row)
    for name in row["compare"]:
        got = getattr(mem, COMPONENTS[name]) / GIB
        if name == "kv":
            assert got == pytest.approx(row["kv"], rel=0.03), (name, got, row["kv"])
        else:
            assert abs(got - row[name]) <= 0.5, (name, got, row[name])


def test_qwen3_32b_tp1_kv_is_the_logged_4_45_gib_by_hand():
    """Every term by hand: 0.9 x 79.2 GiB, bf16 weights + rope table, the sampler sort over 1024 x 151936
    logits (38 B an element) with the forward's output and the sampled rows alive, cuBLAS's workspace,
    and the tp-1 non-torch term."""
    run = build_run("qwen3-32b", "h100-sxm", 1)
    mem = engine_memory(run, "vllm", gpu_memory_utilization=0.9, block_size=128)
    weights = stage_weight_bytes(run, 0) + 40960 * 128 * 2
    act = 38 * 1024 * 151936 + (8192 + 1024) * 5120 * 2 + CUBLAS_WORKSPACE
    kv = 0.9 * 79.2 * GIB - weights - act - NON_TORCH_BASE
    assert (mem.weights, mem.activation, mem.kv_bytes) == pytest.approx((weights, act, kv))
    assert mem.kv_bytes / GIB == pytest.approx(4.45, rel=0.03)
    per_block = 128 * 64 * 2 * 8 * 128 * 2  # 128 tokens x 64 layers x (K+V) x 8 heads x 128 x bf16
    assert mem.num_blocks == math.floor(kv / per_block) and mem.kv_tokens == 128 * mem.num_blocks
    assert any(line.startswith("Available KV cache memory: ") for line in mem.log)


def test_sampler_peak_is_the_sort_and_does_not_shrink_with_tp():
    peak, where = sampler_peak(1024, 128256)
    assert peak == 38 * 1024 * 128256 and where.startswith("sort")
    assert sampler_peak(1024, 128256, tp=4)[0] == peak  # logits are gathered to full vocabulary on every rank


def test_forward_dominates_when_the_batch_is_long_and_the_vocabulary_sampled_rarely():
    run = build_run("llama-3.1-8b", "h100-sxm", 1)
    mem = engine_memory(run, "vllm", max_num_batched_tokens=65536, max_num_seqs=1)
    act_and_mul = 65536 * (2 * 14336 + 14336) * 2  # the largest op: SiLU-and-multiply, gate/up in, product out
    assert mem.activation == pytest.approx(act_and_mul + 65536 * 4096 * 2 + CUBLAS_WORKSPACE)  # + residual


def test_quantized_weights_as_stored():
    # fp8 with 128 x 128 blocks: one fp32 scale per block
    assert linear_bytes(Linear("x", 256, 384, "fp8"), block=(128, 128)) == 256 * 384 + 4 * 2 * 3
    # a 16-bit checkpoint quantized on load: one per-tensor scale (not counted)
    assert linear_bytes(Linear("x", 256, 384, "fp8"), fp8_scales=False) == 256 * 384
    # 4-bit AWQ/GPTQ: fp16 scale + 4-bit zero per 128 inputs and output channel
    assert linear_bytes(Linear("x", 256, 10, "int4")) == 256 * 10 * 0.5 + 10 * 2 * 2.5
    # MXFP4 experts padded to 256 in the intermediate dimension; bf16 biases
    up = Linear("experts_gate_up", 64, 200, "mxfp4", experts=2, bias=True, routed=True)
    assert linear_bytes(up, expert_align=256) == 2 * 64 * 512 * 4.25 / 8 + 2 * 512 * 2
    down = Linear("experts_down", 100, 64, "mxfp4", experts=2, routed=True)
    assert linear_bytes(down, expert_align=256) == 2 * 256 * 64 * 4.25 / 8


def test_gpt_oss_120b_weights_are_what_vllm_logs_not_the_checkpoint_size():
    run = build_run("gpt-oss-120b", "h100-sxm", 1)
    assert stage_weight_bytes(run, 0) / GIB == pytest.approx(60.7, abs=0.1)  # as stored on disk
    assert engine_memory(run, "vllm").weights / GIB == pytest.approx(64.4, abs=0.25)  # vLLM's padded layout


def test_hybrid_sliding_and_full_models_get_one_kv_group_per_kind():
    assert kv_cache_groups(build_run("gpt-oss-20b", "h100-sxm", 1)) == 2
    assert kv_cache_groups(build_run("llama-3.1-8b", "h100-sxm", 1)) == 1


def test_non_torch_grows_with_each_nccl_group_and_cudagraphs_go_with_eager():
    one, two = (engine_memory(build_run("qwen3-32b", "h100-sxm", tp), "vllm") for tp in (1, 2))
    assert two.non_torch - one.non_torch == pytest.approx(NCCL_GROUP)
    run = build_run("llama-3.1-8b", "h100-sxm", 1)
    graphs, eager = engine_memory(run, "vllm"), engine_memory(run, "vllm", enforce_eager=True)
    assert eager.cudagraph == 0 and graphs.cudagraph != 0
    assert eager.kv_bytes == graphs.kv_bytes  # v0.11 captures graphs after sizing the cache


def test_vllm_defaults_follow_the_gpu():
    assert vllm_defaults(build_run("llama-3.1-8b", "h100-sxm", 1).system.gpu) == (8192, 1024)
    assert vllm_defaults(build_run("llama-3.1-8b", "a100-80gb-sxm", 1).system.gpu) == (2048, 256)


def test_sglang_static_pool_is_mem_fraction_static_of_free_memory():
    run = build_run("llama-3.1-8b", "h100-sxm", 1)
    # 79.2 GiB in MB; reserve 512 + 8192 x 1.5 + 256 x 2 + 1/8 x 1024 = 13440 MB
    assert sglang_default_fraction(run, 8192, 256) == round((79.2 * 1024 - 13440) / (79.2 * 1024), 3) == 0.834
    mem = engine_memory(run, "sglang")
    free = 79.2 * GIB - CUDA_CONTEXT - NON_TORCH_BASE
    assert mem.weights + mem.kv_bytes == pytest.approx(free * 0.834)
    assert engine_memory(run, "sglang", mem_fraction_static=0.5).kv_bytes < mem.kv_bytes
    # a GPU above 60 GiB keeps at least 10 GiB: 512 + 2048 x 1.5 + 8 x 2 + 128 = 3,728 MB is raised to 10,240
    assert sglang_default_fraction(run, 2048, 8) == round((79.2 * 1024 - 10240) / (79.2 * 1024), 3) == 0.874
    # ... but not on a 40 GB GPU: 39.4 GiB = 40,345.6 MB keeps its 3,728 MB reserve
    assert sglang_default_fraction(build_run("llama-3.1-8b", "a100-40gb", 1), 2048, 8) == \
        round((39.4 * 1024 - 3728) / (39.4 * 1024), 3) == 0.908


def test_trtllm_kv_is_a_fraction_of_what_is_free_after_weights_and_activations():
    run = build_run("llama-3.1-8b", "h100-sxm", 1)
    mem = engine_memory(run, "trtllm")
    free = 79.2 * GIB - CUDA_CONTEXT - mem.weights - mem.activation - mem.non_torch
    assert mem.kv_bytes == pytest.approx(0.9 * free)
    assert mem.num_blocks == math.floor(mem.kv_bytes / (32 * 131072))  # 32-token blocks


def test_unknown_engine_is_one_line_with_the_allowed_names(cli):
    with pytest.raises(SimcoreError, match="engine = 'vlm': allowed vllm, sglang, trtllm"):
        engine_memory(build_run("llama-3.1-8b", "h100-sxm", 1), "vlm")
    rc, out, err = cli("plan", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--engine", "vlm")
    assert rc == 2 and err.count("\n") == 1 and "allowed vllm, sglang, trtllm" in err


def test_plan_cli_prints_the_engine_log_lines_and_takes_vllm_flags(cli):
    rc, out, err = cli("plan", "--model", "qwen3-32b", "--gpu", "h100-sxm", "--engine", "vllm",
                       "--gpu-memory-utilization", "0.9", "--block-size", "128", "--max-model-len", "16000",
                       "--max-num-seqs", "1024", "--max-num-batched-tokens", "8192", "--kv-cache-dtype", "auto")
    assert rc == 0 and err == ""
    line = next(x for x in out.splitlines() if x.startswith("Available KV cache memory: "))
    assert float(line.split(": ")[1].split()[0]) == pytest.approx(4.45, rel=0.03)
    assert "for CUDAGraph memory" in out and "GPU KV cache size:" in out
    rc, out, _ = cli("plan", "--model", "qwen3-32b", "--gpu", "h100-sxm", "--gpu-mem-util", "0.9", "--enforce-eager",
                     "--json")
    assert rc == 0 and json.loads(out)["engine_memory"]["cudagraph_bytes"] == 0


def test_kv_budget_is_engine_memory():
    run = build_run("qwen3-32b", "h100-sxm", 2)
    b = kv_budget(run, 8192, 256, 16)
    mem = engine_memory(run, "vllm", max_num_seqs=256)
    assert b.blocks() == mem.num_blocks and b.kv_capacity == mem.kv_bytes and b.overhead == mem.non_torch


def _serve(util: float):
    from simcore.config.experiment import experiment_from_dict, resolve
    from simcore.serving.simulate import simulate

    wl = {"kind": "requests", "requests": 96, "seed": 0, "arrival": {"process": "closed", "concurrency": 32},
          "prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 512}}
    run = resolve(experiment_from_dict({"model": "llama-3.1-8b", "hardware": "h100-sxm", "workload": wl,
                                        "engine": {"gpu_memory_utilization": util}}))
    return run, simulate(run)


def test_serving_blocks_come_from_engine_memory_and_preemptions_move_with_them():
    """32 clients of 512 + 512 tokens need 32 x 64 = 2,048 blocks of 16 at once. A replica whose vLLM budget
    holds fewer must preempt; one that holds them all never does; more blocks, fewer preemptions."""
    counts = {}
    for util in (0.225, 0.23, 0.26):
        run, res = _serve(util)
        blocks = engine_memory(run, "vllm", gpu_memory_utilization=util, max_num_seqs=256).num_blocks
        assert res.replicas[0].pool.capacity == blocks
        counts[util] = (blocks, res.summary["preemptions"])
    (b1, p1), (b2, p2), (b3, p3) = counts.values()
    assert b1 < b2 < 2048 * 1.01 < b3  # the watermark keeps 1% of the blocks free
    assert p1 > p2 > 0 and p3 == 0


def test_enforce_eager_is_refused_for_engines_without_it(cli):
    rc, _, err = cli("plan", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--engine", "sglang", "--enforce-eager")
    assert rc == 2 and err.count("\n") == 1 and "a vLLM flag" in err


@pytest.mark.parametrize("engine, flags, says", [
    ("vllm", {"block_size": 0}, "block_size = 0: must be a whole number >= 1"),
    ("vllm", {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization = 1.5: must be a number in (0, 1]"),
    ("sglang", {"gpu_memory_utilization": 0.9}, "not a sglang flag; allowed mem_fraction_static"),
    ("trtllm", {"max_num_tokens": 2.5}, "max_num_tokens = 2.5: must be a whole number >= 1"),
])
def test_bad_engine_flags_are_one_line_errors(engine, flags, says):
    with pytest.raises(SimcoreError) as exc:
        engine_memory(build_run("llama-3.1-8b", "h100-sxm", 1), engine, **flags)
    assert says in str(exc.value) and "\n" not in str(exc.value)
