"""TensorRT-LLM (PyTorch backend, trtllm-serve) on an H100-class GPU; docs/serving.md cites each default."""

from __future__ import annotations

import math

from simcore.serving.engines import Profile, fitted_s, host_model, register


def capture_sizes(max_bs: int, padding: bool = True) -> tuple[int, ...]:
    """The batch sizes TensorRT-LLM captures for cuda_graph_config.max_batch_size (128 by default) when it lists
    none (llm_args.py CudaGraphConfig._generate_cuda_graph_batch_sizes, 1.0-1.2): with padding 1, 2, 4 and the
    multiples of 8 to 128, else 1-31, 32, 64 and 128; then the powers of 2 from 256 below max_batch_size, and
    max_batch_size itself."""
    sizes = [1, 2, 4] + list(range(8, 129, 8)) if padding else list(range(1, 32)) + [32, 64, 128]
    sizes += [2 ** i for i in range(8, math.ceil(math.log2(max_bs)))] if max_bs > 1 else []
    sizes = sorted(s for s in sizes if s <= max_bs)
    return tuple(sizes if sizes[-1] == max_bs else sizes + [max_bs])


def kv_dtype(run) -> str:
    # kv_cache_config.dtype auto: the checkpoint's kv_cache_quant_algo; FP8 (ModelOpt) checkpoints quantize the KV
    return "fp8" if run.weight_dtype == "fp8" else run.act_dtype


@register
def profile(version: str | None) -> Profile:
    return Profile(
        name="trtllm", version=version,
        description="TensorRT-LLM in-flight batching: generation first, then whole context requests under "
                    "max_num_tokens (chunking off), GUARANTEED_NO_EVICT admission, overlap scheduler",
        defaults={"scheduler": "trtllm", "max_num_seqs": 2048, "max_num_batched_tokens": 8192,
                  "chunked_prefill": False, "block_size": 32, "watermark": 0.0, "preemption": "recompute"},
        capture_sizes=capture_sizes(128),
        kv_dtype=kv_dtype,
        # overlap scheduler on: TensorRT-LLM's default (docs/source/features/overlap-scheduler.md) and what
        # aiconfigurator's generator writes for agg workers since Dec 2025 (rule_plugin/trtllm.rule @095f58a5);
        # its Aug 2025 1.0.0rc3 template turned it off (docs/validation-log.md, "Round 6": tried, not adopted)
        host=host_model("trtllm", overlap=True),
        padding_holds_seq=True,  # model_engine.py _get_padded_batch: kv_cache_manager.add_dummy_requests (1.0)
        # CUDA graphs only for generation-only batches (cuda_graph_runner.py: a batch with context requests has
        # can_run_cuda_graph false), so a step with a prompt is launched op by op from Python: its host floor per
        # layer is fitted with the host constants by benchmarks/fit_serving.py (docs/validation-log.md, "Round 13: the
        # eager floor as a fitted host constant"); aiconfigurator's 0.8 ms per layer is its vLLM backend's only
        eager_layer_s=fitted_s("trtllm", "eager_layer_us"),
        # the overlap loop launches step n+1 (_forward_step) before it returns step n's tokens
        # (_process_previous_batch -> _handle_responses; py_executor.py PyExecutor._executor_loop_overlap, 1.0), and
        # a prompt step's launch is eager (above), so a prompt step's first tokens wait for a following prompt step
        first_token_waits_launch=True,
    )
