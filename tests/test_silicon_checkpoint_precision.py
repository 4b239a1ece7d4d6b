"""A measured row's precision labels against the checkpoint the engine loads (simcore.serving.silicon):
an MXFP4 checkpoint runs as published whatever a quantized row's labels say (docs/validation-log.md, round 12)."""

from __future__ import annotations

import pytest

from simcore.serving.silicon import experiment_for_row

# aiconfigurator's TensorRT-LLM 1.3.0rc1 gpt-oss row: gemm and MoE labelled fp8, the model the MXFP4 checkpoint
ROW = {"system": "h100_sxm", "backend": "trtllm", "backend_version": "1.3.0rc1", "model_path": "openai/gpt-oss-120b",
       "precision": "fp8", "mode": "agg", "isl": "4000", "osl": "1000", "gemm_quant_mode": "fp8",
       "moe_quant_mode": "fp8", "batch_size": "48", "tp_size": "4", "pp_size": "1", "moe_tp_size": "4",
       "moe_ep_size": "1"}


@pytest.mark.parametrize("label", ["fp8", "fp4", "nvfp4", "mxfp4"])
def test_an_mxfp4_checkpoint_runs_as_published_under_any_quantized_label(label):
    exp = experiment_for_row({**ROW, "precision": label})
    # weights auto: MXFP4 experts, bf16 attention; no KV override, so the engine's own default (bf16 here)
    assert exp["precision"] == {"weights": "auto"} and "inference" not in exp


def test_a_bf16_checkpoint_labelled_fp8_still_runs_w8a8():
    exp = experiment_for_row({**ROW, "model_path": "Qwen/Qwen3-32B", "moe_tp_size": "", "moe_ep_size": ""})
    assert exp["precision"] == {"weights": "fp8", "activations": "fp8"}
    assert exp["inference"] == {"kvcache_precision": "fp8"}  # the generator's searched fp8 KV cache

