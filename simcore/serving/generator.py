"""The engine settings aiconfigurator's generator writes for a deployment (src/aiconfigurator/generator/rule_plugin/
{trtllm,vllm,sglang}.rule and backend_templates/, github.com/ai-dynamo/aiconfigurator): the limits of an aggregated
worker or a disaggregated pool, and, by the day it ran, the CUDA graphs it gave a TensorRT-LLM engine. The silicon rows
of aiconfigurator's own sweep ran under these (simcore.serving.silicon; docs/validation-log.md "Round 7", "Round 15")."""

from __future__ import annotations


def trt_tokens(n: int) -> int:
    """A TensorRT-LLM max_num_tokens as aiconfigurator's generator writes it: rounded up to 32-token blocks."""
    return -(-n // 32) * 32


# TensorRT-LLM's agg max_num_tokens: batch + ISL + 1500 in every generator until 1cc3526b4 (2026-04-01) cut the
# production rule's margin to 500 (rule_plugin/trtllm.rule; the Aug 2025 cli/backends/trtllm.py wrote + 1500 too)
TRT_MARGIN_500_FROM = "2026-04-01"


def deployment(engine: str, c: int, isl: int, day: str | None = None) -> dict:
    """The engine limits aiconfigurator's generator writes for an aggregated worker of `c` clients
    (src/aiconfigurator/generator/rule_plugin/{trtllm,vllm,sglang}.rule @095f58a5; `day`, YYYY-MM-DD, the day
    the row was measured where known: the generator of that day). The generator also passes the KV cache dtype
    of the configuration it searched (module_bridge.py: kvcache_quant_mode -> kv_cache_dtype): fp8 for fp8
    deployments, set by experiment_for_row."""
    if engine == "trtllm":  # max_batch_size = batch_size; max_num_tokens = batch + ISL + margin, in 32-token blocks
        margin = 1500 if day and day < TRT_MARGIN_500_FROM else 500
        return {"max_num_seqs": c, "max_num_batched_tokens": trt_tokens(c + isl + margin)}
    if engine == "vllm":  # max_num_seqs 512 (2 x batch past 512); max_num_batched_tokens = batch + ISL + 1500
        return {"max_num_seqs": 512 if c < 512 else 2 * c, "max_num_batched_tokens": c + isl + 1500}
    # sglang: --enable-mixed-chunk (decodes ride in prefill batches: the vllm step) and
    # --max-prefill-tokens ISL + 1500 under the default chunked_prefill_size 8192
    return {"scheduler": "vllm", "max_num_seqs": 512 if c < 512 else 2 * c,
            "max_num_batched_tokens": min(8192, isl + 1500)}


def pool_limits(engine: str, which: str, batch: int | None, isl: int) -> dict:
    """The engine limits aiconfigurator's generator writes for a disaggregated worker of max batch `batch`
    (src/aiconfigurator/generator/rule_plugin/{trtllm,vllm,sglang}.rule @095f58a5): prefill workers
    max_batch_size 1 unless set, max tokens ISL + 1500 (TensorRT-LLM: in 32-token blocks); decode workers
    their batch, max tokens = batch (TensorRT-LLM, vLLM); SGLang sets only max_prefill_tokens ISL + 1500."""
    if which == "prefill":
        tokens = isl + 1500
        if engine == "trtllm":
            tokens = trt_tokens(tokens)
        elif engine == "sglang":  # --max-prefill-tokens under the default chunked_prefill_size 8192, as deployment()
            tokens = min(tokens, 8192)
        return {"max_num_seqs": batch or 1, "max_num_batched_tokens": tokens}
    if batch is None:
        return {}
    if engine == "sglang":
        return {"max_num_seqs": batch}
    return {"max_num_seqs": batch, "max_num_batched_tokens": trt_tokens(batch) if engine == "trtllm" else batch}


# What the generator put in a TensorRT-LLM engine's cuda_graph_config, by the date it ran (its templates
# extra_engine_args.<version>.yaml.j2 read cuda_graph_config.enable_padding | default(false) and
# cuda_graph_config.batch_sizes | default([1, 2, 4, ..., 256])): until 21ab3c64e (2026-03-04) backend_config_mapping.yaml
# mapped the rules' cuda_graph_batch_sizes to cuda_graph_config.batch_sizes, and every rule then wrote 1..max_batch_size
# and no padding (rule_plugin/trtllm.rule @612e5b10, benchmark/trtllm.rule @71bb3d00e); from then until 2e4053859
# (2026-05-12) the mapping was null and nothing filled the nested dict, so every engine got the template's defaults
# (docs/validation-log.md, "Round 15"). Other days keep the engine profile's graphs.
TEMPLATE_GRAPHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GRAPHS_UNMAPPED = ("2026-03-04", "2026-05-12")  # [from, until) the generator left cuda_graph_config to the template


def graphs(day: str | None, max_batch: int) -> dict:
    """The serving fields for the CUDA graphs of a TensorRT-LLM engine of max batch `max_batch` that the generator
    wrote on `day` (YYYY-MM-DD: simcore.serving.sources.generator_day); {} where the engine profile's hold, and
    for a row without a day."""
    if not day:
        return {}
    if day < GRAPHS_UNMAPPED[0]:
        return {"cuda_graph_batch_sizes": list(range(1, max_batch + 1)), "cuda_graph_padding": False}
    if day < GRAPHS_UNMAPPED[1]:
        return {"cuda_graph_batch_sizes": list(TEMPLATE_GRAPHS), "cuda_graph_padding": False}
    return {}
