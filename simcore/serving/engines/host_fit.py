"""Host time per engine step, fitted by benchmarks/fit_serving.py from ../shared/calibration/serving_h100.json.

Written by the fitting script; do not edit by hand. const_us: per step; per_request_us: per request in
the step (decodes and prefill chunks); per_token_us: per token scheduled in the step;
eager_layer_us: host floor per layer of a prompt step launched without a CUDA graph;
moe_prompt_layer_us: time per MoE layer added once to a step with prompt tokens (fitted to mean TTFT).
"""

HOST = {
    "sglang": {"const_us": 0.0, "per_request_us": 35.0, "per_token_us": 1.7},  # 84 rows
    "trtllm": {"const_us": 2500.0, "per_request_us": 25.0, "per_token_us": 2.3, "eager_layer_us": 600.0},  # 357 rows
    "vllm": {"const_us": 950.0, "per_request_us": 65.0, "per_token_us": 3.0, "moe_prompt_layer_us": 350.0},  # 138 rows; 90 MoE rows
}
SOURCE = "benchmarks/fit_serving.py on serving_h100.json (H100 rows only), least squares of log TPOT (moe_prompt_layer_us: least absolute log error of mean TTFT)"
