"""Host time per engine step, fitted by benchmarks/fit_serving.py from ../shared/calibration/serving_h100.json.

Written by the fitting script; do not edit by hand. const_us: per step; per_request_us: per request in
the step (decodes and prefill chunks); per_token_us: per token scheduled in the step.
"""

HOST = {
    "vllm": {"const_us": 300.0, "per_request_us": 0.0, "per_token_us": 0.0},
    "sglang": {"const_us": 300.0, "per_request_us": 0.0, "per_token_us": 0.0},
    "trtllm": {"const_us": 300.0, "per_request_us": 0.0, "per_token_us": 0.0},
}
SOURCE = "placeholder before the first fit"
