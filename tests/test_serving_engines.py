"""Engine profiles (serving.engine), their schedulers and host model, benchmark warm-up, measured-row builder."""

from __future__ import annotations

import numpy as np
import pytest

from simcore.config.experiment import experiment_from_dict, resolve
from simcore.errors import SimcoreError
from simcore.serving.engines import HostModel, engine_names, get_profile, padded, resolve as resolve_engine
from simcore.serving.engines import version_tuple
from simcore.serving.silicon import AIPERF_CLIENT, DYNAMO_TOKEN_US, Refused, experiment_for_row
from simcore.serving.simulate import simulate
from tests.test_serving import check_invariants, run_checked, serving_run

ONE = {"requests": 1, "arrival": {"process": "fixed", "rate": 1.0}, "prompt_tokens": {"value": 256},
       "output_tokens": {"value": 16}}


def test_three_engines_are_registered():
    assert engine_names() == ["sglang", "trtllm", "vllm"]


@pytest.mark.parametrize("engine, scheduler, block, seqs, tokens, chunked", [
    ("vllm", "vllm", 16, 1024, 8192, True),
    ("sglang", "sglang", 1, 4096, 8192, True),
    ("trtllm", "trtllm", 32, 2048 - 1, 8192, False),  # max_batch_size 2048, one held by the padding request
])
def test_a_profile_fills_only_the_fields_left_unset(engine, scheduler, block, seqs, tokens, chunked):
    run = serving_run(ONE, {"engine": engine})
    _, cfg, prof = resolve_engine(run, run.experiment.serving)
    assert (cfg.scheduler, cfg.block_size, cfg.max_num_seqs, cfg.max_num_batched_tokens, cfg.chunked_prefill) == \
        (scheduler, block, seqs, tokens, chunked)
    run = serving_run(ONE, {"engine": engine, "block_size": 64, "max_num_seqs": 7})
    _, cfg, _ = resolve_engine(run, run.experiment.serving)
    held = 1 if engine == "trtllm" else 0
    assert (cfg.block_size, cfg.max_num_seqs, cfg.scheduler) == (64, 7 - held, scheduler)  # what the user set wins


def test_trtllm_padding_request_holds_one_of_max_num_seqs():
    # the CUDA-graph padding request is a live sequence: c slots run c - 1 requests where a batch is padded
    # (graphs of 1, 2, 4, 8, ...; none is padded up to 2, nor at 3, which would pad to 4 > max_batch_size 3)
    for seqs, runs in ((16, 15), (5, 4), (4, 3), (3, 3), (2, 2), (1, 1)):
        run = serving_run(ONE, {"engine": "trtllm", "max_num_seqs": seqs})
        assert resolve_engine(run, run.experiment.serving)[1].max_num_seqs == runs
    run = serving_run(ONE, {"engine": "vllm", "max_num_seqs": 16})
    assert resolve_engine(run, run.experiment.serving)[1].max_num_seqs == 16


def test_serving_kv_budget_uses_the_engines_own_accounting():
    # Qwen3-32B bf16 on one H100: vLLM's accounting (0.9 of the GPU) leaves no KV block; SGLang's
    # mem_fraction_static leaves it a small cache, and the run goes through
    from simcore.memory import kv_budget

    run = serving_run(ONE, {"engine": "sglang"}, model="qwen3-32b")
    run, cfg, _ = resolve_engine(run, run.experiment.serving)
    sg = kv_budget(run, cfg.max_num_batched_tokens, cfg.max_num_seqs, cfg.block_size, "sglang")
    assert sg.blocks() > 0 and kv_budget(run, cfg.max_num_batched_tokens, cfg.max_num_seqs, cfg.block_size).blocks() <= 0
    assert simulate(serving_run(ONE, {"engine": "sglang"}, model="qwen3-32b")).summary["requests_completed"] == 1


def test_kv_dtype_defaults_per_engine():
    fp8 = {"precision": {"weights": "fp8", "activations": "fp8"}}
    for engine, kv in (("vllm", "bf16"), ("sglang", "bf16"), ("trtllm", "fp8")):
        run = serving_run(ONE, {"engine": engine}, **fp8)
        assert resolve_engine(run, run.experiment.serving)[0].kv_dtype == kv
    run = serving_run(ONE, {"engine": "vllm"}, inference={"kvcache_precision": "fp8"}, **fp8)
    assert resolve_engine(run, run.experiment.serving)[0].kv_dtype == "fp8"  # an explicit KV dtype wins


def test_unknown_engine_is_one_line_with_the_choices():
    with pytest.raises(SimcoreError, match="vllm") as e:
        simulate(serving_run(ONE, {"engine": "vlm"}))
    assert "\n" not in str(e.value) and "engine" in str(e.value)


def test_cuda_graph_padding_and_capture_sizes():
    sizes = get_profile("vllm").capture_sizes
    assert sizes[:5] == (1, 2, 4, 8, 16) and sizes[-1] == 512 and 264 not in sizes and 272 in sizes
    assert [padded(n, sizes) for n in (1, 3, 9, 250, 257, 512, 600)] == [1, 4, 16, 256, 272, 512, 600]
    assert get_profile("trtllm").capture_sizes[-1] == 128
    assert get_profile("sglang").capture_sizes[:6] == (1, 2, 4, 8, 12, 16)
    # up to 0.5.2: 1, 2, 4, 8, then steps of 8 to 160 on an H100; a batch of 9-16 runs the graph of 16
    old = get_profile("sglang", "0.5.1.post1").capture_sizes
    assert old[:6] == (1, 2, 4, 8, 16, 24) and old[-1] == 160 and len(old) == 23
    assert padded(12, old) == 16 and padded(12, get_profile("sglang", "0.5.8.post1").capture_sizes) == 12


def test_host_model_terms_and_overlap():
    h = HostModel(100e-6, 10e-6, 1e-6, overlap=False)
    assert h.time(requests=4, tokens=1000) == pytest.approx(100e-6 + 40e-6 + 1000e-6)
    assert get_profile("vllm", "0.12.0").host.overlap is False  # async scheduling default from 0.14
    assert get_profile("vllm", "0.18.0").host.overlap is True
    assert get_profile("sglang").host.overlap is True and get_profile("trtllm").host.overlap is True
    assert version_tuple("1.0.0rc3") == (1, 0, 0) and version_tuple(None) > version_tuple("99.0")


def test_host_time_adds_per_step_without_overlap_and_hides_under_the_gpu_with_it(monkeypatch):
    """One request, 256-token prompt, 16 outputs: one prefill step and 15 decode steps of batch 1."""
    from simcore.serving.engines import host_fit

    def e2e(const_us, per_req_us, per_tok_us, version):
        monkeypatch.setitem(host_fit.HOST, "vllm", {"const_us": const_us, "per_request_us": per_req_us,
                                                    "per_token_us": per_tok_us})
        return simulate(serving_run(ONE, {"engine": "vllm", "engine_version": version})).summary["e2e_s"]["mean"]

    base = e2e(0, 0, 0, "0.12.0")
    # 16 steps x 1000 us + 16 steps x 1 request x 10 us + (256 + 15) tokens x 2 us
    assert e2e(1000, 10, 2, "0.12.0") - base == pytest.approx(16e-3 + 16 * 10e-6 + 271 * 2e-6, rel=1e-6)
    assert e2e(1000, 0, 0, "0.18.0") == pytest.approx(base, rel=1e-9)  # 1 ms of scheduling hides under each step
    assert e2e(50000, 0, 0, "0.18.0") == pytest.approx(16 * 50e-3, rel=1e-9)  # ... 50 ms does not
    # per-request and per-token work stays on the path between steps even with overlap
    assert e2e(1000, 10, 2, "0.18.0") - base == pytest.approx(16 * 10e-6 + 271 * 2e-6, rel=1e-6)


def test_sglang_runs_prefill_steps_without_decodes():
    """Two requests 1 ms apart. vLLM decodes the first request in the step that prefills the second; SGLang's
    prefill step runs alone, so the first request finishes one decode step later after the second's first token."""
    wl = {"requests": 2, "arrival": {"process": "fixed", "rate": 1000.0}, "prompt_tokens": {"value": 2048},
          "output_tokens": {"value": 64}}
    lag = {}
    for scheduler in ("sglang", "vllm"):  # the same profile (host model, padding), only the scheduler differs
        res = run_checked(serving_run(wl, {"engine": "sglang", "scheduler": scheduler}))
        m = res.metrics
        lag[scheduler] = (m.finish[0] - m.first_token[1], res.summary["tpot_s"]["mean"])
    assert lag["sglang"][0] - lag["vllm"][0] > 0.5 * lag["vllm"][1]


def test_trtllm_never_preempts_and_reserves_the_whole_output():
    """A cache of a few requests' worth: no-evict admission queues instead of preempting."""
    wl = {"requests": 40, "arrival": {"process": "closed", "concurrency": 40}, "prompt_tokens": {"value": 1000},
          "output_tokens": {"value": 1000}}
    small = {"engine": {"gpu_memory_utilization": 0.34}}  # room for weights, the profile-run peak and a few requests' KV
    trt = run_checked(serving_run(wl, {"engine": "trtllm"}, **small)).summary
    vllm = run_checked(serving_run(wl, {"engine": "vllm"}, **small)).summary
    assert trt["preemptions"] == 0 and vllm["preemptions"] > 0
    assert trt["requests_completed"] == 40


def test_warmup_requests_are_run_but_not_measured():
    wl = {"requests": 24, "arrival": {"process": "closed", "concurrency": 4}, "prompt_tokens": {"value": 512},
          "output_tokens": {"value": 32}}
    res = run_checked(serving_run({**wl, "arrival": {**wl["arrival"], "warmup": 8}}))
    m, s = res.metrics, res.summary
    assert s["requests_completed"] == 24
    ttft = m.first_token[8:] - m.arrival[8:]
    assert s["ttft_s"]["mean"] == pytest.approx(float(ttft.mean()))
    first = run_checked(serving_run(wl)).summary
    assert first["ttft_s"]["mean"] != s["ttft_s"]["mean"]  # the first wave's lock-step prefills are left out
    with pytest.raises(SimcoreError, match="warmup"):
        serving_run({**wl, "arrival": {"process": "closed", "concurrency": 4, "warmup": 24}})
    with pytest.raises(SimcoreError, match="warmup"):
        serving_run({**wl, "arrival": {"process": "poisson", "rate": 1.0, "warmup": 2}})


ROW = {"system": "h100_sxm", "backend": "trtllm", "backend_version": "1.0.0rc3", "model_path": "Qwen/Qwen3-32B",
       "precision": "fp8", "mode": "agg", "isl": "1024", "osl": "128", "gemm_quant_mode": "fp8", "batch_size": "16",
       "tp_size": "2", "pp_size": "1", "moe_tp_size": "1", "moe_ep_size": "1"}


def test_experiment_for_row_builds_a_runnable_experiment():
    e = experiment_for_row(ROW, rounds=2)
    assert e["model"] == "qwen3-32b" and e["hardware"] == "h100-sxm" and e["parallelism"] == {"tp": 2, "pp": 1}
    assert e["precision"] == {"weights": "fp8", "activations": "fp8"}
    assert e["workload"]["requests"] == 32 and e["workload"]["arrival"] == {
        "process": "closed", "concurrency": 16, "reissue_delay_s": 0.04, "reissue_delay_dist": "lognormal",
        "reissue_delay_cv": 2.0}
    # aiconfigurator's generator rule: max_batch_size = c, max_num_tokens = c + ISL + 500 in 32s; Dynamo's worker loop
    loop = {"frontend_token_us": DYNAMO_TOKEN_US}
    assert e["serving"] == {"engine": "trtllm", "engine_version": "1.0.0rc3", "max_num_seqs": 16,
                            "max_num_batched_tokens": 1568, **loop}
    assert experiment_for_row(ROW, limits="defaults")["serving"] == {"engine": "trtllm", "engine_version": "1.0.0rc3",
                                                                    **loop}
    vllm = experiment_for_row({**ROW, "backend": "vllm"})
    assert vllm["serving"]["max_num_seqs"] == 512 and vllm["serving"]["max_num_batched_tokens"] == 16 + 1024 + 1500
    assert vllm["inference"] == {"kvcache_precision": "fp8"}  # the generator's fp8 KV for an fp8 deployment
    assert "inference" not in experiment_for_row({**ROW, "backend": "vllm", "precision": ""})
    s = simulate(resolve(experiment_from_dict(e))).summary
    assert s["requests_completed"] == 32 and s["tpot_s"]["mean"] > 0


@pytest.mark.parametrize("change, reason", [
    ({"mode": "disagg", "decode_batch_size": "8"}, "disagg layout"),
    ({"mode": "disagg", "prefill_tp_size": "2", "decode_tp_size": "2", "batch_size": None}, "no concurrency"),
    ({"batch_size": None}, "no concurrency"),
    ({"model_path": "acme/unknown-7B"}, "model not in catalog"),
    ({"system": "tpu_v5"}, "gpu not in catalog"),
    ({"backend": "tgi"}, "engine"),
])
def test_rows_simcore_cannot_express_are_refused_with_a_reason(change, reason):
    row = {k: v for k, v in {**ROW, **change}.items() if v is not None}
    with pytest.raises(Refused) as e:
        experiment_for_row(row)
    assert e.value.reason == reason


def test_attention_dp_rows_carry_the_field():
    e = experiment_for_row({**ROW, "model_path": "MiniMaxAI/MiniMax-M2.5", "backend": "vllm", "tp_size": "4",
                            "attention_dp_size": "4", "moe_ep_size": "16"})
    # a vLLM row "tp 4 x attention_dp 4, ep 16" measured 4 GPUs: 4 DP ranks of tp 1, experts over the 4
    assert e["parallelism"] == {"tp": 1, "pp": 1, "attention_dp": 4, "ep": 4}
    assert np.isfinite(e["serving"]["max_num_batched_tokens"])
    # batch_size is per attention-DP rank: 16 clients on each of 4 ranks are 64 clients, and each rank's
    # scheduler has the generator's limits (max_num_seqs 512, 16 + 1024 + 1500 tokens), so the replica 4x them
    assert e["workload"]["arrival"] == {"process": "closed", "concurrency": 64, **AIPERF_CLIENT}
    assert e["serving"]["max_num_seqs"] == 4 * 512 and e["serving"]["max_num_batched_tokens"] == 4 * 2540


def test_vllm_attention_dp_rows_read_as_tp_size_gpus_and_other_layouts_as_recorded():
    from simcore.serving.layouts import vllm_dp_layout
    from simcore.serving.silicon import measurement_from_row

    assert vllm_dp_layout(4, 4, 1, 16) == (1, 4)  # moe_tp x moe_ep = tp x adp: the inflated record
    assert vllm_dp_layout(8, 2, 2, 8) == (4, 4)
    assert vllm_dp_layout(1, 8, 1, 8) == (1, 8)  # tp_size does not split over the ranks: as recorded
    assert vllm_dp_layout(4, 4, 1, 4) == (4, 4)  # experts already over tp_size GPUs: as recorded
    assert vllm_dp_layout(4, 1, 1, 4) == (4, 4)  # no attention DP
    row = {**ROW, "model_path": "MiniMaxAI/MiniMax-M2.5", "tp_size": "4", "attention_dp_size": "4",
           "moe_ep_size": "16"}
    trt = measurement_from_row(row)  # only vLLM rows showed it: other engines keep their fields
    assert (trt.tp, trt.attention_dp, trt.ep, trt.concurrency) == (4, 4, 16, 64)


def test_an_explicit_iteration_overhead_replaces_the_profiles_constant():
    e2e = [simulate(serving_run(ONE, {"engine": "vllm", "engine_version": "0.12.0", "iteration_overhead_us": us}))
           .summary["e2e_s"]["mean"] for us in (0, 1000)]
    assert e2e[1] - e2e[0] == pytest.approx(16 * 1e-3, rel=1e-6)  # one prefill + 15 decode steps, 1 ms each


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_one_request_under_a_profile_without_host_time_matches_the_static_batch_1_run(engine, monkeypatch):
    from simcore.config.experiment import experiment_from_dict as exp_dict
    from simcore.run.static import simulate as static_simulate
    from simcore.serving.engines import host_fit

    monkeypatch.setitem(host_fit.HOST, engine, {"const_us": 0.0, "per_request_us": 0.0, "per_token_us": 0.0})
    wl = {**ONE, "prompt_tokens": {"value": 1024}, "output_tokens": {"value": 128}}
    s = simulate(serving_run(wl, {"engine": engine})).summary
    static = static_simulate(resolve(exp_dict({
        "model": "llama-3.1-8b", "hardware": "h100-sxm",
        "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 1024, "output_tokens": 128}})))
    assert s["ttft_s"]["mean"] == pytest.approx(static.ttft, rel=0.01)
    assert s["tpot_s"]["mean"] == pytest.approx(float(static.step_times.mean()), rel=0.01)


def _sglang_runs(monkeypatch, wl: dict) -> dict:
    """SGLang without host time, its overlap-loop behaviours on ("on") and off ("off"): the runs' metrics."""
    import dataclasses

    from simcore.serving import engines
    from simcore.serving.engines import host_fit

    monkeypatch.setitem(host_fit.HOST, "sglang", {"const_us": 0, "per_request_us": 0, "per_token_us": 0})
    real = engines.get_profile
    out = {}
    for key, on in (("on", True), ("off", False)):
        monkeypatch.setattr(engines, "get_profile", lambda name, version=None, on=on: dataclasses.replace(
            real(name, version), admit_lag=on, first_token_waits_launch=on))
        out[key] = run_checked(serving_run(wl, {"engine": "sglang"})).metrics
    return out


def test_sglang_sends_a_prefill_steps_first_tokens_once_the_next_prefill_step_has_run(monkeypatch):
    """Request 0 (2048-token prompt) arrives at an idle engine at t = 0, request 1 at 1 ms, during request 0's
    prefill step. SGLang's overlap loop processes batch n's results after launching batch n+1, and an eager prefill
    launch ends as the step ends: request 0's first token goes out when request 1's prefill step (the next one) ends,
    which is when request 1's own goes out (a decode step follows, launched at once). Request 1 is scheduled right
    after request 0's prefill step (the loop's next pass starts when that launch ends), as without the lag."""
    assert get_profile("sglang").first_token_waits_launch and get_profile("sglang").admit_lag
    wl = {"requests": 2, "arrival": {"process": "fixed", "rate": 1000.0}, "prompt_tokens": {"value": 2048},
          "output_tokens": {"value": 64}}
    m = _sglang_runs(monkeypatch, wl)
    on, off = m["on"], m["off"]
    assert on.arrival[1] == pytest.approx(1e-3)
    assert on.first_token[1] == pytest.approx(off.first_token[1], rel=1e-12)  # end of step 2 either way
    assert on.first_token[0] == pytest.approx(off.first_token[1], rel=1e-12)  # was: end of step 1
    assert off.first_token[1] == pytest.approx(2 * off.first_token[0], rel=1e-9)  # two equal prefill steps
    assert np.allclose(on.finish, off.finish, rtol=1e-12)  # the steps themselves do not change


def test_sglang_sends_first_tokens_at_once_before_a_decode_step_or_an_idle_engine(monkeypatch):
    """One request at a time (the next arrives 1 s later, after the first has finished): every prefill step is
    followed by decode steps (a CUDA graph, launched at once) or by nothing, so nothing waits."""
    wl = {"requests": 2, "arrival": {"process": "fixed", "rate": 1.0}, "prompt_tokens": {"value": 2048},
          "output_tokens": {"value": 16}}
    m = _sglang_runs(monkeypatch, wl)
    assert m["on"].finish[0] < m["on"].arrival[1]
    assert np.allclose(m["on"].first_token, m["off"].first_token, rtol=1e-12)


def test_sglang_schedules_an_arrival_during_a_decode_step_one_step_late(monkeypatch):
    """Request 1 arrives 50 ms into request 0's decode (256-token prompts): SGLang formed the next batch as the running
    decode step started (its CUDA graph launches at once), so request 1 waits one more batch-1 decode step."""
    wl = {"requests": 2, "arrival": {"process": "fixed", "rate": 1 / 0.05}, "prompt_tokens": {"value": 256},
          "output_tokens": {"value": 64}}
    m = _sglang_runs(monkeypatch, wl)
    on, off = m["on"], m["off"]
    tpot = (off.finish[0] - off.first_token[0]) / 63
    assert on.first_token[0] == pytest.approx(off.first_token[0], rel=1e-12)
    assert on.first_token[1] - off.first_token[1] == pytest.approx(tpot, rel=0.05)


def test_first_tokens_wait_for_a_mixed_prefill_step_and_go_out_with_the_second(monkeypatch):
    """The same two requests as above under a scheduler that decodes request 0 in request 1's prefill step (vLLM's):
    with the wait, request 0's first token goes out at the end of that mixed step, together with its second token
    (one zero inter-token gap), so its TTFT is request 1's end of prefill and its E2E does not change."""
    import dataclasses

    from simcore.serving import engines
    from simcore.serving.engines import host_fit

    monkeypatch.setitem(host_fit.HOST, "sglang", {"const_us": 0, "per_request_us": 0, "per_token_us": 0})
    real = engines.get_profile
    wl = {"requests": 2, "arrival": {"process": "fixed", "rate": 1000.0}, "prompt_tokens": {"value": 2048},
          "output_tokens": {"value": 64}}
    out = {}
    for on in (True, False):
        monkeypatch.setattr(engines, "get_profile", lambda name, version=None, on=on: dataclasses.replace(
            real(name, version), admit_lag=False, first_token_waits_launch=on))
        out[on] = run_checked(serving_run(wl, {"engine": "sglang", "scheduler": "vllm"}))
    on, off = out[True].metrics, out[False].metrics
    assert off.first_token[0] < off.first_token[1]  # step 1: request 0's prefill; step 2: its decode + request 1's
    assert on.first_token[0] == pytest.approx(off.first_token[1], rel=1e-12)
    assert on.first_token[1] == pytest.approx(off.first_token[1], rel=1e-12)  # a plain decode step follows
    assert np.allclose(on.finish, off.finish, rtol=1e-12)
    for m in (on, off):  # the inter-token gaps still add up to finish - first token (one of request 0's is now zero)
        m.itl_stats()
        assert m.itl_sum == pytest.approx(float(np.sum(m.finish - m.first_token)), rel=1e-9)
    assert out[True].summary["itl_s"]["mean"] < out[False].summary["itl_s"]["mean"]


def test_an_explicit_memory_fraction_is_each_engines_own_flag():
    """engine.gpu_memory_utilization, set, is SGLang's mem_fraction_static and TensorRT-LLM's
    free_gpu_memory_fraction in a serving run (docs/experiments.md); unset, those engines keep their defaults."""
    from simcore.memory.budget import replica_kv
    from simcore.memory.engines import engine_memory

    same = {"trtllm": {"max_num_tokens": 8192, "max_batch_size": 256, "tokens_per_block": 32},
            "sglang": {"chunked_prefill_size": 8192, "page_size": 32}}
    for engine, flag in (("trtllm", "free_gpu_memory_fraction"), ("sglang", "mem_fraction_static")):
        unset = serving_run(ONE, {"engine": engine})
        half = serving_run(ONE, {"engine": engine}, engine={"gpu_memory_utilization": 0.5})
        _, b_unset = replica_kv(unset, 8192, 256, 32, engine)
        _, b_half = replica_kv(half, 8192, 256, 32, engine)
        assert b_half.stages[0].kv_capacity == pytest.approx(
            engine_memory(half, engine, **same[engine], **{flag: 0.5}).stages[0].kv, rel=1e-12)
        assert b_unset.stages[0].kv_capacity == pytest.approx(
            engine_memory(unset, engine, **same[engine]).stages[0].kv, rel=1e-12)
        assert b_half.stages[0].kv_capacity < b_unset.stages[0].kv_capacity
    # TensorRT-LLM's fraction scales what is free after weights and the profile forward: 0.5 / 0.9 of the default
    run = serving_run(ONE, {"engine": "trtllm"})
    assert engine_memory(run, "trtllm", free_gpu_memory_fraction=0.5).stages[0].kv == pytest.approx(
        engine_memory(run, "trtllm").stages[0].kv * 0.5 / 0.9, rel=1e-12)
