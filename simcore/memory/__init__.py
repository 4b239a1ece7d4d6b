"""The one home of memory: weights as stored, activation peaks, and each engine's KV budget.

    from simcore.memory import engine_memory
    mem = engine_memory(run, "vllm", gpu_memory_utilization=0.9, block_size=128)
    mem.kv_bytes, mem.num_blocks, mem.weights, mem.activation, mem.non_torch, mem.cudagraph, mem.log
"""

from simcore.memory.budget import (BLOCK_SIZE, MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS, KVBudget, MemoryPerGPU,
                                   StageBudget, check_fits, kv_budget, memory_per_gpu, replica_kv, static_memory,
                                   vllm_defaults)
from simcore.memory.engines import ENGINES, EngineMemory, engine_memory
from simcore.memory.weights import stage_weight_bytes

__all__ = ["BLOCK_SIZE", "ENGINES", "MAX_NUM_BATCHED_TOKENS", "MAX_NUM_SEQS", "EngineMemory", "KVBudget",
           "MemoryPerGPU", "StageBudget", "check_fits", "engine_memory", "kv_budget", "memory_per_gpu",
           "stage_weight_bytes", "static_memory", "vllm_defaults"]
