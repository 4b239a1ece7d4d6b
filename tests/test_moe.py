"""MoE pricing: the busiest expert-parallel rank, against hand-computed expectations."""

import pytest

from simcore.ops.builder import StageBuilder
from simcore.ops.passes import decode
from simcore.ops.routing import FITTED_SIGMA, busiest_rank_factor, expected_max_load, hit_fraction
from tests.helpers import make_run

UNIFORM = {"expert_popularity_sigma": 0}  # a uniform router: the hand computations below


def test_expected_max_load_of_tiny_multinomials_by_hand():
    # 2 assignments on 2 ranks: (2,0) or (0,2) w.p. 1/2 -> max 2; (1,1) w.p. 1/2 -> max 1
    assert expected_max_load(2, 2) == pytest.approx(1.5)
    # 3 on 2: (3,0),(0,3) w.p. 2/8 -> 3; otherwise 2
    assert expected_max_load(3, 2) == pytest.approx(3 * 2 / 8 + 2 * 6 / 8)
    # 2 on 3 ranks: same rank w.p. 1/3 -> 2, else 1
    assert expected_max_load(2, 3) == pytest.approx(2 * 1 / 3 + 1 * 2 / 3)
    assert expected_max_load(5, 1) == 5.0 and expected_max_load(0, 4) == 0.0


def test_normal_approximation_continues_the_exact_values():
    # across the switch from the exact sum to mean + sd x E[max of m normals] + 1/2
    below, above = expected_max_load(64, 8), expected_max_load(65, 8)
    assert below < above < below * 1.03
    assert expected_max_load(10_000, 8) == pytest.approx(1250 + 33.07 * 1.4236 + 0.5, rel=2e-3)


def test_imbalance_fades_with_many_tokens_and_vanishes_without_ep():
    assert busiest_rank_factor(1, 8, 1) == 1.0
    small, large = busiest_rank_factor(4, 8, 8), busiest_rank_factor(4096, 8, 8)
    assert small > 1.5 and 1.0 < large < 1.05


def test_ep_prices_the_busiest_rank():
    # mixtral top-2 of 8 experts, ep 2 (4 experts per GPU), one decode token: 2 assignments on 2 ranks,
    # E[max] = 1.5 rows on the busiest rank; it behaves like an average rank seeing 1.5 tokens:
    # 4 x (1 - (1 - 2/8)^1.5) experts read
    run = make_run("mixtral-8x7b", batch=1, prompt=8, output=2, parallelism={"tp": 2, "ep": 2}, inference=UNIFORM)
    ops = {op.name: op for op in StageBuilder(run, 0).ops(decode(1, past=8)) if op.layer == 0}
    up = ops["experts_gate_up"]
    active = 4 * (1 - 0.75 ** 1.5)
    assert up.flops == pytest.approx(2 * 1.5 * 4096 * 2 * 14336)
    assert up.weight_bytes == pytest.approx(active * 4096 * 2 * 14336 * 2)


def test_moe_permute_moves_the_routed_rows_and_pays_the_fixed_chain_cost():
    # mixtral bf16, one decode token, top-2: the combine reads the 2 expert output rows of 4096 x bf16
    # and writes 1; no quantization (bf16 experts)
    from simcore.cost.roofline import Pricer

    run = make_run("mixtral-8x7b", batch=1, prompt=8, output=2)
    ops = {op.name: op for op in StageBuilder(run, 0).ops(decode(1, past=8)) if op.layer == 0}
    op = ops["moe_permute"]
    assert op.bytes == 3 * 4096 * 2
    eff = run.system.efficiency
    assert eff.moe_layer_us > 0
    expected = op.bytes / (3350e9 * eff.memory) + eff.moe_layer_us * 1e-6
    assert Pricer(run.system).time(op) == pytest.approx(expected)


def test_grouped_gemm_tile_rounds_by_hand():
    # DeepSeek-V3 down projection on 8 GPUs, ~31 active experts at decode batch 4: sliced over tp 8 each GPU
    # holds K = 256 of every expert and writes N = 7168: 31 x 56 tiles = 1736 -> 14 rounds on 132 SMs;
    # a whole-expert EP rank with 7 active experts: 7 x 56 = 392 tiles -> 3 rounds
    from simcore.config.hardware import load_system
    from simcore.cost.roofline import Pricer, grouped_gemm_waves
    from simcore.ops.op import Op

    h100 = load_system("h100-sxm")
    assert grouped_gemm_waves(h100, (1.0, 7168, 256, 31.0)) == 14
    assert grouped_gemm_waves(h100, (1.0, 7168, 2048, 7.0)) == 3
    assert grouped_gemm_waves(h100, (300.0, 256, 7168, 2.0)) == 1  # 2 x 3 x 2 tiles
    eff = h100.efficiency.model_copy(update={"moe_tile_us": 1.5})
    sys_ = h100.model_copy(update={"efficiency": eff})
    op = Op("experts_down", "compute", "gemm", 0, flops=2.0, bytes=1.0, dtype="bf16", shape=(1.0, 7168, 256, 31.0))
    assert Pricer(sys_).cost(op).floor_s == pytest.approx(eff.kernel_floor_us * 1e-6 + 14 * 1.5e-6)


def test_mxfp4_experts_on_hopper_pay_the_in_kernel_dequantization_in_prefill_only():
    # gpt-oss-120b (MXFP4 experts) on H100, which has no fp4 math: the expert GEMMs run in bf16 and
    # upcast their weights; the attention projections (bf16 weights) and W8A8 fp8 GEMMs do not.
    # compute = FLOPs / (peak x eff(M)) + (1 / upcast_gemm - 1) x FLOPs / (peak x compute_max)
    from simcore.cost.roofline import Pricer, gemm_compute_efficiency
    from simcore.ops.passes import prefill

    run = make_run("gpt-oss-120b", batch=1, prompt=8, output=2, parallelism={"tp": 4},
                   precision={"weights": "auto"})
    ops = {op.name: op for op in StageBuilder(run, 0).ops(prefill(1, 4096)) if op.layer == 0}
    up, qkv = ops["experts_gate_up"], ops["qkv_proj"]
    assert up.upcast and up.dtype == "bf16" and not qkv.upcast
    eff = run.system.efficiency
    assert 0 < eff.upcast_gemm < 1
    peak = 989.4e12
    m = up.shape[0]
    expected = (up.flops / (peak * gemm_compute_efficiency(run.system, m, "bf16"))
                + (1 / eff.upcast_gemm - 1) * up.flops / (peak * eff.gemm.compute_max))
    assert Pricer(run.system).cost(up).compute_s == pytest.approx(expected)
    # a decode step of 4 sequences streams the expert weights: the dequantization hides under HBM time
    dec = {op.name: op for op in StageBuilder(run, 0).ops(decode(4, past=1024)) if op.layer == 0}
    assert Pricer(run.system).cost(dec["experts_gate_up"]).bound == "memory"
    fp8 = make_run("qwen3-32b", batch=1, prompt=8, output=2, precision={"weights": "fp8", "activations": "fp8"})
    assert not any(op.upcast for op in StageBuilder(fp8, 0).ops(prefill(1, 64)))


def test_minimax_busiest_rank_reads_the_expected_distinct_experts_by_brute_force():
    # MiniMax-M2.5, one decode token, top-8 of 256 experts over ep 4 (64 per GPU): enumerate the 4^8
    # equally likely rank patterns of the 8 assignments for E[rows on the busiest rank]
    import itertools
    from collections import Counter

    e_max = sum(max(Counter(p).values()) for p in itertools.product(range(4), repeat=8)) / 4 ** 8
    run = make_run("minimax-m2.5", batch=1, prompt=8, output=2, parallelism={"tp": 4, "ep": 4},
                   precision={"weights": "fp8", "activations": "fp8"}, inference=UNIFORM)
    ops = {op.name: op for op in StageBuilder(run, 0).ops(decode(1, past=8)) if op.layer == 0}
    busy_tokens = e_max / 2  # the busiest rank behaves like an average rank (2 rows per token) of this many tokens
    active = 64 * (1 - (1 - 8 / 256) ** busy_tokens)  # distinct experts among them, each of 64 local ones
    up = ops["experts_gate_up"]
    assert up.flops == pytest.approx(2 * e_max * 3072 * 2 * 1536)
    assert up.weight_bytes == pytest.approx(active * 3072 * 2 * 1536 * 1)  # fp8: one byte per weight
    assert up.shape[3] == pytest.approx(active)
    # one token's 8 experts are distinct, so the busiest rank's 3.54 rows are 3.54 experts: the
    # independent-draws formula lands within 2% of that
    assert e_max == pytest.approx(3.54, abs=0.01) and active == pytest.approx(e_max, rel=0.02)


def test_per_layer_qk_norm_all_reduces_its_statistics_over_tp():
    # MiniMax-M2 normalizes q (48 x 128) and k (8 x 128) over all heads at once (qk_norm_type per_layer): at
    # tp 4 each GPU holds 12 + 2 heads, so the per-token fp32 mean squares of q and k are summed over the 4
    from simcore.ops.linears import norm_params

    run = make_run("minimax-m2.5", batch=4, prompt=8, output=2, parallelism={"tp": 4, "ep": 4})
    assert run.model.qk_norm and run.model.qk_norm_per_layer
    ops = {op.name: op for op in StageBuilder(run, 0).ops(decode(4, past=8)) if op.layer == 0}
    ar = ops["qk_norm_all_reduce"]
    assert ar.collective == "all_reduce" and ar.group == 4 and ar.bytes == 4 * 2 * 4
    assert ops["qk_norm"].bytes == 2 * 4 * (12 + 2) * 128 * 2
    assert norm_params(run.model) == 2 * 3072 + (48 + 8) * 128  # a weight per q and k element
    alone = make_run("minimax-m2.5", batch=4, prompt=8, output=2)
    assert "qk_norm_all_reduce" not in {op.name for op in StageBuilder(alone, 0).ops(decode(4, past=8))}
    qwen = make_run("qwen3-32b", batch=4, prompt=8, output=2, parallelism={"tp": 2})  # per-head norms: local
    names = {op.name for op in StageBuilder(qwen, 0).ops(decode(4, past=8))}
    assert "qk_norm" in names and "qk_norm_all_reduce" not in names
    assert norm_params(qwen.model) == 2 * 5120 + 2 * 128


def test_hot_experts_leave_fewer_distinct_experts_by_hand():
    # 2 experts, top-1, spread 1: their normal quantiles 1/4 and 3/4 are -/+0.67449, shares e^-0.67449 : e^0.67449
    # = 0.2060 : 0.7940; two tokens miss expert e w.p. (1 - p_e)^2
    import math

    lo, hi = math.exp(-0.6744897501960817), math.exp(0.6744897501960817)
    p = [lo / (lo + hi), hi / (lo + hi)]
    assert hit_fraction(2, 1, 2, 1.0) == pytest.approx(sum(1 - (1 - x) ** 2 for x in p) / 2)
    assert hit_fraction(2, 1, 2, 1.0) == pytest.approx(0.6636, abs=1e-4)
    assert hit_fraction(2, 1, 4, 0.0) == pytest.approx(1 - 0.75 ** 2)  # uniform
    # one token always reads k distinct experts, hot or not; many tokens read them all either way
    assert hit_fraction(1, 4, 128, 1.2) == pytest.approx(4 / 128)
    assert hit_fraction(1e6, 4, 128, 1.2) == pytest.approx(1.0)
    # in between, the hotter the router the fewer: gpt-oss top-4 of 128, 64 tokens
    assert hit_fraction(64, 4, 128, 0.0) > hit_fraction(64, 4, 128, 0.6) > hit_fraction(64, 4, 128, 1.2)
    assert hit_fraction(0, 4, 128, 1.2) == 0.0


def test_a_decode_step_reads_the_experts_its_router_touches():
    """gpt-oss-120b, tp 4, 64 decodes: expert weight bytes scale with the distinct experts the 64 tokens touch,
    fewer under the fitted (hot-expert) router than under a uniform one; the FLOPs (rows) do not change."""
    def up(sigma):
        run = make_run("gpt-oss-120b", batch=64, prompt=8, output=2, parallelism={"tp": 4},
                       inference={"expert_popularity_sigma": sigma})
        return {op.name: op for op in StageBuilder(run, 0).ops(decode(64, past=8)) if op.layer == 0}["experts_gate_up"]

    uniform, hot, default = up(0), up(1.2), up(None)
    ratio = hit_fraction(64, 4, 128, 1.2) / hit_fraction(64, 4, 128, 0.0)
    assert hot.weight_bytes == pytest.approx(uniform.weight_bytes * ratio)
    assert hot.flops == pytest.approx(uniform.flops)
    assert default.weight_bytes == pytest.approx(up(FITTED_SIGMA).weight_bytes)


def test_the_popularity_spread_is_checked():
    from simcore.errors import SimcoreError

    for bad in (-0.5, 5, "hot"):
        with pytest.raises(SimcoreError, match="inference.expert_popularity_sigma"):
            make_run("gpt-oss-120b", inference={"expert_popularity_sigma": bad})
