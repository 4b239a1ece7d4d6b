"""What InferenceX's recipes set on the engines behind its exports' rows (simcore.serving.recipes; docs/validation.md
"InferenceX recipes"), and how silicon rows take it. Values are the recipes' own, computed by hand."""

from __future__ import annotations

import pytest

from simcore.serving.engines.trtllm import capture_sizes
from simcore.serving.recipes import Deployment, recipe
from simcore.serving.silicon import experiment_for_row, measurement_from_row


def _row(system, backend, model, precision, c, isl, osl, tp, measured, version="", **extra):
    src = "source_file=2026-03-25.csv; model=X" + (f"; measured={measured}" if measured else "")
    return {"system": system, "backend": backend, "backend_version": version, "model_path": model,
            "precision": precision, "mode": "agg", "isl": str(isl), "osl": str(osl), "batch_size": str(c),
            "tp_size": str(tp), "pp_size": "1", "silicon_data_source": src, **extra}


def test_trtllm_graphs_follow_tensorrt_llms_generated_sizes():
    # CudaGraphConfig._generate_cuda_graph_batch_sizes with padding: 1, 2, 4, 8..128, powers of 2, the max itself
    assert capture_sizes(48) == (1, 2, 4, 8, 16, 24, 32, 40, 48)
    assert capture_sizes(1024)[-4:] == (128, 256, 512, 1024)
    assert capture_sizes(300)[-3:] == (128, 256, 300)
    assert capture_sizes(100, padding=False) == tuple(range(1, 32)) + (32, 64, 100)


def test_gpt_oss_on_tensorrt_llm_h200_and_b200():
    h200 = measurement_from_row(_row("h200_sxm", "trtllm", "openai/gpt-oss-120b", "fp4", 48, 1024, 1024, 2,
                                     "2025-12-15", "gpt-oss-dev"))
    assert h200.serving == {"max_num_batched_tokens": 20000, "max_num_seqs": 48, "cuda_graph_padding": True,
                            "cuda_graph_batch_sizes": list(capture_sizes(48))}
    # kv_cache_config.dtype auto: the checkpoint's own (no override reaches the experiment)
    assert h200.kv_cache_dtype is None and h200.kv_named
    e = experiment_for_row(_row("b200_sxm", "trtllm", "openai/gpt-oss-120b", "fp4", 64, 1024, 1024, 2, "2026-02-05",
                                "1.2.0rc2.post2"))
    assert e["serving"]["max_num_seqs"] == 512 and e["serving"]["max_num_batched_tokens"] == 20000
    # the B200 recipe's fp8 KV stands, though the MXFP4 checkpoint otherwise keeps its own KV default
    assert e["inference"] == {"kvcache_precision": "fp8"}
    # kv_cache_config.free_gpu_memory_fraction 0.85: the experiment's engine memory fraction
    assert e["engine"] == {"gpu_memory_utilization": 0.85}


@pytest.mark.parametrize("isl, osl, tp, wait", [(1024, 1024, 4, (20, 0.9)), (1024, 1024, 8, None),
                                                (8192, 1024, 4, None)])
def test_llama_70b_on_tensorrt_llm_waits_for_batches_at_1k1k_below_tp8(isl, osl, tp, wait):
    s = measurement_from_row(_row("h200_sxm", "trtllm", "meta-llama/Llama-3.1-70B", "fp8", 16, isl, osl, tp,
                                  "2025-10-29")).serving
    assert s["max_num_batched_tokens"] == 16384 and "max_num_seqs" not in s  # absent: the engine's 2048
    assert s["cuda_graph_batch_sizes"][-1] == 1024
    assert (s.get("batch_wait_iters"), s.get("batch_wait_tokens_ratio")) == (wait or (None, None))


def test_deepseek_r1_on_tensorrt_llm_by_day_and_image():
    dsr1 = ("h200_sxm", "trtllm", "deepseek-ai/DeepSeek-R1", "fp8")
    s = measurement_from_row(_row(*dsr1, 16, 1024, 1024, 8, "2025-11-02")).serving
    assert s["max_num_batched_tokens"] == 1152  # ceil64(16 + 1024 + 64)
    assert s["cuda_graph_batch_sizes"][-1] == 128
    # from 2026-01-14 an MTP recipe ran beside the plain one on the same image: not told, the reading it had
    s = measurement_from_row(_row(*dsr1, 16, 1024, 1024, 8, "2026-01-14", "1.1.0rc2.post2")).serving
    assert s["max_num_seqs"] == 16 and s["max_num_batched_tokens"] == 1568  # the generator's: 16 + 1024 + 500, 32-aligned
    b200 = ("b200_sxm", "trtllm", "deepseek-ai/DeepSeek-R1", "fp8")
    s = measurement_from_row(_row(*b200, 64, 1024, 1024, 8, "2026-01-29", "1.2.0rc6.post2")).serving
    assert s["max_num_batched_tokens"] == 8192 and s["cuda_graph_batch_sizes"][-1] == 64
    assert (s["batch_wait_iters"], s["batch_wait_tokens_ratio"]) == (40, 0.8)
    # 1.2.0rc6.post3 was the MTP recipe's image
    assert recipe("b200_sxm", "trtllm", "deepseek-ai/DeepSeek-R1", "fp8", "2026-02-05",
                  Deployment(64, 1024, 1024, 8, version="1.2.0rc6.post3")) is None


def test_without_a_day_a_recipe_applies_only_where_every_version_agrees():
    d = Deployment(16, 1024, 1024, 4)
    assert recipe("h200_sxm", "vllm", "meta-llama/Llama-3.1-70B", "fp8", None, d) == {
        "serving": {"max_num_seqs": 16}, "kv_cache_dtype": "fp8"}
    assert recipe("b200_sxm", "vllm", "openai/gpt-oss-120b", "fp4", None, d) is None  # kv auto, then fp8
    assert recipe("b200_sxm", "vllm", "openai/gpt-oss-120b", "fp4", "2026-02-25", d)["kv_cache_dtype"] == "fp8"
    assert recipe("h200_sxm", "sglang", "deepseek-ai/DeepSeek-R1", "fp8", None, d) is None  # known from a day on
    assert recipe("h200_sxm", "sglang", "deepseek-ai/DeepSeek-R1", "fp8", "2026-03-25", d) == {
        "serving": {"max_num_seqs": 512, "max_num_batched_tokens": 32768}, "memory_fraction": 0.82}
    assert recipe("h200_sxm", "sglang", "deepseek-ai/DeepSeek-R1", "fp8", "2026-02-01", d) is None  # before it
    assert recipe("h100_sxm", "trtllm", "openai/gpt-oss-120b", "fp8", "2026-03-18", d) is None  # no recipe known


def test_rows_of_other_campaigns_or_with_attention_dp_take_no_recipe():
    gptoss = _row("h200_sxm", "trtllm", "openai/gpt-oss-120b", "fp4", 48, 1024, 1024, 2, "2025-12-15")
    assert measurement_from_row({**gptoss, "attention_dp_size": "2"}).serving.get("max_num_batched_tokens") != 20000
    aic = {**gptoss, "silicon_data_source": "source_file=/x/aic-auto-gap-analysis/data/h200.csv"}
    assert measurement_from_row(aic).serving["max_num_batched_tokens"] != 20000


def test_recipe_coverage_counts_rows_by_reading():
    import sys
    sys.path.insert(0, "benchmarks")
    from recipe_coverage import coverage

    rows = [_row("h200_sxm", "trtllm", "openai/gpt-oss-120b", "fp4", 48, 1024, 1024, 2, "2025-12-15"),
            _row("h200_sxm", "trtllm", "openai/gpt-oss-120b", "fp4", 48, 1024, 1024, 2, "2025-12-15",
                 attention_dp_size="2"),
            _row("h200_sxm", "trtllm", "deepseek-ai/DeepSeek-R1", "fp8", 16, 1024, 1024, 8, "2026-01-14"),
            {**_row("h200_sxm", "trtllm", "openai/gpt-oss-120b", "fp4", 48, 1024, 1024, 2, None),
             "silicon_data_source": "source_file=/x/aic-auto-gap-analysis/data/a.csv"}]
    assert coverage(rows) == {("h200_sxm", "trtllm", "gpt-oss-120b", "recipe"): 1,
                              ("h200_sxm", "trtllm", "gpt-oss-120b", "attention DP"): 1,
                              ("h200_sxm", "trtllm", "DeepSeek-R1", "unknown"): 1,
                              ("h200_sxm", "trtllm", "", "not InferenceX"): 1}


def test_limits_given_by_the_caller_replace_the_recipe():
    row = _row("h200_sxm", "trtllm", "openai/gpt-oss-120b", "fp4", 48, 1024, 1024, 2, "2025-12-15")
    assert measurement_from_row(row, limits="aiconfigurator").serving["max_num_batched_tokens"] == 1600  # 48+1024+500
    assert measurement_from_row(row, limits="defaults").serving == {}


def test_a_recipes_memory_fraction_reaches_the_experiment():
    kimi = experiment_for_row(_row("b200_sxm", "vllm", "moonshotai/Kimi-K2.5", "int4", 16, 1024, 1024, 8,
                                   "2026-03-24", "v0.15.1"))
    assert kimi["engine"] == {"gpu_memory_utilization": 0.95} and kimi["serving"]["max_num_seqs"] == 16
    fp4 = experiment_for_row(_row("b200_sxm", "vllm", "moonshotai/Kimi-K2.5", "fp4", 16, 1024, 1024, 4,
                                  "2026-03-11", "v0.17.0"))
    assert "engine" not in fp4  # 0.90: vLLM's default, not written
    glm = experiment_for_row(_row("h200_sxm", "sglang", "zhipuai/GLM-5", "fp8", 16, 1024, 1024, 8, "2026-03-19"))
    assert glm["engine"] == {"gpu_memory_utilization": 0.85} and glm["serving"] == {"engine": "sglang"}


def test_a_recipe_that_ignored_the_rows_expert_split_sets_it():
    """vLLM MiniMax-M2.5 on H200 ran --enable-expert-parallel from 2026-03-13 whatever EP_SIZE said; Kimi-K2.5 fp4 on
    B200 ran pure TP though its rows say ep 4."""
    mm = _row("h200_sxm", "vllm", "MiniMaxAI/MiniMax-M2.5", "fp8", 16, 1024, 1024, 8, "2026-03-27", "0.18.0")
    rec = measurement_from_row(mm)
    assert rec.ep == 8 and experiment_for_row(mm)["engine"] == {"gpu_memory_utilization": 0.95, "moe_dispatch": "all_gather"}
    assert measurement_from_row({**mm, "silicon_data_source": "source_file=2026-03-25.csv; measured=2026-03-01"}).ep == 1
    kimi = _row("b200_sxm", "vllm", "moonshotai/Kimi-K2.5", "fp4", 16, 1024, 1024, 4, "2026-03-11", "0.17.0",
                moe_ep_size="4", moe_tp_size="1")
    assert measurement_from_row(kimi).ep == 1
    b200 = _row("b200_sxm", "vllm", "MiniMaxAI/MiniMax-M2.5", "fp8", 16, 1024, 1024, 4, "2026-03-11", "0.17.0")
    assert measurement_from_row(b200).serving == {"block_size": 32} and measurement_from_row(b200).ep == 4


def test_rows_of_several_days_take_the_recipe_only_when_one_version_spans_them():
    d = Deployment(16, 1024, 1024, 8)
    mm = ("h200_sxm", "vllm", "MiniMaxAI/MiniMax-M2.5", "fp8")
    assert recipe(*mm, "2026-03-27", d, last="2026-03-28")["ep"] is not None  # both after 2026-03-13
    assert recipe(*mm, "2026-03-01", d, last="2026-03-28") is None  # 0.95 without, then with expert parallel
    row = _row(*mm, 16, 1024, 1024, 8, None, "0.18.0")
    row["silicon_data_source"] += "; measured_from=2026-03-27; measured_to=2026-03-28"
    assert measurement_from_row(row).ep == 8
