"""Training steps: hand-computed FLOPs, physics bounds, memory accounting, schedules, modes, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from simcore.config.experiment import Experiment, resolve
from simcore.config.hardware import load_system
from simcore.config.validation import validate
from simcore.cost.roofline import Pricer
from simcore.run.training import TrainingSimulator, simulate
from simcore.errors import SimcoreError
from simcore.graph.schedules import rank_order
from simcore.ops.backward import backward
from simcore.ops.linears import total_params
from simcore.ops.op import COMM, GEMM
from simcore.ops.training import TrainingStage

REPO = Path(__file__).resolve().parent.parent
GIB = 1024**3

# A tiny dense model: h 64, 4 heads of 16 (MHA), 2 layers, gated MLP of 128, vocabulary 256.
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 4, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 256,
        "max_position_embeddings": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


@pytest.fixture
def tiny(tmp_path):
    def make(**cfg) -> str:
        path = tmp_path / "tiny.json"
        path.write_text(json.dumps({**TINY, **cfg}))
        return str(path)
    return make


def training_run(model="llama-3.1-8b", hardware="h100-sxm", par=None, engine=None, **workload):
    data = {"model": model, "hardware": hardware, "parallelism": par or {},
            "workload": {"kind": "training", "global_batch": 8, **workload}}
    if engine:
        data["engine"] = engine
    return resolve(validate(Experiment, data, "test"))


def train(*args, **kw):
    return simulate(training_run(*args, **kw))


def memory(*args, **kw):
    return TrainingSimulator(training_run(*args, **kw)).memory()


def test_tiny_model_flops_are_six_n_tokens_plus_attention(tiny):
    b, s, steps = 4, 32, 2  # micro-batch 4, 2 micro-batches
    res = train(tiny(), global_batch=b * steps, micro_batch=b, sequence_length=s)
    h, inter, vocab, layers, heads, d = 64, 128, 256, 2, 4, 16
    matmul_params = layers * (h * 3 * h + h * h + h * 2 * inter + inter * h) + h * vocab  # lm head, not the lookup
    assert matmul_params == 98304
    tokens = b * s * steps
    pairs = b * s * (s + 1) // 2 * steps  # causal: token i attends to i keys
    attention = layers * 2 * heads * pairs * 2 * d  # QK^T and PV, 2 FLOPs per multiply-add
    assert res.tokens == tokens
    assert res.model_flops == pytest.approx(6 * matmul_params * tokens + 3 * attention, rel=1e-12)
    # what runs: backward GEMMs are 2x forward, flash-attention backward 2.5x forward
    assert res.hardware_flops == pytest.approx(6 * matmul_params * tokens + 3.5 * attention, rel=1e-12)
    full = train(tiny(), global_batch=b * steps, micro_batch=b, sequence_length=s, recompute="full")
    head = h * vocab  # full recompute redoes the transformer layers, not the LM head
    assert full.hardware_flops == pytest.approx(6 * matmul_params * tokens + 2 * (matmul_params - head) * tokens
                                                + 4.5 * attention, rel=1e-12)
    sel = train(tiny(), global_batch=b * steps, micro_batch=b, sequence_length=s, recompute="selective")
    assert sel.hardware_flops == pytest.approx(6 * matmul_params * tokens + 4.5 * attention, rel=1e-12)


def test_gemm_backward_is_data_and_weight_gradient_with_the_forward_flops():
    from simcore.ops.op import Op
    fwd = Op("up", "compute", GEMM, 0, flops=2.0 * 512 * 64 * 128, bytes=1.0, shape=(512, 128, 64),
             weight_bytes=64 * 128 * 2.0, act_bytes=512 * (64 + 128) * 2.0)
    dgrad, wgrad = backward([fwd])
    assert dgrad.flops == wgrad.flops == fwd.flops
    assert dgrad.shape == (512, 64, 128) and wgrad.shape == (64, 128, 512)
    # the weight gradient reads X and dY and accumulates into fp32 main grads (read + write 4 bytes)
    assert wgrad.bytes == fwd.act_bytes + 64 * 128 * 8.0
    assert {dgrad.kind, wgrad.kind} == {"backward"}


@pytest.mark.parametrize("par,extra", [
    ({"dp": 8}, {"zero_stage": 1}),
    ({"tp": 4, "pp": 2}, {"sequence_parallel": True, "recompute": "selective"}),
    ({"tp": 2, "pp": 4}, {"schedule": "interleaved", "virtual_stages": 2, "recompute": "full"}),
])
def test_a_step_is_never_faster_than_its_flops_at_peak(par, extra):
    res = train(par=par, global_batch=16, sequence_length=2048, engine={"overlap_policy": "all"}, **extra)
    peak = res.run.gpus * res.run.system.gpu.peak_flops("bf16")
    assert res.step_time >= res.hardware_flops / peak
    assert 0 < res.model_flops <= res.hardware_flops


def test_memory_adds_up_and_zero_shards_what_it_says():
    n = total_params(training_run().model)
    mems = {z: memory(par={"dp": 8}, zero_stage=z, sequence_length=1024, recompute="full") for z in range(4)}
    m0 = mems[0]
    assert m0.weights == 2 * n and m0.gradients == 4 * n and m0.optimizer_state == 12 * n  # bf16, fp32 grads, Adam
    assert mems[1].optimizer_state == pytest.approx(12 * n / 8) and mems[1].gradients == 4 * n
    assert mems[2].gradients == pytest.approx(4 * n / 8) and mems[2].weights == 2 * n
    assert mems[3].weights == pytest.approx(2 * n / 8)
    for m in mems.values():
        assert m.total == pytest.approx(m.weights + m.gradients + m.optimizer_state + m.activations + m.runtime)
    # the pipeline ranks together hold every parameter once
    res = train(par={"pp": 4}, global_batch=8, sequence_length=512)
    assert sum(s.params for s in res.stages) == n


def test_activation_memory_follows_the_schedule(tiny):
    """GPipe holds every micro-batch; 1F1B's first rank holds pp of them; full recompute keeps layer inputs."""
    model = tiny(hidden_size=1024, num_attention_heads=8, num_key_value_heads=8, num_hidden_layers=16,
                 intermediate_size=4096, vocab_size=64)
    kw = dict(model=model, par={"pp": 4}, global_batch=16, sequence_length=1024)
    gpipe = memory(schedule="gpipe", **kw).activations
    ofob = memory(schedule="1f1b", **kw).activations
    assert gpipe / ofob == pytest.approx(16 / 4, rel=0.03)  # stages differ by the embedding and head
    full = memory(schedule="1f1b", recompute="full", **kw).activations
    assert full < ofob / 5


def test_1f1b_order_and_interleaved_warmup():
    assert rank_order("1f1b", 0, 4, 1, 6)[:5] == [("F", 0, 0), ("F", 1, 0), ("F", 2, 0), ("F", 3, 0), ("B", 0, 0)]
    last = rank_order("1f1b", 3, 4, 1, 6)
    assert last[:4] == [("F", 0, 3), ("B", 0, 3), ("F", 1, 3), ("B", 1, 3)]
    inter = rank_order("interleaved", 0, 2, 2, 4)
    # warm-up (pp - 1) x 2 + (v - 1) x pp = 4 forwards: micro-batches 0, 1 on chunk 0, then on chunk 1
    assert inter[:5] == [("F", 0, 0), ("F", 1, 0), ("F", 0, 2), ("F", 1, 2), ("F", 2, 0)]
    assert inter[5] == ("B", 0, 2)
    for order in (rank_order("interleaved", r, 2, 2, 4) for r in range(2)):
        assert sorted(order) == sorted({(p, mb, vs) for p, mb, vs in order})  # each unit once
        assert len(order) == 2 * 4 * 2


def test_1f1b_bubble_is_p_minus_1_over_m_plus_p_minus_1(tiny):
    """Uniform stages and nothing to contend: the busiest rank idles (p-1)/(m+p-1) of the pipeline time."""
    model = tiny(hidden_size=1024, num_attention_heads=8, num_key_value_heads=8, num_hidden_layers=16,
                 intermediate_size=4096, vocab_size=64)  # the head and embedding barely unbalance the stages
    for p, m in ((4, 8), (2, 6), (8, 16)):
        res = train(model, par={"pp": p}, global_batch=m, sequence_length=512, schedule="1f1b")
        opt = max(e.duration for e in res.events if e.name == "optimizer")
        pipeline = res.step_time - opt
        assert res.bubble / pipeline == pytest.approx((p - 1) / (m + p - 1), rel=0.03)
        g = train(model, par={"pp": p}, global_batch=m, sequence_length=512, schedule="gpipe")
        assert g.bubble == pytest.approx(res.bubble, rel=0.03)  # same bubble, more memory
    inter = train(model, par={"pp": 4}, global_batch=8, sequence_length=512, schedule="interleaved", virtual_stages=2)
    plain = train(model, par={"pp": 4}, global_batch=8, sequence_length=512)
    assert inter.bubble < 0.6 * plain.bubble  # v chunks cut the bubble about v times


def test_modes_agree_without_contention():
    kw = dict(par={"tp": 2, "pp": 2, "dp": 2}, global_batch=8, sequence_length=512, zero_stage=1,
              sequence_parallel=True)
    times = {mode: train(engine={"mode": mode}, **kw).step_time for mode in ("analytical", "hybrid", "flattened")}
    assert times["hybrid"] == pytest.approx(times["analytical"], rel=1e-9)
    assert times["flattened"] == pytest.approx(times["analytical"], rel=1e-9)


def test_gradient_overlap_hides_communication_and_never_slows_a_step():
    kw = dict(par={"dp": 8}, global_batch=32, sequence_length=2048, zero_stage=1)
    steps = {}
    for mode in ("analytical", "hybrid"):
        plain = train(engine={"mode": mode}, **kw)
        over = steps[mode] = train(engine={"mode": mode, "overlap_policy": "dp_grad"}, **kw)
        assert over.step_time < plain.step_time
        assert over.critical.get("comm", 0) < plain.critical["comm"]
    # the buckets have their link to themselves: the closed-form tail equals the simulated queue
    assert steps["hybrid"].step_time == pytest.approx(steps["analytical"].step_time, rel=1e-9)


def test_sequence_parallel_swaps_all_reduce_for_reduce_scatter_and_all_gather():
    run = resolve(validate(Experiment, {"model": "llama-3.1-8b", "hardware": "h100-sxm", "parallelism": {"tp": 4},
                                        "workload": {"kind": "training", "global_batch": 8,
                                                     "sequence_parallel": True}}, "t"))
    plain_run = resolve(validate(Experiment, {**run.experiment.model_dump(), "workload": {
        **run.experiment.workload.model_dump(), "sequence_parallel": False}}, "t"))
    sp, plain = TrainingStage(run, 0, 1).forward, TrainingStage(plain_run, 0, 1).forward
    comm = lambda ops, kind: sum(o.bytes for o in ops if o.kind == COMM and o.collective == kind)  # noqa: E731
    loss = sum(o.bytes for o in sp if o.name == "loss_all_reduce")
    assert comm(sp, "all_reduce") == loss  # every TP all-reduce but the loss's became a reduce-scatter
    assert comm(plain, "all_reduce") == comm(sp, "reduce_scatter") + loss
    assert comm(sp, "reduce_scatter") == comm(sp, "all_gather") > 0  # one of each per block
    norm = lambda ops: next(o for o in ops if o.name == "post_attn_norm")  # noqa: E731
    assert norm(sp).bytes == norm(plain).bytes / 4


@pytest.mark.parametrize("workload,par,hardware,match", [
    ({"global_batch": 12}, {"dp": 8}, "h100-sxm", "must be a multiple of micro_batch x dp"),
    ({"schedule": "interleaved"}, {}, "h100-sxm", "needs parallelism.pp > 1"),
    ({"virtual_stages": 2}, {"pp": 2}, "h100-sxm", "only the interleaved schedule"),
    ({"sequence_parallel": True}, {}, "h100-sxm", "needs parallelism.tp > 1"),
    ({"gemm_precision": "fp8"}, {}, "a100-80gb-sxm", "no fp8 tensor cores"),
    ({"sequence_length": 200000}, {}, "h100-sxm", "exceeds max_position_embeddings"),
    ({"sequence_length": 1000, "context_parallel": 8}, {}, "h100-sxm", "2 x cp = 16 equal chunks"),
    ({"schedule": "interleaved", "global_batch": 6}, {"pp": 4}, "h100-sxm", "multiple of pp = 4"),
])
def test_bad_training_input_is_one_line(workload, par, hardware, match):
    with pytest.raises(SimcoreError, match=match) as err:
        train(hardware=hardware, par=par, **workload)
    assert "\n" not in str(err.value)


def test_a_configuration_that_does_not_fit_names_its_largest_component(cli, tmp_path):
    exp = tmp_path / "big.yaml"
    exp.write_text("model: llama-3.1-70b\nhardware: h100-sxm\nparallelism: {dp: 8}\n"
                   "workload: {kind: training, global_batch: 8, zero_stage: 0}\n")
    r = cli("run", str(exp))
    assert r.rc == 2
    assert r.err.count("\n") == 1 and r.err.startswith("error: training does not fit")
    assert "largest: optimizer_state" in r.err


KEYS = ("step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "mfu", "hfu", "pipeline_bubble_s", "critical_path_s",
        "memory_per_gpu_bytes", "time_to_train_s", "model_flops_per_step", "hardware_flops_per_step")


@pytest.mark.parametrize("path", sorted((REPO / "experiments" / "training").glob("*.yaml")), ids=lambda p: p.name)
def test_every_training_example_runs(cli, path):
    r = cli("run", str(path), "--json")
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    for key in KEYS:
        assert key in s, key
    assert 0 < s["mfu"] <= s["hfu"] < 1
    assert s["tokens_per_s"] == pytest.approx(s["tokens_per_step"] / s["step_time_s"])
    assert s["time_to_train_s"] == pytest.approx(s["train_tokens"] / s["tokens_per_s"])
    m = s["memory_per_gpu_bytes"]
    assert m["total"] <= m["capacity"]


def test_trace_and_out_of_a_training_step(cli, tmp_path):
    exp = REPO / "experiments" / "training" / "llama-3.1-8b-zero1-8gpu.yaml"
    r = cli("run", exp, "--set", "workload.global_batch=16", "--mode", "flattened", "--trace", tmp_path / "t.json",
            "--out", tmp_path / "o")
    assert r.rc == 0, r.err
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    cats = {e.get("cat") for e in events}
    assert {"compute", "recompute", "backward", "optimizer", "comm"} <= cats  # each in its own colour
    rows = (tmp_path / "o" / "breakdown.csv").read_text().splitlines()
    assert rows[0].startswith("unit,stage,layer,op")
    assert any(",qkv_proj.wgrad,backward," in row for row in rows)
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["micro_batches"] == 2


def test_the_training_sweep_example_keeps_the_64_gpu_splits():
    from simcore.sweep.expand import plan
    from simcore.sweep.spec import load_sweep

    p = plan(load_sweep(REPO / "experiments" / "sweeps" / "training-70b-64gpu.yaml"))
    splits = {(t.experiment["parallelism"]["tp"], t.experiment["parallelism"]["pp"], t.experiment["parallelism"]["dp"])
              for t in p.tasks}
    assert len(splits) == 12 and all(tp * pp * dp == 64 for tp, pp, dp in splits)
    assert len(p.tasks) == 24 and p.filtered == {"not 64 GPUs": 120}


def test_context_parallelism_splits_sequences_not_work():
    """cp 2 instead of dp 2: the same GPUs and FLOPs, half the activations per GPU, plus the K/V ring."""
    kw = dict(global_batch=4, sequence_length=16384, recompute="full")
    dp = train(par={"tp": 8, "dp": 2}, **kw)
    cp = train(par={"tp": 8}, context_parallel=2, **kw)
    assert cp.gpus == dp.gpus == 16
    assert cp.model_flops == pytest.approx(dp.model_flops, rel=1e-12)
    assert cp.memory.activations == pytest.approx(dp.memory.activations / 2, rel=0.01)
    ring = [op for op in cp.stages[0].forward if op.name == "cp_kv_all_gather"]
    assert len(ring) == 32 and ring[0].group == 2 and ring[0].inter_node  # tp 8 x cp 2 spans two nodes
    # each K/V chunk: 8192 tokens x 2 (K and V) x 1 KV head per TP rank x 128 x bf16, gathered from both ranks
    assert ring[0].bytes == 2 * 8192 * 2 * 1 * 128 * 2


def test_context_parallel_attention_is_priced_per_ring_step_and_merged(tiny):
    """Tiny model, cp 2, 32 tokens: each rank holds 16; the ring's kernels run over 16 queries (s / cp), and
    merging the two steps moves 6 B per output element forward, 10 B per element of Q, K, V per step backward."""
    run = training_run(tiny(), context_parallel=2, global_batch=2, sequence_length=32)
    stage = TrainingSimulator(run).stages[0]
    attn = [op for op in stage.forward if op.name == "attention" and op.layer == 0][0]
    merge = [op for op in stage.forward if op.name == "cp_attn_merge" and op.layer == 0][0]
    assert attn.shape[1] == 17  # mean keys per query, doubled, of a causal kernel over 16 tokens (33 over all 32)
    assert attn.flops == 2.0 * 4 * (32 * 33 / 2 / 2) * 2 * 16  # heads x this rank's pairs x (QK^T + PV)
    out, kv = 16 * 4 * 16, 16 * 2 * 4 * 16  # tokens x heads x head dim; K and V
    assert merge.bytes == 6 * (2 - 1) * out
    grad = [op for op in stage.backward if op.name == "cp_attn_merge.bwd" and op.layer == 0][0]
    assert grad.bytes == 10 * 2 * (out + kv)
    # without cp the kernel sees the whole causal sequence and nothing is merged
    plain = TrainingSimulator(training_run(tiny(), global_batch=2, sequence_length=32)).stages[0]
    assert [op.shape[1] for op in plain.forward if op.name == "attention"][0] == 33
    assert not [op for op in plain.forward if op.name == "cp_attn_merge"]


def test_flash2_attention_carries_its_rate_through_ring_steps_and_backward(tiny):
    """attention: flash2 (Transformer Engine with NVTE_FUSED_ATTN=0, as NeMo-Framework-Launcher 24.07 runs):
    the same FLOPs and bytes as flash, the kernel's rate field 0.62 on the forward (after context
    parallelism's s / cp shape) and on its backward, so both take 1 / 0.62 of flash's compute time."""
    kw = dict(context_parallel=2, global_batch=2, sequence_length=32)
    flash = TrainingSimulator(training_run(tiny(), **kw)).stages[0]
    fa2 = TrainingSimulator(training_run(tiny(), attention="flash2", **kw)).stages[0]
    pick = lambda ops, name: [op for op in ops if op.name == name and op.layer == 0][0]  # noqa: E731
    a, b = pick(flash.forward, "attention"), pick(fa2.forward, "attention")
    assert b.shape == (a.shape[0], 17, 0.62) and (b.flops, b.bytes) == (a.flops, a.bytes)
    ga, gb = pick(flash.backward, "attention.bwd"), pick(fa2.backward, "attention.bwd")
    assert gb.shape == (ga.shape[0], 17, 0.62) and gb.flops == ga.flops == 2.5 * a.flops
    pricer = Pricer(load_system("h100-sxm"))
    for x, y in ((a, b), (ga, gb)):
        assert pricer.cost(y).compute_s == pytest.approx(pricer.cost(x).compute_s / 0.62)
    # nothing else changes
    assert [op.name for op in flash.forward + flash.backward] == [op.name for op in fa2.forward + fa2.backward]


def test_sequence_parallelism_shards_saved_activations():
    """Korthikanti et al. 2022: per layer s b h (10 + 24/t) bytes without sequence parallelism, 34/t with it;
    at t = 8 that is a third. simcore's op-by-op count lands in the same place."""
    kw = dict(model="llama-3.1-70b", par={"tp": 8, "pp": 4}, global_batch=8, sequence_length=4096)
    plain = memory(**kw).activations
    sp = memory(sequence_parallel=True, **kw).activations
    assert 0.25 < sp / plain < 0.45


def test_gradient_buckets_carry_every_replicated_parameter_once():
    """ZeRO 1 reduce-scatters fp32 grads and all-gathers bf16 weights; buckets follow the backward."""
    run = training_run(par={"dp": 8, "pp": 2}, global_batch=16, sequence_length=1024, zero_stage=1)
    stages = TrainingSimulator(run).stages
    n = total_params(run.model)
    buckets = [op for s in stages for op in s.grad_buckets()]
    assert {op.collective for op in buckets} == {"reduce_scatter"} and {op.group for op in buckets} == {8}
    assert sum(op.bytes for op in buckets) == 4 * n
    gathers = [op for s in stages for op in s.optimizer_ops() if op.collective == "all_gather"]
    assert sum(op.bytes for op in gathers) == 2 * n
    # Megatron's bucket size: every bucket but the last of a chunk holds at least 40M parameters
    for s in stages:
        sizes = [op.bytes / 4 for op in s.grad_buckets()]
        assert all(size >= 40e6 for size in sizes[:-1])
    # with dp_grad each bucket follows the backward of the layer that completes it; the send stays last
    last = stages[1]
    ops = last.with_buckets(last.backward)
    assert ops[-1].name == "pp_send.bwd"
    for i, op in enumerate(ops):
        if op.name.startswith("dp_grad"):
            assert ops[i - 1].layer == op.layer and ops[i - 1].kind != COMM


def test_strided_data_parallel_groups_carry_more_per_nic_by_hand():
    """tp 4, dp 16 on 8-GPU nodes (Megatron's order tp, cp, dp): 2 of the DP group's ranks per node, so
    the inter-node phase of a reduce-scatter moves half the bucket through each NIC, not an eighth."""
    from simcore.cost.roofline import Pricer

    run = training_run(par={"tp": 4, "dp": 16}, global_batch=16, sequence_length=1024, zero_stage=1)
    bucket = TrainingSimulator(run).stages[0].grad_buckets()[0]
    assert bucket.inter_node and bucket.group == 16 and bucket.per_node == 2
    sys, eff = run.system, run.system.efficiency
    b = bucket.bytes
    inside = sys.intra_link.latency + eff.collectives.nccl_step_latency_us * 1e-6 \
        + (1 / 2) * b / (sys.intra_link.bandwidth * eff.collectives.ring_link)
    across = 7 * (sys.inter_link.latency + eff.collectives.nccl_step_latency_us * 1e-6) \
        + (7 / 8) * (b / 2) / (sys.inter_link.bandwidth * eff.collectives.network_link)
    cost = Pricer(sys).cost(bucket)
    assert cost.memory_s == pytest.approx(inside + across)
    packed = Pricer(sys).cost(replace(bucket, per_node=0))  # as if 8 of the group shared each node
    assert packed.memory_s < cost.memory_s / 2
    # inside one node nothing changes
    local = TrainingSimulator(training_run(par={"tp": 4, "dp": 2}, global_batch=8, sequence_length=1024)).stages[0]
    assert local.grad_buckets()[0].per_node == 0 and not local.grad_buckets()[0].inter_node


def test_gradient_buffer_and_fp8_saved_inputs_by_hand(tiny):
    """Megatron-core's grad buffer is fp32 only when gradients reduce in fp32; Transformer Engine keeps an
    fp8 GEMM's input as its 1-byte transpose: 1 byte less per element of each GEMM input, per layer."""
    from simcore.memory.training import saved_bytes

    kw = dict(global_batch=8, sequence_length=1024)
    n = total_params(training_run().model)
    assert memory(grad_reduce_dtype="bf16", **kw).gradients == 2 * n
    assert memory(**kw).gradients == 4 * n
    b, s, h, inter, layers = 2, 32, 64, 128, 2
    held = {p: saved_bytes(TrainingStage(training_run(tiny(), global_batch=b, micro_batch=b, sequence_length=s,
                                                      gemm_precision=p), 0, 1))[0] for p in ("bf16", "fp8")}
    # qkv, o and gate_up read h-wide inputs, down reads the inter-wide one; the LM head stays 16-bit
    assert held["bf16"] - held["fp8"] == pytest.approx(layers * b * s * (3 * h + inter) * 1.0)


def test_zero3_prefetch_hides_a_gather_under_the_previous_layer_by_hand():
    """Gathers of 0.3, 0.5 and 2.0 s before layers of 1 s each: the first is exposed whole, the
    second hides under layer 0, the third shows its 1 s beyond layer 1 (FSDP's one-layer prefetch)."""
    from types import SimpleNamespace

    from simcore.engine.policies import get_policy
    from simcore.engine.walk import walk
    from simcore.ops.op import Op

    secs = {"g0": 0.3, "g1": 0.5, "g2": 2.0, "a0": 1.0, "a1": 1.0, "a2": 1.0}
    ops = []
    for k in range(3):
        ops.append(Op("dp_param_all_gather.forward", COMM, "collective", k, collective="all_gather", group=4,
                      shape=(f"g{k}",)))
        ops.append(Op(f"a{k}", "compute", GEMM, k, shape=(f"a{k}",)))

    class Stub:
        def cost(self, op):
            t = secs[op.shape[0]]
            return SimpleNamespace(total=t, bound="compute", memory_s=0.0)

    assert walk(ops, Stub(), get_policy("none")).time == pytest.approx(5.8)
    w = walk(ops, Stub(), get_policy("zero_prefetch"))
    assert [t.exposed for t in w.ops] == pytest.approx([0.3, 1.0, 0.0, 1.0, 1.0, 1.0])
    assert w.time == pytest.approx(4.3)


def test_dgrad_reduce_scatter_runs_beside_the_wgrad_gemm_without_userbuffers_by_hand():
    """Transformer Engine without userbuffers: forward all-gather and reduce-scatter block the stream; the
    backward reduce-scatter of a column-parallel GEMM's data gradient is issued between its dgrad and wgrad
    GEMMs and runs beside the wgrad: collective 0.4 s, wgrad 1.0 s -> exposed max + min / 4 - wgrad = 0.1 s;
    under 'none' every collective is exposed whole."""
    from types import SimpleNamespace

    from simcore.engine.policies import get_policy
    from simcore.engine.walk import walk
    from simcore.ops.op import Op

    secs = {"ag": 0.3, "fwd": 2.0, "rs": 0.2, "dgrad": 1.0, "grs": 0.4, "wgrad": 1.0, "norm": 0.1}
    ops = [Op("input_all_gather", COMM, "collective", 0, collective="all_gather", group=2, shape=("ag",)),
           Op("qkv_proj", "compute", GEMM, 0, shape=("fwd",)),
           Op("attn_reduce_scatter", COMM, "collective", 0, collective="reduce_scatter", group=2, shape=("rs",)),
           Op("qkv_proj.dgrad", "backward", GEMM, 0, shape=("dgrad",)),
           Op("input_all_gather.bwd", COMM, "collective", 0, collective="reduce_scatter", group=2, shape=("grs",)),
           Op("qkv_proj.wgrad", "backward", GEMM, 0, shape=("wgrad",)),
           Op("input_norm.bwd", "backward", "memory", 0, shape=("norm",))]

    class Stub:
        def cost(self, op):
            return SimpleNamespace(total=secs[op.shape[0]], bound="compute", memory_s=0.0)

    assert walk(ops, Stub(), get_policy("none")).time == pytest.approx(5.0)
    w = walk(ops, Stub(), get_policy("no_userbuffers"))
    assert [t.exposed for t in w.ops] == pytest.approx([0.3, 2.0, 0.2, 1.0, 0.1, 1.0, 0.1])
    assert w.time == pytest.approx(4.7)
    # and the backward builds that order: every TP reduce-scatter of a data gradient sits between its
    # GEMM's dgrad and wgrad
    stage = TrainingStage(training_run(par={"tp": 2}, global_batch=1, sequence_length=512, sequence_parallel=True), 0, 1)
    names = [op.name for op in stage.backward]
    scatters = [i for i, op in enumerate(stage.backward) if op.kind == COMM and op.collective == "reduce_scatter"]
    between = [i for i in scatters if names[i - 1].endswith(".dgrad")
               and names[i + 1] == names[i - 1].removesuffix(".dgrad") + ".wgrad"]
    assert {names[i - 1] for i in between} == {"qkv_proj.dgrad", "gate_up_proj.dgrad"}
    assert len(between) == 2 * 32  # the QKV and gate-up GEMMs of each of the 32 layers
    assert len(scatters) == 2 * 32 + 1  # and the LM head's input gradient


def test_no_userbuffers_sits_between_no_overlap_and_full_tp_overlap_in_every_mode():
    kw = dict(par={"tp": 2, "pp": 2}, global_batch=4, sequence_length=1024, sequence_parallel=True)
    steps = {(mode, pol): train(engine={"mode": mode, "overlap_policy": pol}, **kw).step_time
             for mode in ("analytical", "hybrid", "flattened") for pol in ("none", "no_userbuffers", "tp_comm")}
    for mode in ("analytical", "hybrid", "flattened"):
        assert steps[mode, "tp_comm"] < steps[mode, "no_userbuffers"] < steps[mode, "none"]
    assert steps["hybrid", "no_userbuffers"] == pytest.approx(steps["analytical", "no_userbuffers"], rel=0.05)
    assert steps["flattened", "no_userbuffers"] == pytest.approx(steps["analytical", "no_userbuffers"], rel=0.05)


def test_without_p2p_overlap_pipeline_sends_block_the_stream():
    """tp_bwd_dp_grad is no_userbuffers without pp_comm (Megatron's overlap_p2p_comm off: the schedule waits
    on its send/recv): the same step without pipeline stages, a longer one with them."""
    kw = dict(global_batch=4, sequence_length=1024, sequence_parallel=True)
    step = lambda pol, par: train(par=par, engine={"overlap_policy": pol}, **kw).step_time  # noqa: E731
    assert step("tp_bwd_dp_grad", {"tp": 2}) == step("no_userbuffers", {"tp": 2})
    assert step("tp_bwd_dp_grad", {"tp": 2, "pp": 2}) > step("no_userbuffers", {"tp": 2, "pp": 2})


def test_zero3_prefetch_shortens_a_step_and_the_modes_agree():
    par = {"tp": 1, "pp": 2, "dp": 4}  # tp 1: no TP collective shares the GPU's link with the gathers
    base = dict(par=par, sequence_length=2048, zero_stage=3)
    plain = train(engine={"overlap_policy": "none"}, **base).step_time
    steps = [train(engine={"mode": m, "overlap_policy": "zero_prefetch"}, **base).step_time
             for m in ("analytical", "hybrid", "flattened")]
    assert max(steps) < 0.9 * plain
    assert max(steps) / min(steps) - 1 < 0.01
    # ZeRO 1 has no per-layer gathers: the policy changes nothing there
    z1 = dict(par=par, sequence_length=2048, zero_stage=1)
    assert train(engine={"overlap_policy": "zero_prefetch"}, **z1).step_time == train(**z1).step_time


def test_attention_dropout_on_materialized_scores_by_hand(tiny):
    """Dropout after the fused softmax: forward reads the probabilities and writes the dropped ones and a
    one-byte mask; backward reads the gradient and the mask and writes one gradient (the same bytes);
    backward keeps the mask; flash attention drops in its kernel and adds nothing."""
    b, s, heads = 2, 64, 4
    kw = dict(global_batch=b, micro_batch=b, sequence_length=s, attention="materialized")
    plain = TrainingStage(training_run(tiny(), **kw), 0, 1)
    drop = TrainingStage(training_run(tiny(), attention_dropout=0.1, **kw), 0, 1)
    names = [op.name for op in drop.forward if op.layer == 0 and op.name.startswith("attn") and op.kind != COMM]
    assert names == ["attn_scores", "attn_softmax", "attn_dropout", "attn_values", "attn_residual"]
    d = next(op for op in drop.forward if op.name == "attn_dropout")
    scores = b * heads * s * s
    assert d.bytes == scores * (2 + 2 + 1)
    bwd = next(op for op in drop.backward if op.name == "attn_dropout.bwd")
    assert bwd.bytes == d.bytes
    assert sum(op.bytes for op in drop.forward) - sum(op.bytes for op in plain.forward) == 2 * d.bytes  # 2 layers
    held = lambda st: TrainingSimulator(st.run).memory().activations  # noqa: E731
    assert held(drop) - held(plain) == pytest.approx(2 * scores, rel=1e-12)  # the masks of both layers
    # selective recompute redoes the dropout with the rest of the attention core
    sel = TrainingStage(training_run(tiny(), attention_dropout=0.1, recompute="selective", **kw), 0, 1)
    assert sum(op.name == "attn_dropout.recompute" for op in sel.backward) == 2
    flash = TrainingStage(training_run(tiny(), global_batch=b, micro_batch=b, sequence_length=s,
                                       attention_dropout=0.1), 0, 1)
    assert not any("dropout" in op.name for op in flash.forward + flash.backward)


def test_residual_adds_and_hidden_dropout_by_hand(tiny):
    """Megatron-core's bias-dropout-add closes each attention and MLP block: forward reads the block output
    and the residual and writes the sum (3 x 2 bytes per element of tokens x hidden), with dropout also a
    1-byte mask; backward adds the residual gradient to the norm's (3 x 2) and with dropout masks the output
    gradient (read 2 + 1, write 2); only the masks are kept for backward; sequence parallelism runs them on
    1/tp of the tokens; full recompute redoes them."""
    b, s, h = 2, 64, 64
    t = b * s
    kw = dict(global_batch=b, micro_batch=b, sequence_length=s)
    plain = TrainingStage(training_run(tiny(), **kw), 0, 1)
    names = [op.name for op in plain.forward if op.layer == 0]
    assert names.index("attn_residual") == names.index("o_proj") + 1
    assert names.index("post_attn_norm") == names.index("attn_residual") + 1
    assert names[-1] == "mlp_residual"  # the layer's last op
    add = next(op for op in plain.forward if op.name == "mlp_residual")
    assert add.bytes == t * h * 6 == 49152
    assert next(op for op in plain.backward if op.name == "mlp_residual.bwd").bytes == 49152
    assert sum(op.name in ("attn_residual", "mlp_residual") for op in plain.forward) == 4  # 2 layers x 2 blocks
    drop = TrainingStage(training_run(tiny(), hidden_dropout=0.1, **kw), 0, 1)
    assert next(op for op in drop.forward if op.name == "attn_residual").bytes == t * h * 7 == 57344
    assert next(op for op in drop.backward if op.name == "attn_residual.bwd").bytes == t * h * (6 + 5) == 90112
    held = lambda st: TrainingSimulator(st.run).memory().activations  # noqa: E731
    assert held(drop) - held(plain) == pytest.approx(4 * t * h, rel=1e-12)  # four 1-byte masks
    sp = TrainingStage(training_run(tiny(), par={"tp": 2}, sequence_parallel=True, **kw), 0, 1)
    assert next(op for op in sp.forward if op.name == "mlp_residual").bytes == t * h * 6 / 2
    full = TrainingStage(training_run(tiny(), recompute="full", **kw), 0, 1)
    assert sum(op.name == "attn_residual.recompute" for op in full.backward) == 2


def test_cross_entropy_bytes_follow_megatron_core_by_hand(tiny):
    """Megatron-core's vocab-parallel cross-entropy over tokens x vocab / tp logits: unfused 38 bytes per
    element forward (.float() 2+4, max 4, subtract 4+4, exp 4+4, sum 4, divide 4+4) and 14 backward
    (multiply 4+4, cast back 4+2); with loss_fusion 22 and 6; the fp32 softmax (4 bytes) is kept."""
    b, s, vocab = 2, 64, 256
    kw = dict(global_batch=b, micro_batch=b, sequence_length=s)
    logits = b * s * vocab
    for fusion, fwd, bwd in ((False, 38, 14), (True, 22, 6)):
        stage = TrainingStage(training_run(tiny(), loss_fusion=fusion, **kw), 0, 1)
        assert next(op for op in stage.forward if op.name == "loss").bytes == fwd * logits
        assert next(op for op in stage.backward if op.name == "loss.bwd").bytes == bwd * logits
    assert 38 * logits == 1_245_184
    tp2 = TrainingStage(training_run(tiny(), par={"tp": 2}, **kw), 0, 1)
    assert next(op for op in tp2.forward if op.name == "loss").bytes == 38 * logits / 2  # this rank's vocabulary half
    from simcore.memory.training import saved_bytes
    stage, without = (TrainingStage(training_run(tiny(), **kw), 0, 1) for _ in range(2))
    without.__dict__["forward"] = [op for op in stage.forward if op.name != "loss"]
    assert saved_bytes(stage)[0] - saved_bytes(without)[0] == 4 * logits  # the fp32 softmax


def test_hidden_dropout_must_be_a_probability_below_one():
    with pytest.raises(SimcoreError, match="hidden_dropout") as err:
        train(hidden_dropout=1.0)
    assert "\n" not in str(err.value)


def test_attention_dropout_must_be_a_probability_below_one():
    with pytest.raises(SimcoreError, match="attention_dropout") as err:
        train(attention="materialized", attention_dropout=1.0)
    assert "\n" not in str(err.value)


def test_fp8_gemms_leave_the_lm_head_in_16_bit():
    """Megatron-core's output layer is not a Transformer Engine module, so fp8 autocast skips it."""
    stage = TrainingStage(training_run(global_batch=1, sequence_length=1024, gemm_precision="fp8"), 0, 1)
    dtypes = {op.name: op.dtype for op in stage.forward if op.family == GEMM}
    assert dtypes["lm_head"] == "bf16" and dtypes["qkv_proj"] == dtypes["down_proj"] == "fp8"
    bwd = {op.name: op.dtype for op in stage.backward if op.family == GEMM}
    assert bwd["lm_head.dgrad"] == bwd["lm_head.wgrad"] == "bf16" and bwd["qkv_proj.wgrad"] == "fp8"


def test_fp8_gemms_pay_their_casts_by_hand(tiny):
    """Transformer Engine casts each fp8 GEMM input and writes its transpose: 4 bytes per element, 2 where a
    norm or the activation already produced it (fused cast); backward casts each output gradient (4 bytes)."""
    b, s, h, inter = 1, 64, 64, 128
    st = TrainingStage(training_run(tiny(), global_batch=b, micro_batch=b, sequence_length=s, gemm_precision="fp8"), 0, 1)
    casts = {op.name: op.bytes for op in st.forward if op.layer == 0 and op.name.endswith(".fp8_cast")}
    t = b * s
    assert casts == {"qkv_proj.fp8_cast": 2 * t * h, "o_proj.fp8_cast": 4 * t * h,
                     "gate_up_proj.fp8_cast": 2 * t * h, "down_proj.fp8_cast": 2 * t * inter}
    bwd = {op.name: op.bytes for op in st.backward if op.layer == 0 and op.name.endswith(".fp8_cast.bwd")}
    assert bwd == {"qkv_proj.fp8_cast.bwd": 4 * t * 3 * h, "o_proj.fp8_cast.bwd": 4 * t * h,
                   "gate_up_proj.fp8_cast.bwd": 4 * t * 2 * inter, "down_proj.fp8_cast.bwd": 4 * t * h}
    assert not any(op.name == "lm_head.fp8_cast" for op in st.forward)  # the head stays 16-bit
    plain = TrainingStage(training_run(tiny(), global_batch=b, micro_batch=b, sequence_length=s), 0, 1)
    assert not any("fp8_cast" in op.name for op in plain.forward + plain.backward)
