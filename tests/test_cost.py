"""The roofline and the collective model, against hand computation from the catalog's numbers."""

import pytest

from simcore.config.hardware import load_system
from simcore.cost.collectives import collective_time
from simcore.cost.roofline import Pricer
from simcore.ops.op import Op

H100 = load_system("h100-sxm")
EFF = H100.efficiency


def gemm(m, n, k):
    return Op("g", "compute", "gemm", 0, flops=2 * m * n * k, bytes=2 * (m * k + k * n + m * n), shape=(m, n, k))


def test_small_gemm_is_memory_bound_at_weight_stream_efficiency():
    op = gemm(1, 4096, 4096)
    expected = op.bytes / (3350e9 * EFF.gemm.memory) + EFF.kernel_floor_us * 1e-6
    cost = Pricer(H100).cost(op)
    assert cost.bound == "memory" and cost.total == pytest.approx(expected)


def test_large_gemm_is_compute_bound_at_shape_dependent_efficiency():
    m = 8192
    op = gemm(m, 8192, 8192)
    eff = EFF.gemm.compute_max * m / (m + EFF.gemm.m_half)
    expected = op.flops / (989.4e12 * eff) + EFF.kernel_floor_us * 1e-6
    cost = Pricer(H100).cost(op)
    assert cost.bound == "compute" and cost.total == pytest.approx(expected)


def test_no_op_beats_its_roofline():
    p = Pricer(H100)
    for m in (1, 16, 256, 4096):
        op = gemm(m, 4096, 14336)
        assert p.time(op) > max(op.flops / 989.4e12, op.bytes / 3350e9)


def test_fp8_gemm_uses_the_fp8_peak_at_its_own_efficiency():
    bf = gemm(8192, 8192, 8192)
    f8 = Op("g", "compute", "gemm", 0, flops=bf.flops, bytes=bf.bytes / 2, dtype="fp8", shape=bf.shape)
    p = Pricer(H100)
    ratio = (989.4 / 1978.9) * EFF.gemm.compute_max / EFF.gemm.compute_max_fp8
    assert p.cost(f8).compute_s == pytest.approx(p.cost(bf).compute_s * ratio)
    assert p.cost(f8).compute_s < p.cost(bf).compute_s


def test_attention_backward_runs_at_its_published_share_of_the_forward_rate():
    """8 x 32 heads x 32 tiles of 128 queries (more tiles than SMs), 4K keys: forward at the fitted curve,
    backward (2.5x the FLOPs) at 0.81 of that rate (cuDNN, FlashAttention-3 paper)."""
    fwd = Op("attention", "compute", "attn_prefill", 0, flops=1e12, bytes=1e6, shape=(8192, 4096))
    bwd = Op("attention.bwd", "backward", "attn_prefill", 0, flops=2.5e12, bytes=2e6, shape=(8192, 4096))
    rate = 989.4e12 * 0.65 * 4096 / (4096 + 815.4)
    p = Pricer(H100)
    assert EFF.attention_prefill.backward == 0.81
    assert p.cost(fwd).compute_s == pytest.approx(1e12 / rate)
    assert p.cost(bwd).compute_s == pytest.approx(2.5e12 / (rate * 0.81))
    recompute = Op("attention.recompute", "recompute", "attn_prefill", 0, flops=1e12, bytes=1e6, shape=(8192, 4096))
    assert p.cost(recompute).compute_s == p.cost(fwd).compute_s  # a recomputed forward is a forward kernel


def test_flash2_attention_runs_at_its_published_share_of_the_flash_rate():
    """A third shape field scales the attention curve: FlashAttention-2 at 0.62 of the flash (cuDNN) rate
    on H100 (FlashAttention-3 paper, Figs. 5-6), forward and backward alike; memory time is untouched."""
    assert EFF.attention_prefill.flash2 == 0.62
    rate = 989.4e12 * 0.65 * 4096 / (4096 + 815.4)
    p = Pricer(H100)
    fwd = Op("attention", "compute", "attn_prefill", 0, flops=1e12, bytes=1e6, shape=(8192, 4096, 0.62))
    bwd = Op("attention.bwd", "backward", "attn_prefill", 0, flops=2.5e12, bytes=2e6, shape=(8192, 4096, 0.62))
    assert p.cost(fwd).compute_s == pytest.approx(1e12 / (rate * 0.62))  # 2.937 ms against 1.821 ms
    assert p.cost(bwd).compute_s == pytest.approx(2.5e12 / (rate * 0.81 * 0.62))
    assert p.cost(fwd).memory_s == pytest.approx(1e6 / (3350e9 * EFF.gemm.memory))


def test_kv_on_host_moves_over_the_host_link():
    op = Op("kv_cache_fetch", "kv_cache_fetch", "memory", 0, bytes=1e9, kv_bytes=1e9, kernel=False, tier="host")
    assert Pricer(H100).time(op) == pytest.approx(1e9 / (64e9 * EFF.host_link))


def test_fetch_inside_attention_pays_no_floor():
    op = Op("kv_cache_fetch", "kv_cache_fetch", "memory", 0, bytes=1e6, kernel=False)
    assert Pricer(H100).time(op) == pytest.approx(1e6 / (3350e9 * EFF.attention_decode_memory))


def test_ring_all_reduce_by_hand():
    # 64 MiB across 2 H100s through NVSwitch: ring = 2(n-1) latency + 2(n-1)/n bytes / achieved link bandwidth
    size, n = 64 * 2**20, 2
    bw = 450e9 * EFF.collectives.ring_link
    ring = 2 * (n - 1) * (1e-6 + EFF.collectives.nccl_step_latency_us * 1e-6) + 2 * (n - 1) / n * size / bw
    # without the engine's own kernel, NCCL's ring is the cheapest on 2 GPUs (NVLS pays its fixed cost)
    assert collective_time("all_reduce", size, n, H100, inter_node=False, custom=False) == pytest.approx(ring)


def test_collectives_grow_with_size_and_cost_more_across_nodes():
    for kind in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"):
        small = collective_time(kind, 1e6, 8, H100, False)
        big = collective_time(kind, 1e8, 8, H100, False)
        inter = collective_time(kind, 1e8, 8, H100, True)
        assert 0 < small < big < inter
    assert collective_time("all_reduce", 1e6, 1, H100, False) == 0.0


def test_small_all_reduce_latency_with_and_without_the_engines_custom_kernel():
    # NCCL ring on 8 GPUs: 14 steps of (link + protocol) latency; custom kernel: 2 link latencies
    step = 1e-6 + EFF.collectives.nccl_step_latency_us * 1e-6
    nccl = collective_time("all_reduce", 1024, 8, H100, False, custom=False)
    assert nccl == pytest.approx(14 * step + 1.75 * 1024 / (450e9 * EFF.collectives.ring_link))
    assert collective_time("all_reduce", 1024, 8, H100, False, custom=True) < nccl / 5


def test_custom_all_reduce_only_up_to_8_mib():
    # vLLM's CustomAllreduce max_size: an 8 MiB message may take the 2-step kernel, a larger one is NCCL's
    eff = EFF.collectives
    direct = lambda s: 2 * (1e-6 + 7 / 8 * s / (450e9 * eff.ring_link))  # noqa: E731
    assert collective_time("all_reduce", 8 * 2**20, 8, H100, False) == pytest.approx(direct(8 * 2**20))
    big = 16 * 2**20
    nccl = collective_time("all_reduce", big, 8, H100, False, custom=False)
    assert collective_time("all_reduce", big, 8, H100, False) == pytest.approx(nccl) and nccl > direct(big)


def test_nvls_wins_only_for_large_messages():
    n, eff = 8, EFF.collectives
    nvls = lambda s: eff.nvls_latency_us * 1e-6 + (n - 1) / n * s / (450e9 * eff.nvls_link)  # noqa: E731
    assert collective_time("all_reduce", 1e4, n, H100, False) < nvls(1e4)
    assert collective_time("all_reduce", 4e9, n, H100, False) == pytest.approx(nvls(4e9))


def test_all_to_all_is_one_latency_plus_bytes_over_the_busiest_link():
    # 4 H100s in one node, 1 MiB per rank: each rank sends 3/4 of it at once over its NVLink
    size, eff = 2**20, EFF.collectives
    lat = 1e-6 + eff.nccl_step_latency_us * 1e-6
    expected = lat + 0.75 * size / (450e9 * eff.ring_link)
    assert collective_time("all_to_all", size, 4, H100, False) == pytest.approx(expected)
    # 16 ranks on two 8-GPU nodes: 7/16 over NVLink and 8/16 over the GPU's 50 GB/s NIC, in parallel;
    # one network latency (5 us + protocol), not 15 sequential steps
    net_lat = 5e-6 + eff.nccl_step_latency_us * 1e-6
    wide = net_lat + max(7 / 16 * size / (450e9 * eff.ring_link), 8 / 16 * size / (50e9 * eff.network_link))
    assert collective_time("all_to_all", size, 16, H100, True) == pytest.approx(wide)


def test_cross_node_all_reduce_is_hierarchical_for_small_messages():
    # 16 ranks on 2 nodes, 16 KiB: reduce-scatter in the node (7 NVLink steps), all-reduce of the
    # 2 KiB shard between the 2 nodes (2 network steps), all-gather in the node (7 steps)
    size, eff = 16 * 2**10, EFF.collectives
    lat_in, lat_out = 1e-6 + eff.nccl_step_latency_us * 1e-6, 5e-6 + eff.nccl_step_latency_us * 1e-6
    bw_in, bw_out = 450e9 * eff.ring_link, 50e9 * eff.network_link
    node = 7 * lat_in + 7 / 8 * size / bw_in
    expected = 2 * node + 2 * lat_out + (size / 8) / bw_out
    assert collective_time("all_reduce", size, 16, H100, True) == pytest.approx(expected)
    # the flat ring would pay 30 network steps
    assert expected < 30 * lat_out
