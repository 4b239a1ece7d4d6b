"""The one home of memory: weights as stored, activation peaks, and each engine's KV budget."""

from simcore.memory.budget import (BLOCK_SIZE, MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS, KVBudget, MemoryPerGPU,
                                   StageBudget, check_fits, kv_budget, memory_per_gpu, profile_activations,
                                   stage_weight_bytes, static_memory)

__all__ = ["BLOCK_SIZE", "MAX_NUM_BATCHED_TOKENS", "MAX_NUM_SEQS", "KVBudget", "MemoryPerGPU", "StageBudget",
           "check_fits", "kv_budget", "memory_per_gpu", "profile_activations", "stage_weight_bytes", "static_memory"]
