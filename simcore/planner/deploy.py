"""A chosen deployment as the command lines a user runs: `vllm serve`, SGLang's
`python -m sglang.launch_server` and `trtllm-serve`, with the flags that carry what simcore
simulated (parallelism, token budget, batch limit, KV dtype, memory fraction, context length).

Flag names are checked against each engine's own CLI (docs/planner.md, "Deployment commands",
cites the files and versions). One replica per command: replicas > 1 run the command once per
replica (vLLM and SGLang also take a data-parallel size; see `data_parallel`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from simcore.config.hf import catalog_hf_ids

ENGINES = ("vllm", "sglang", "trtllm")


@dataclass(frozen=True)
class Deployment:
    model: str  # what the engine loads: a Hugging Face id or a local path
    tp: int = 1
    pp: int = 1
    ep: int = 1  # expert-parallel degree within the replica (1: experts sharded by tp)
    replicas: int = 1
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    kv_dtype: str = "auto"  # auto | bf16 | fp16 | fp8
    gpu_mem_util: float = 0.9
    max_model_len: int | None = None
    trtllm_free_fraction: float | None = None  # TRT-LLM's KV fraction of the memory left after weights


def engine_model(model: str) -> str:
    """The name an engine downloads: a catalog entry's Hugging Face id, else the name as given."""
    return catalog_hf_ids().get(model, [model])[0]


def _args(pairs) -> list[str]:
    out = []
    for flag, value in pairs:
        if value is True:
            out.append(flag)
        elif value not in (None, False):
            out += [flag, str(value)]
    return out


def _join(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def vllm_command(d: Deployment, data_parallel: bool = False) -> str:
    """vLLM's `vllm serve` (vllm/engine/arg_utils.py). With --enable-expert-parallel vLLM spreads the
    experts over every tp x dp rank, so ep > 1 means ep = tp here."""
    return _join(["vllm", "serve", d.model] + _args([
        ("--tensor-parallel-size", d.tp if d.tp > 1 else None),
        ("--pipeline-parallel-size", d.pp if d.pp > 1 else None),
        ("--data-parallel-size", d.replicas if data_parallel and d.replicas > 1 else None),
        ("--enable-expert-parallel", d.ep > 1),
        ("--max-num-batched-tokens", d.max_num_batched_tokens),
        ("--max-num-seqs", d.max_num_seqs),
        ("--kv-cache-dtype", "fp8" if d.kv_dtype == "fp8" else None),
        ("--gpu-memory-utilization", f"{d.gpu_mem_util:g}"),
        ("--max-model-len", d.max_model_len),
    ]))


def sglang_command(d: Deployment, data_parallel: bool = False) -> str:
    """SGLang's launch_server (python/sglang/srt/server_args.py): chunked_prefill_size is its per-step
    token budget, max_running_requests its batch limit, mem_fraction_static its share of GPU memory."""
    return _join(["python", "-m", "sglang.launch_server", "--model-path", d.model] + _args([
        ("--tp-size", d.tp if d.tp > 1 else None),
        ("--pp-size", d.pp if d.pp > 1 else None),
        ("--dp-size", d.replicas if data_parallel and d.replicas > 1 else None),
        ("--ep-size", d.ep if d.ep > 1 else None),
        ("--chunked-prefill-size", d.max_num_batched_tokens),
        ("--max-running-requests", d.max_num_seqs),
        ("--kv-cache-dtype", "fp8_e4m3" if d.kv_dtype == "fp8" else None),
        ("--mem-fraction-static", f"{d.gpu_mem_util:g}"),
        ("--context-length", d.max_model_len),
    ]))


def trtllm_command(d: Deployment, config: str = "trtllm-config.yaml") -> str:
    """TensorRT-LLM's `trtllm-serve` (tensorrt_llm/commands/serve.py, PyTorch backend). The KV dtype
    has no flag: it goes in the --extra_llm_api_options YAML (`trtllm_config`)."""
    frac = d.trtllm_free_fraction if d.trtllm_free_fraction is not None else d.gpu_mem_util
    return _join(["trtllm-serve", d.model, "--backend", "pytorch"] + _args([
        ("--tp_size", d.tp if d.tp > 1 else None),
        ("--pp_size", d.pp if d.pp > 1 else None),
        ("--ep_size", d.ep if d.ep > 1 else None),
        ("--max_num_tokens", d.max_num_batched_tokens),
        ("--max_batch_size", d.max_num_seqs),
        ("--max_seq_len", d.max_model_len),
        ("--kv_cache_free_gpu_memory_fraction", f"{frac:.2g}"),
        ("--enable_chunked_prefill", True),
        ("--extra_llm_api_options", config if trtllm_config(d) else None),
    ]))


def trtllm_config(d: Deployment) -> str | None:
    """The YAML that trtllm-serve's --extra_llm_api_options reads, when a setting has no flag."""
    if d.kv_dtype != "fp8":
        return None
    return "kv_cache_config:\n  dtype: fp8\n"


def commands(d: Deployment) -> dict[str, str]:
    """engine -> the command line of one replica."""
    return {"vllm": vllm_command(d), "sglang": sglang_command(d), "trtllm": trtllm_command(d)}
