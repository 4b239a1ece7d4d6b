"""engine.moe_kernel: MXFP4 experts in vLLM's Marlin MoE layout (ops/weight_format.py, docs/cost-model.md)."""

import pytest

from simcore.errors import SimcoreError
from simcore.memory.weights import stage_weight_bytes
from simcore.ops.builder import StageBuilder
from simcore.ops.linears import Sharding, mlp_linears
from simcore.ops.op import nbytes
from simcore.ops.passes import Batch, Group
from simcore.ops.weight_format import marlin_expert_dims, marlin_moe
from tests.helpers import make_run

# gpt-oss-120b: hidden 2880, expert intermediate 2880, 128 experts, top 4, 36 layers, MXFP4 experts
H, I, E, K, L = 2880, 2880, 128, 4, 36
MXFP4 = 4.25 / 8  # bytes a weight: 4-bit values and one 8-bit scale per 32


def experts(run):
    ops = StageBuilder(run, 0).ops(Batch((Group("prefill", 1, 64, 0),), emitting=1))
    return {op.name: op for op in ops if op.layer == 0 and op.name.startswith("experts_")}


def test_dims_round_hidden_to_256_and_the_gpus_intermediate_slice_to_128():
    assert marlin_expert_dims(2880, 2880) == (3072, 2944)  # tp 1: 22.5 x 128 -> 23 x 128
    assert marlin_expert_dims(2880, 1440) == (3072, 1536)  # tp 2
    assert marlin_expert_dims(2880, 360) == (3072, 384)  # tp 8
    assert marlin_expert_dims(4096, 1536) == (4096, 1536)  # already aligned: unchanged


def test_linears_pad_only_the_routed_mxfp4_experts():
    run = make_run("gpt-oss-120b", parallelism={"tp": 8})
    by = {l.name: l for l in mlp_linears(run.model, 0, Sharding(tp=8), "bf16", "mxfp4", marlin=True)}
    assert (by["experts_gate_up"].k, by["experts_gate_up"].n) == (3072, 2 * 384)
    assert (by["experts_down"].k, by["experts_down"].n) == (384, 3072)
    assert (by["router"].k, by["router"].n) == (H, E)  # the router reads the unpadded hidden state
    plain = {l.name: l for l in mlp_linears(run.model, 0, Sharding(tp=8), "bf16", "bf16", marlin=True)}
    assert (plain["experts_down"].k, plain["experts_down"].n) == (360, H)  # bf16 experts: no Marlin layout


def test_marlin_gemms_compute_and_stream_the_padded_experts():
    # tp 8, one 64-token prompt: 256 routed rows over the 8 GPUs' slices of every expert (ep 1)
    base = experts(make_run("gpt-oss-120b", parallelism={"tp": 8}))
    marlin = experts(make_run("gpt-oss-120b", parallelism={"tp": 8}, engine={"moe_kernel": "marlin"}))
    rows = 64 * K
    assert base["experts_gate_up"].flops == pytest.approx(2 * rows * H * 2 * 360)
    assert marlin["experts_gate_up"].flops == pytest.approx(2 * rows * 3072 * 2 * 384)  # 1,207,959,552
    assert marlin["experts_down"].flops == pytest.approx(2 * rows * 384 * 3072)
    # the same experts are read, each one (3072 x 768 + 384 x 3072) / (2880 x 720 + 360 x 2880) = 1.1378 larger
    for name, (k, n), (k0, n0) in (("experts_gate_up", (3072, 768), (H, 720)), ("experts_down", (384, 3072), (360, H))):
        active = base[name].weight_bytes / (k0 * n0 * MXFP4)
        assert marlin[name].weight_bytes == pytest.approx(active * k * n * MXFP4)
    ratio = marlin["experts_gate_up"].weight_bytes / base["experts_gate_up"].weight_bytes
    assert ratio == pytest.approx(3072 * 768 / (2880 * 720))  # 1.13778
    assert marlin["experts_gate_up"].upcast and marlin["experts_gate_up"].dtype == "bf16"  # w4a16 on Hopper


def test_marlin_weight_memory_by_hand():
    # tp 1: per layer and expert, gate_up 3072 x 5888 and down 2944 x 3072 MXFP4 values with bf16 biases of
    # 5888 and 3072, against the unpadded 2880 x 5760 and 2880 x 2880 with biases of 5760 and 2880
    run = make_run("gpt-oss-120b", engine={"moe_kernel": "marlin"})
    padded = (3072 * 5888 + 2944 * 3072) * MXFP4 + (5888 + 3072) * 2
    plain = (2880 * 5760 + 2880 * 2880) * MXFP4 + (5760 + 2880) * 2
    extra = stage_weight_bytes(run, 0, marlin=True) - stage_weight_bytes(run, 0)
    assert extra == pytest.approx(L * E * (padded - plain))
    # Marlin replaces the Triton layout's 256-multiple intermediate (expert_align)
    assert stage_weight_bytes(run, 0, expert_align=256, marlin=True) == stage_weight_bytes(run, 0, marlin=True)


def test_default_is_marlin_only_for_vllm_before_hopper():
    for hardware, engine, expected in (("a100-80gb-sxm", "vllm", True), ("l40s", "vllm", True),
                                       ("h100-sxm", "vllm", False), ("b200", "vllm", False),
                                       ("a100-80gb-sxm", "sglang", False), ("a100-80gb-sxm", None, False)):
        run = make_run("gpt-oss-20b", hardware=hardware)
        assert marlin_moe(run, engine) is expected, (hardware, engine)
    assert marlin_moe(make_run("gpt-oss-20b", engine={"moe_kernel": "marlin"}), "sglang") is True
    assert marlin_moe(make_run("gpt-oss-20b", hardware="a100-80gb-sxm", engine={"moe_kernel": "default"}),
                      "vllm") is False
    # experts that are not MXFP4 never take the Marlin MXFP4 layout
    assert marlin_moe(make_run("qwen3-30b-a3b", engine={"moe_kernel": "marlin"}), "vllm") is False
    run = make_run("gpt-oss-20b", hardware="a100-80gb-sxm", serving={"engine": "vllm"})
    assert StageBuilder(run, 0).marlin is True
    assert nbytes("mxfp4") == MXFP4


def test_bad_value_is_refused():
    with pytest.raises(SimcoreError, match="moe_kernel"):
        make_run("gpt-oss-20b", engine={"moe_kernel": "cutlass"})
