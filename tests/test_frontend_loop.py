"""serving.frontend_token_us: the server's frontend loop (docs/serving.md "The frontend loop"). It forwards every
streamed token and takes in new requests on one loop, so a request waits behind the token backlog. Hand-computed
backlogs of the fluid queue, and what the loop does to a served run."""

from __future__ import annotations

import pytest

from simcore.errors import SimcoreError
from simcore.serving.frontend import FrontendLoop
from simcore.serving.silicon import DYNAMO_TOKEN_US, measurement_from_row
from tests.test_serving import run_checked, serving_run


def test_the_backlog_is_token_work_less_the_time_since_the_last_request():
    loop = FrontendLoop(1e-3)  # 1 ms a token
    assert loop.wait(0.0, 0) == 0.0
    # 20 tokens (20 ms of work) streamed over 10 ms: 10 ms left when the next request comes
    assert loop.wait(0.010, 20) == pytest.approx(0.010, abs=1e-15)
    # nothing streamed in 5 more ms: 5 ms left
    assert loop.wait(0.015, 20) == pytest.approx(0.005, abs=1e-15)
    # 5 more tokens over 85 ms: the loop caught up, no wait
    assert loop.wait(0.100, 25) == 0.0
    # below saturation (a token every 2 ms) a request never waits
    idle = FrontendLoop(1e-3)
    assert all(idle.wait(0.002 * i, i) == 0.0 for i in range(1, 50))


WL = {"requests": 640, "arrival": {"process": "closed", "concurrency": 64}, "prompt_tokens": {"value": 256},
      "output_tokens": {"value": 64}}


def test_a_saturated_loop_makes_requests_wait_and_leaves_fewer_decoding():
    base, same, slow = (run_checked(serving_run(WL, {"engine": "trtllm", "frontend_token_us": us})).summary
                        for us in (0.0, 1.0, 2000.0))
    # 1 us a token is far below the engine's token rate: nothing waits, the run is the same
    assert same["ttft_s"]["mean"] == base["ttft_s"]["mean"] and same["tpot_s"]["mean"] == base["tpot_s"]["mean"]
    # 2 ms a token caps the replica at 500 tokens/s: requests queue in front of the engine (TTFT grows) and the
    # engine runs fewer at a time (its steps get shorter); the served token rate falls to about the cap (the first
    # wave, sent before any token, and the tokens after the last request are not held back: 549 tokens/s over 10
    # rounds, against about 4,300 without the loop)
    assert slow["ttft_s"]["mean"] > 10 * base["ttft_s"]["mean"]
    assert slow["tpot_s"]["mean"] < base["tpot_s"]["mean"]
    tokens = 640 * 64
    assert 500 <= tokens / slow["duration_s"] <= 500 * 1.1 and tokens / base["duration_s"] > 4 * 500


def test_the_loop_is_refused_with_disaggregation_and_below_zero():
    dis = {"disaggregation": {"enabled": True, "prefill_replicas": 1, "decode_replicas": 1}}
    with pytest.raises(SimcoreError, match=r"frontend_token_us = 100: .*aggregated serving only") as e:
        serving_run(WL, {**dis, "frontend_token_us": 100.0})
    assert "\n" not in str(e.value)
    with pytest.raises(SimcoreError, match="frontend_token_us"):
        serving_run(WL, {"frontend_token_us": -1.0})


def test_aiperf_rows_get_the_dynamo_loop_and_inferencex_rows_none():
    row = {"system": "h100_sxm", "backend": "vllm", "backend_version": "0.12.0", "model_path": "Qwen/Qwen3-32B",
           "mode": "agg", "isl": "1024", "osl": "128", "batch_size": "16", "tp_size": "2"}
    assert measurement_from_row(row).serving["frontend_token_us"] == DYNAMO_TOKEN_US
    ix = {**row, "silicon_data_source": "source_file=2026-03-25.csv; measured=2026-03-27"}
    assert "frontend_token_us" not in measurement_from_row(ix).serving
