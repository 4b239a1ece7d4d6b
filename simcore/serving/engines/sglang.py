"""SGLang (0.5.x) on an H100-class GPU; docs/serving.md cites each default."""

from __future__ import annotations

from simcore.serving.engines import Profile, host_model, register, version_tuple

GRAPH_SIZES_FROM = (0, 5, 3)  # ServerArgs._generate_cuda_graph_batch_sizes and cuda_graph_max_bs 256 / 512 on an H100


def capture_sizes(max_bs: int) -> tuple[int, ...]:
    """server_args.py: 1, 2, 4, 8, 12, then steps of 8 to 256, then steps of 16, up to cuda_graph_max_bs."""
    sizes = [1, 2, 4, 8, 12] + list(range(16, 257, 8)) + list(range(272, 1025, 16))
    return tuple(s for s in sizes if s <= max_bs)


def capture_sizes_before_0_5_3() -> tuple[int, ...]:
    """model_executor/cuda_graph_runner.py get_batch_sizes_to_capture up to 0.5.2 on a GPU below 90 GB: 1, 2, 4, 8,
    then steps of 8 to 160 (larger decode batches run without a graph)."""
    return tuple([1, 2, 4, 8] + list(range(16, 161, 8)))


def kv_dtype(run) -> str:
    return "bf16" if run.act_dtype == "fp8" else run.act_dtype  # kv_cache_dtype auto: the model's dtype


@register
def profile(version: str | None) -> Profile:
    return Profile(
        name="sglang", version=version,
        description="SGLang: prefill-first (new prompts in chunks of chunked_prefill_size run before decodes), "
                    "new-token-ratio admission, overlap scheduler",
        defaults={"scheduler": "sglang", "max_num_seqs": 4096, "max_num_batched_tokens": 8192,
                  "chunked_prefill": True, "block_size": 1, "watermark": 0.0, "preemption": "recompute"},
        # cuda_graph_max_bs on an H100 at tp < 4 (512 at tp >= 4)
        capture_sizes=(capture_sizes(256) if version_tuple(version) >= GRAPH_SIZES_FROM
                       else capture_sizes_before_0_5_3()),
        kv_dtype=kv_dtype,
        host=host_model("sglang", overlap=True),
        admit_lag=True,
        first_token_waits_launch=True,
    )
