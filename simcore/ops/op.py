"""The Op record and dtype sizes. Ops are plain data; simcore.cost prices them."""

from __future__ import annotations

from dataclasses import dataclass

# Bytes per element. mxfp4: 4-bit values plus one 8-bit scale per 32 values (OCP MX spec); nvfp4: 4-bit
# values plus one fp8 (E4M3) scale per 16 values (NVIDIA's NVFP4: ModelOpt checkpoints store weight_scale as
# [N, K/16] F8_E4M3 beside the packed U8 weight, plus one fp32 scale per tensor, negligible).
DTYPE_BYTES = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
    "mxfp4": 4.25 / 8,
    "nvfp4": 4.5 / 8,
}

# Op kinds (the graph's node kinds) and families (which efficiency curve prices them).
COMPUTE, COMM, KV_STORE, KV_FETCH = "compute", "comm", "kv_cache_store", "kv_cache_fetch"
GEMM, ATTN_PREFILL, ATTN_DECODE, MEMORY, COLLECTIVE = "gemm", "attn_prefill", "attn_decode", "memory", "collective"
ROUTING = "routing"  # a MoE layer's token permute / combine chain: memory-bound, with its own fixed cost
LINEAR_ATTN = "linear_attn"  # a linear-attention scan (Gated DeltaNet): tensor-core chunks over a fixed-size state


def nbytes(dtype: str) -> float:
    return DTYPE_BYTES[dtype]


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel (or one collective) on one rank.

    bytes: all HBM traffic of the op (reads + writes). For kv_cache_* ops `kv_bytes` is the
    part of it that is KV cache; attention never carries the cache bytes its fetch op carries.
    shape: what the efficiency curve needs: gemm (M, N, K), grouped over experts (M, N, K, active
    experts) with M per expert; attn_prefill (tiles, S_q);
    attn_decode (B, heads, L); collective (algorithm scope, group size).
    kernel: False for work that runs inside another op's kernel (the decode KV fetch is the
    memory stream of the attention kernel), so it pays no launch floor of its own.
    """

    name: str
    kind: str
    family: str
    layer: int
    flops: float = 0.0
    bytes: float = 0.0
    dtype: str = "bf16"
    shape: tuple = ()
    kernel: bool = True
    kv_bytes: float = 0.0
    weight_bytes: float = 0.0
    act_bytes: float = 0.0  # activation bytes in + out (for the activation-memory peak)
    collective: str = ""  # all_reduce | all_gather | reduce_scatter | all_to_all | send_recv
    group: int = 1  # ranks taking part in a collective
    inter_node: bool = False  # the collective crosses nodes
    per_node: int = 0  # a cross-node collective's ranks on each node; 0: packed (as many as the node holds)
    tier: str = "hbm"  # where a kv_cache op's bytes live: hbm | host
    tier_bw: float = 0.0  # bytes/s of a placed kv_cache op's tier(s) (inference.kv_placement); 0: by `tier`
    upcast: bool = False  # a gemm whose weights the kernel converts to its compute dtype (no native math)
    scaled_mm: bool = False  # a per-tensor-scaled fp8 gemm run by TensorRT-LLM's cublas_scaled_mm
