"""engine.moe_ep_rows: the rows an EP rank's fused-MoE kernels do per-row work on (docs/cost-model.md)."""

import pytest

from simcore.ops.builder import StageBuilder
from simcore.ops.passes import Batch, Group
from simcore.ops.routing import busiest_rank_factor
from tests.helpers import make_run

# qwen3-30b-a3b: hidden 2048, expert intermediate 768, 128 experts, top 8
H, I, K = 2048, 768, 8


def moe_ops(tokens, **sections):
    run = make_run("qwen3-30b-a3b", batch=1, prompt=tokens, output=2, **sections)
    ops = StageBuilder(run, 0).ops(Batch((Group("prefill", 1, tokens, 0),), emitting=1))
    return {op.name: op for op in ops if op.layer == 0}


def test_all_rows_price_every_held_tokens_top_k_rows_and_the_zeros_of_other_ranks():
    # tp 4 / ep 4, one prompt of 64 tokens, bf16 (no quantization): every GPU holds the 64 tokens; its
    # experts get the busiest rank's rows, but vLLM's buffers span all 64 x 8 = 512 rows
    rows = 64 * K / 4 * busiest_rank_factor(64, K, 4)
    every = 64 * K
    local = moe_ops(64, parallelism={"tp": 4, "ep": 4}, engine={"moe_ep_rows": "local"})
    full = moe_ops(64, parallelism={"tp": 4, "ep": 4}, engine={"moe_ep_rows": "all"})
    assert local["experts_act_fn"].bytes == pytest.approx(3 * rows * I * 2)
    assert full["experts_act_fn"].bytes == pytest.approx(3 * every * I * 2)
    assert local["moe_permute"].bytes == pytest.approx((rows + 64) * H * 2)
    zeros = (every - rows) * (2 * I + H) * 2  # gate_up (2 x 768 wide) and down (2048 wide) outputs, bf16
    assert full["moe_permute"].bytes == pytest.approx((every + 64) * H * 2 + zeros)
    # the GEMMs themselves still compute only the local rows
    assert full["experts_gate_up"].flops == local["experts_gate_up"].flops == pytest.approx(2 * rows * H * 2 * I)


def test_fp8_experts_quantize_every_rows_intermediate():
    # fp8 weights on H100: the token inputs and each row's intermediate are quantized (2 bytes read, 1 written)
    rows = 64 * K / 4 * busiest_rank_factor(64, K, 4)
    every = 64 * K
    full = moe_ops(64, parallelism={"tp": 4, "ep": 4}, precision={"weights": "fp8"}, engine={"moe_ep_rows": "all"})
    quantized = (64 * H + every * I) * 3
    zeros = (every - rows) * (2 * I + H) * 2
    assert full["moe_permute"].bytes == pytest.approx(quantized + (every + 64) * H * 2 + zeros)


def test_without_ep_both_settings_agree():
    # ep 1 (experts sliced by tp): every row is this GPU's already
    a = moe_ops(64, parallelism={"tp": 4}, engine={"moe_ep_rows": "local"})
    b = moe_ops(64, parallelism={"tp": 4}, engine={"moe_ep_rows": "all"})
    assert a["moe_permute"].bytes == b["moe_permute"].bytes
    assert a["experts_act_fn"].bytes == b["experts_act_fn"].bytes


def test_all_to_all_dispatch_keeps_local_rows():
    # tokens dispatched by all-to-all arrive only at their experts' ranks: nothing to zero-fill
    a = moe_ops(64, parallelism={"attention_dp": 4, "ep": 4}, engine={"moe_ep_rows": "local"})
    b = moe_ops(64, parallelism={"attention_dp": 4, "ep": 4}, engine={"moe_ep_rows": "all"})
    assert "moe_dispatch" in b
    assert a["moe_permute"].bytes == b["moe_permute"].bytes


def test_default_is_all_for_vllm_and_local_otherwise():
    run = make_run("qwen3-30b-a3b", parallelism={"tp": 4, "ep": 4})
    assert StageBuilder(run, 0).moe_all_rows is False
    for engine, expected in (("vllm", True), ("trtllm", False), ("sglang", False)):
        run = make_run("qwen3-30b-a3b", parallelism={"tp": 4, "ep": 4}, serving={"engine": engine})
        assert StageBuilder(run, 0).moe_all_rows is expected
    run = make_run("qwen3-30b-a3b", parallelism={"tp": 4, "ep": 4}, serving={"engine": "vllm"},
                   engine={"moe_ep_rows": "local"})
    assert StageBuilder(run, 0).moe_all_rows is False


def test_bad_value_is_refused():
    from simcore.errors import SimcoreError

    with pytest.raises(SimcoreError, match="moe_ep_rows"):
        make_run("qwen3-30b-a3b", engine={"moe_ep_rows": "some"})
