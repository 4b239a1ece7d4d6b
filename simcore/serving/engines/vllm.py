"""vLLM (V1 engine, OpenAI API server) on an H100-class GPU; docs/serving.md cites each default."""

from __future__ import annotations

from simcore.serving.engines import Profile, fitted_s, host_model, register, version_tuple

ASYNC_FROM = (0, 14)  # async scheduling on by default (vllm PR #27614, the last step of issue #27679)


def capture_sizes(max_size: int) -> tuple[int, ...]:
    """vllm/config/compilation.py: [1, 2, 4] + multiples of 8 below 256 + multiples of 16 up to the max."""
    sizes = [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, max_size + 1, 16))
    return tuple(s for s in sizes if s <= max_size)


def kv_dtype(run) -> str:
    return "bf16" if run.act_dtype == "fp8" else run.act_dtype  # kv_cache_dtype auto: the model's dtype


@register
def profile(version: str | None) -> Profile:
    max_num_seqs = 1024  # EngineArgs.get_batch_defaults: >= 70 GiB GPUs, OPENAI_API_SERVER
    overlap = version_tuple(version) >= ASYNC_FROM
    return Profile(
        name="vllm", version=version,
        description="vLLM V1: decode first, chunked prefill under max_num_batched_tokens, async scheduling "
                    "from 0.14",
        defaults={"scheduler": "vllm", "max_num_seqs": max_num_seqs, "max_num_batched_tokens": 8192,
                  "chunked_prefill": True, "block_size": 16, "watermark": 0.0, "preemption": "recompute"},
        capture_sizes=capture_sizes(min(2 * max_num_seqs, 512)),  # max_cudagraph_capture_size default
        kv_dtype=kv_dtype,
        host=host_model("vllm", overlap=overlap),
        # async scheduling: EngineCore.step_with_batch_queue schedules the next batch before blocking on the
        # running one (vllm/v1/engine/core.py; 2 batches in flight, MultiprocExecutor.max_concurrent_batches)
        admit_lag=overlap,
        # a step with prompt tokens of an MoE model takes this much longer per MoE layer: fitted to the H100 vLLM
        # MoE rows' mean TTFT (benchmarks/fit_serving.py); its mechanism is unknown (docs/validation-log.md "Round 13
        # (branch vmoe)", "Round 14 (branch vmoe2)")
        moe_prompt_layer_s=fitted_s("vllm", "moe_prompt_layer_us"),
    )
