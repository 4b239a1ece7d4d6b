"""What InferenceX's recipes set on the engines behind the rows of its database exports (SemiAnalysisAI/InferenceX,
benchmarks/**/*.sh and .github/configs/nvidia-master.yaml at the day a row was measured; docs/validation.md
"InferenceX recipes" cites each version). The shared rows record none of it; simcore.serving.silicon puts what the
recipe of a row's (system, engine, model) and day set on that row, in simcore's fields:

- serving.max_num_seqs (trtllm-serve --max_batch_size, vllm --max-num-seqs, SGLang --max-running-requests),
- serving.max_num_batched_tokens (--max_num_tokens, --max-num-batched-tokens, SGLang --chunked-prefill-size),
- serving.cuda_graph_batch_sizes / cuda_graph_padding (TensorRT-LLM cuda_graph_config: padding on, sizes generated
  up to its max_batch_size), serving.batch_wait_iters / batch_wait_tokens_ratio (TensorRT-LLM batch waiting),
- the KV cache dtype (kv_cache_config.dtype, --kv-cache-dtype; "auto": the engine's default),
- the engine's memory fraction (kv_cache_config.free_gpu_memory_fraction, --gpu-memory-utilization, SGLang
  --mem-fraction-static), which the experiment carries as engine.gpu_memory_utilization,
- serving.block_size (vLLM --block-size), and the expert split where the recipe ignored the row's (`ep`: a number,
  or `TP` for expert parallelism over the tensor-parallel GPUs; rows without attention DP only).

A row whose recipe is not known here, or whose day falls where the recipe cannot be told (a speculative-decoding
(MTP) variant ran beside the plain one with the same engine image, or no day is recorded and the versions differ),
gets nothing from here and keeps the reading it had (simcore.serving.silicon). Piecewise CUDA graphs, MoE kernel
choices and speculative decoding are not carried (docs/validation.md says which rows set them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from simcore.serving.engines.trtllm import capture_sizes as trt_graphs


@dataclass(frozen=True)
class Deployment:
    """The shell variables a recipe computes its settings from (CONC: every client, ISL, OSL, TP, EP_SIZE), with the
    engine version the row records. TensorRT-LLM and SGLang rows with attention DP (DP_ATTENTION) are not read here
    (simcore.serving.silicon._recipe)."""

    c: int
    isl: int
    osl: int
    tp: int = 1
    ep: int = 1
    version: str = ""


Recipe = Callable[[Deployment], "dict | None"]  # None: this version cannot be told from the row


def _ceil64(x: int) -> int:
    return -(-x // 64) * 64


def _trt(seqs: int | None, tokens: int, graph_max: int, kv: str, wait: tuple[int, float] | None = None,
         free: float | None = None) -> dict:
    """A trtllm-serve recipe: --max_batch_size (None: absent, the engine's 2048), --max_num_tokens, cuda_graph_config
    {enable_padding: true, max_batch_size: graph_max}, kv_cache_config.dtype and free_gpu_memory_fraction (None:
    unset, the engine's 0.9), and batch waiting (iterations, ratio)."""
    serving: dict = {"max_num_batched_tokens": tokens, "cuda_graph_batch_sizes": list(trt_graphs(graph_max)),
                     "cuda_graph_padding": True}
    if seqs is not None:
        serving["max_num_seqs"] = seqs
    if wait:
        serving["batch_wait_iters"], serving["batch_wait_tokens_ratio"] = wait
    return {"serving": serving, "kv_cache_dtype": kv, **({"memory_fraction": free} if free else {})}


def TP(tp: int) -> int:
    """The expert split of `--enable-expert-parallel` / `--enable-ep-moe`: EP over the tensor-parallel GPUs."""
    return tp


def _serve(seqs: int | None = None, tokens: int | None = None, kv: str | None = None, mem: float | None = None,
           block: int | None = None, ep: "int | Callable[[int], int] | None" = None) -> dict:
    """A vllm serve / SGLang launch_server recipe: only what it sets (None: the engine's default); mem: vLLM's
    --gpu-memory-utilization or SGLang's --mem-fraction-static; block: vLLM's --block-size; ep: the expert split."""
    serving = {k: v for k, v in (("max_num_seqs", seqs), ("max_num_batched_tokens", tokens), ("block_size", block))
               if v is not None}
    return {"serving": serving, **({"kv_cache_dtype": kv} if kv else {}), **({"memory_fraction": mem} if mem else {}),
            **({"ep": ep} if ep is not None else {})}


# --- TensorRT-LLM -----------------------------------------------------------------------------------------------

def _trt_gptoss_h200(d: Deployment) -> dict:
    # gptoss_fp4_h200_trt(_slurm).sh @9596d23d7, d22bf9ca9, e28c038f8: --max_batch_size $CONC --max_num_tokens 20000,
    # graphs to CONC, kv auto (the checkpoint's bf16), moe TRITON
    return _trt(d.c, 20000, d.c, "auto", free=0.85)


def _trt_gptoss_b200(d: Deployment) -> dict:
    # gptoss_fp4_b200_trt(_slurm).sh @ac1998a50 ... b30c3398a: --max_batch_size 512 --max_num_tokens 20000, graphs to
    # CONC, kv fp8
    return _trt(512, 20000, d.c, "fp8", free=0.85)


def _trt_llama70b(d: Deployment) -> dict:
    # 70b_fp8_h200_trt_slurm.sh / 70b_fp{8,4}_b200_trt_slurm.sh @9596d23d7: --max_num_tokens 16384, no max_batch_size,
    # graphs to 1024, kv fp8; ISL = OSL = 1024 below TP 8: batch_wait_timeout_iters 20, batch_wait_max_tokens_ratio 0.9
    wait = (20, 0.9) if d.isl == 1024 and d.osl == 1024 and d.tp < 8 else None
    return _trt(None, 16384, 1024, "fp8", wait)


def _trt_dsr1(graph_max: int, free: float) -> Recipe:
    """dsr1_*_trt(_slurm).sh without MTP: no max_batch_size, --max_num_tokens ceil64(CONC + ISL + 64), graphs to
    graph_max, kv fp8 and its free_gpu_memory_fraction."""
    return lambda d: _trt(None, _ceil64(d.c + d.isl + 64), graph_max, "fp8", free=free)


def _trt_dsr1_fp8_b200_rc6(d: Deployment) -> dict | None:
    # dsr1_fp8_b200_trt.sh @ec7bafaae (1.2.0rc6.post2; the MTP recipe ran 1.2.0rc6.post3): --max_num_tokens at least
    # 8192 (from 64af5a771, 2026-01-21), graphs to CONC (CONC / 8 at 1k8k from 256 clients), batch waiting 40
    # iterations / 0.8 at 1k1k from 64 clients, free fraction 0.8 (0.75 at 8k1k TP 4, 0.7 at 1k8k from 256)
    if d.version != "1.2.0rc6.post2":
        return None
    graphs = d.c // 8 if d.isl == 1024 and d.osl == 8192 and d.c >= 256 else d.c
    wait = (40, 0.8) if d.isl == 1024 and d.osl == 1024 and d.c >= 64 else None
    free = 0.75 if d.isl == 8192 and d.tp == 4 else 0.7 if d.osl == 8192 and d.c >= 256 else 0.8
    return _trt(None, max(8192, _ceil64(d.c + d.isl + 64)), graphs, "fp8", wait, free)


def _trt_dsr1_fp4_b200_rc6(d: Deployment) -> dict | None:
    # dsr1_fp4_b200_trt.sh @6eecc0e66 (1.2.0rc6.post2): graphs to CONC, free fraction 0.8
    if d.version != "1.2.0rc6.post2":
        return None
    return _trt(None, max(8192, _ceil64(d.c + d.isl + 64)), d.c, "fp8", free=0.8)


def _unknown(d: Deployment) -> None:
    """A day whose recipe cannot be told from the row: from 2026-01-14 InferenceX's MTP recipes ran beside the plain
    ones on the same image (PR #392); a day the recipe changed on."""
    return None


_DSR1_TRT = {
    ("b200_sxm", "fp4"): [("", _trt_dsr1(512, 0.8)), ("2026-01-14", _unknown), ("2026-02-03", _trt_dsr1_fp4_b200_rc6)],
    ("b200_sxm", "fp8"): [("", _trt_dsr1(256, 0.8)), ("2026-01-14", _unknown), ("2026-01-29", _trt_dsr1_fp8_b200_rc6)],
    ("h200_sxm", "fp8"): [("", _trt_dsr1(128, 0.75)), ("2026-01-14", _unknown)],
}

RECIPES: dict[tuple[str, str, str, str], list[tuple[str, Recipe]]] = {
    # (system, backend, model_path, precision or "" for any): [(first day, recipe)], oldest first; "" = from the start
    ("h200_sxm", "trtllm", "openai/gpt-oss-120b", ""): [("", _trt_gptoss_h200)],
    ("b200_sxm", "trtllm", "openai/gpt-oss-120b", ""): [("", _trt_gptoss_b200)],
    ("h200_sxm", "trtllm", "meta-llama/Llama-3.1-70B", ""): [("", _trt_llama70b)],
    ("b200_sxm", "trtllm", "meta-llama/Llama-3.1-70B", ""): [("", _trt_llama70b)],
    # Llama-3.1-70B fp8 on H100: `kv-cache-dtype: fp8`, --max-num-seqs=$CONC (70b_fp8_h100_slurm.sh and _docker.sh
    # @9596d23d7; async-scheduling true, which the unversioned rows already get)
    ("h100_sxm", "vllm", "meta-llama/Llama-3.1-70B", ""): [("", lambda d: _serve(seqs=d.c, kv="fp8"))],
    # on H200 --max-num-seqs $CONC (70b_fp8_h200_slurm.sh @9596d23d7), on B200 512 (70b_fp{4,8}_b200_docker.sh
    # @4b860b78e); kv fp8 on both
    ("h200_sxm", "vllm", "meta-llama/Llama-3.1-70B", ""): [("", lambda d: _serve(seqs=d.c, kv="fp8"))],
    ("b200_sxm", "vllm", "meta-llama/Llama-3.1-70B", ""): [("", lambda d: _serve(seqs=512, kv="fp8"))],
    # gpt-oss: --max-num-seqs=$CONC on H100 (gptoss_fp4_h100_{docker,slurm}.sh @7103d66, single_node/gptoss_fp4_h100.sh
    # @79a42e20a) and H200 (gptoss_fp4_h200*.sh @9596d23d7 ... cec542a9a), 512 on B200
    # (gptoss_fp4_b200_docker.sh @4b860b78e), kv fp8 there from gptoss_fp4_b200.sh @d2c2acb19 (2026-02-25)
    ("h100_sxm", "vllm", "openai/gpt-oss-120b", ""): [("", lambda d: _serve(seqs=d.c))],
    ("h200_sxm", "vllm", "openai/gpt-oss-120b", ""): [("", lambda d: _serve(seqs=d.c))],
    ("b200_sxm", "vllm", "openai/gpt-oss-120b", ""): [("", lambda d: _serve(seqs=512)),
                                                  ("2026-02-25", lambda d: _serve(seqs=512, kv="fp8"))],
    # MiniMax-M2.5 fp8 on H100: `vllm serve --max-num-seqs 256` at every day its rows were measured
    # (minimaxm2.5_fp8_h100.sh from ac0d2a853, 2026-03-02, through 51e31df4a, 2026-04-06)
    ("h100_sxm", "vllm", "MiniMaxAI/MiniMax-M2.5", ""): [("", lambda d: _serve(seqs=256))],
    # on H200 --gpu-memory-utilization 0.95 (minimaxm2.5_fp8_h200.sh @a36346339, 2026-03-01), and from 5e2c705d3
    # (2026-03-13) `--enable-expert-parallel` whenever EP_SIZE >= 1, i.e. always: EP over the TP GPUs
    ("h200_sxm", "vllm", "MiniMaxAI/MiniMax-M2.5", ""): [("2026-03-01", lambda d: _serve(mem=0.95)),
                                                     ("2026-03-13", lambda d: _serve(mem=0.95, ep=TP))],
    # on B200 fp8: minimaxm2.5_fp8_b200.sh @f342df18e (2026-03-11): 0.95, --block-size 32, expert parallel always;
    # from @bddbf4031 (2026-04-03): 0.90, block 32, kv fp8, --max-num-batched-tokens 2 x ISL, EP only when EP_SIZE > 1
    ("b200_sxm", "vllm", "MiniMaxAI/MiniMax-M2.5", "fp8"): [
        ("2026-03-11", lambda d: _serve(mem=0.95, block=32, ep=TP)),
        ("2026-04-03", lambda d: _serve(tokens=2 * d.isl, kv="fp8", block=32))],
    # fp4: minimaxm2.5_fp4_b200.sh @08bcde8f1 (2026-04-02, the branch the 04-03 rows ran): 0.95, block 32, kv fp8;
    # @79bd988e9 (2026-04-08): 0.90, kv fp8, 2 x ISL tokens
    ("b200_sxm", "vllm", "MiniMaxAI/MiniMax-M2.5", "fp4"): [
        ("2026-04-03", lambda d: _serve(kv="fp8", mem=0.95, block=32)),
        ("2026-04-08", lambda d: _serve(tokens=2 * d.isl, kv="fp8"))],
    # Kimi-K2.5: --max-num-seqs $CONC in every kimik2.5_*.sh, --gpu-memory-utilization 0.95 for the int4 checkpoint
    # (kimik2.5_int4_{h200,b200}.sh @749096c4c, 79ea3651a), 0.90 for fp4 (kimik2.5_fp4_b200.sh @a58dedd5a)
    ("h200_sxm", "vllm", "moonshotai/Kimi-K2.5", ""): [("", lambda d: _serve(seqs=d.c, mem=0.95))],
    ("b200_sxm", "vllm", "moonshotai/Kimi-K2.5", "int4"): [("", lambda d: _serve(seqs=d.c, mem=0.95))],
    # fp4 (kimik2.5_fp4_b200.sh @a58dedd5a, 79a42e20a): pure TP, the script never reads EP_SIZE; from @6c3acebfa
    # (2026-04-20) also kv fp8 and 2 x ISL tokens
    ("b200_sxm", "vllm", "moonshotai/Kimi-K2.5", ""): [
        ("", lambda d: _serve(seqs=d.c, ep=1)),
        ("2026-04-20", lambda d: _serve(seqs=d.c, tokens=2 * d.isl, kv="fp8", ep=1))],
    # --- SGLang: --max-running-requests, --chunked-prefill-size, --mem-fraction-static ---
    # dsr1_fp8_h200.sh @41aff0afc (2026-03-06): 512 running at 1k1k, else 256; chunks of 32768; kv auto; 0.82
    ("h200_sxm", "sglang", "deepseek-ai/DeepSeek-R1", ""): [
        ("2026-03-06", lambda d: _serve(seqs=512 if d.isl == 1024 and d.osl == 1024 else 256, tokens=32768,
                                        mem=0.82))],
    # dsr1_fp4_b200_docker.sh @4b860b78e and d8fe8f73e, single_node/dsr1_fp4_b200.sh @64c20b6b5: 256 running, chunks
    # of 16384, kv fp8_e4m3, 0.85; until d8fe8f73e (2025-11-10, the day the config's EP changed: not told)
    # --enable-ep-moe, EP over the TP GPUs
    ("b200_sxm", "sglang", "deepseek-ai/DeepSeek-R1", "fp4"): [
        ("", lambda d: _serve(seqs=256, tokens=16384, kv="fp8", mem=0.85, ep=TP)),
        ("2025-11-10", _unknown),
        ("2025-11-11", lambda d: _serve(seqs=256, tokens=16384, kv="fp8", mem=0.85))],
    # dsr1_fp8_b200_docker.sh @d8fe8f73e (2025-11-10): 128 running, chunks of 32768, kv fp8_e4m3, 0.82; from
    # single_node/dsr1_fp8_b200.sh @64c20b6b5 (2026-03-11) TP 4 runs 32 / 8192 / 0.95, and TP 8 cannot be told from
    # the MTP recipe that ran beside it on the same image
    ("b200_sxm", "sglang", "deepseek-ai/DeepSeek-R1", "fp8"): [
        ("2025-11-10", lambda d: _serve(seqs=128, tokens=32768, kv="fp8", mem=0.82)),
        ("2026-03-11", lambda d: _serve(seqs=32, tokens=8192, kv="fp8", mem=0.95) if d.tp == 4 else None)],
    # glm5_fp8_b200.sh @13930ca61 (2026-03-20): CONC running, chunks and --max-prefill-tokens of 32768, kv fp8_e4m3,
    # 0.85; glm5_nvfp4_b200.sh @d43805fc3 (2026-03-28): CONC running, chunks of 131072 under the default
    # --max-prefill-tokens 16384, which caps a step's new prompt tokens (SGLang's PrefillAdder), kv auto, 0.80;
    # glm5_fp8_h200.sh @ebb48d4bc (2026-03-18): only --mem-fraction-static 0.85
    ("b200_sxm", "sglang", "zhipuai/GLM-5", "fp8"): [
        ("2026-03-20", lambda d: _serve(seqs=d.c, tokens=32768, kv="fp8", mem=0.85))],
    ("b200_sxm", "sglang", "zhipuai/GLM-5", "fp4"): [("2026-03-28", lambda d: _serve(seqs=d.c, tokens=16384, mem=0.8))],
    ("h200_sxm", "sglang", "zhipuai/GLM-5", ""): [("2026-03-18", lambda d: _serve(mem=0.85))],
    # qwen3.5_*_b200.sh @9dc87a68c, efd49e50b, 6a5dad463: 128 running, chunks of 32768, 0.82; the fp4 one
    # (48d35c480, 2026-04-08) 0.85
    ("b200_sxm", "sglang", "Qwen/Qwen3.5-397B-A17B", ""): [
        ("2026-02-20", lambda d: _serve(seqs=128, tokens=32768, mem=0.82))],
    ("b200_sxm", "sglang", "Qwen/Qwen3.5-397B-A17B", "fp4"): [
        ("2026-04-08", lambda d: _serve(seqs=128, tokens=32768, mem=0.85))],
    # qwen3.5_fp8_h200.sh @f65d6b4b1: 128 running, chunks of 16384, 0.8
    ("h200_sxm", "sglang", "Qwen/Qwen3.5-397B-A17B", ""): [
        ("2026-03-04", lambda d: _serve(seqs=128, tokens=16384, mem=0.8))],
}
for (_system, _prec), _versions in _DSR1_TRT.items():
    RECIPES[(_system, "trtllm", "deepseek-ai/DeepSeek-R1", _prec)] = _versions
for _key in [k for k in RECIPES if k[2] == "deepseek-ai/DeepSeek-R1"]:  # no V3 recipe: the R1 runs, relabelled
    RECIPES[(_key[0], _key[1], "deepseek-ai/DeepSeek-V3", _key[3])] = RECIPES[_key]


def recipe(system: str, backend: str, model: str, precision: str, measured: str | None, d: Deployment,
           last: str | None = None) -> dict | None:
    """{"serving": {...}, "kv_cache_dtype": ..., ...} of the recipe that ran a row of (system, backend, model,
    precision) measured on day `measured` (YYYY-MM-DD; with `last`, rows of several days from `measured` to `last`,
    which must fall in one version; None: not recorded), or None when no recipe is known or it cannot be told which
    version ran (without a day: when the versions disagree for this deployment)."""
    versions = RECIPES.get((system, backend, model, precision)) or RECIPES.get((system, backend, model, ""))
    if versions is None:
        return None
    if measured is None:
        if versions[0][0]:  # the recipe is known from a day on only
            return None
        found = [v(d) for _, v in versions]
        return found[0] if all(f == found[0] for f in found) else None
    chosen = _version(versions, measured)
    if last is not None and _version(versions, last) is not chosen:
        return None
    return chosen(d) if chosen is not None else None


def _version(versions: list[tuple[str, Recipe]], day: str) -> Recipe | None:
    chosen = None
    for since, v in versions:
        if day >= since:
            chosen = v
    return chosen
