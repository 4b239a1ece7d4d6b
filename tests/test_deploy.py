"""The deployment commands, string for string (flag names as in each engine's CLI: docs/planner.md)."""

from __future__ import annotations

from simcore.planner.deploy import Deployment, commands, engine_model, sglang_command, trtllm_config, vllm_command

D = Deployment("meta-llama/Llama-3.1-70B", tp=4, pp=2, replicas=3, max_num_batched_tokens=4096, max_num_seqs=128,
               kv_dtype="fp8", gpu_mem_util=0.9, max_model_len=8192, trtllm_free_fraction=0.8512)


def test_vllm_serve():
    assert commands(D)["vllm"] == (
        "vllm serve meta-llama/Llama-3.1-70B --tensor-parallel-size 4 --pipeline-parallel-size 2 "
        "--max-num-batched-tokens 4096 --max-num-seqs 128 --kv-cache-dtype fp8 --gpu-memory-utilization 0.9 "
        "--max-model-len 8192")
    assert "--data-parallel-size 3" in vllm_command(D, data_parallel=True)


def test_sglang_launch_server():
    assert commands(D)["sglang"] == (
        "python -m sglang.launch_server --model-path meta-llama/Llama-3.1-70B --tp-size 4 --pp-size 2 "
        "--chunked-prefill-size 4096 --max-running-requests 128 --kv-cache-dtype fp8_e4m3 --mem-fraction-static 0.9 "
        "--context-length 8192")
    assert "--dp-size 3" in sglang_command(D, data_parallel=True)


def test_trtllm_serve_and_its_yaml():
    assert commands(D)["trtllm"] == (
        "trtllm-serve meta-llama/Llama-3.1-70B --backend pytorch --tp_size 4 --pp_size 2 --max_num_tokens 4096 "
        "--max_batch_size 128 --max_seq_len 8192 --kv_cache_free_gpu_memory_fraction 0.85 --enable_chunked_prefill "
        "--extra_llm_api_options trtllm-config.yaml")
    assert trtllm_config(D) == "kv_cache_config:\n  dtype: fp8\n"


def test_defaults_leave_out_unit_degrees_and_the_kv_dtype():
    d = Deployment("Qwen/Qwen3-30B-A3B", tp=2, ep=2, kv_dtype="auto", max_model_len=None, gpu_mem_util=0.85)
    c = commands(d)
    assert c["vllm"] == ("vllm serve Qwen/Qwen3-30B-A3B --tensor-parallel-size 2 --enable-expert-parallel "
                         "--max-num-batched-tokens 8192 --max-num-seqs 256 --gpu-memory-utilization 0.85")
    assert "--ep-size 2" in c["sglang"] and "--kv-cache-dtype" not in c["sglang"]
    assert "--ep_size 2" in c["trtllm"] and "--extra_llm_api_options" not in c["trtllm"]
    assert trtllm_config(d) is None


def test_catalog_models_deploy_under_their_hugging_face_id_and_paths_are_quoted():
    assert engine_model("llama-3.1-8b") == "meta-llama/Llama-3.1-8B"
    assert engine_model("/data/my model") == "/data/my model"
    assert commands(Deployment("/data/my model"))["vllm"].startswith("vllm serve '/data/my model' ")
