"""Group-quantized int4 weights as checkpoints store them: 4-bit values plus per-group scales.

One home for the scale overhead that both the GEMM's weight stream (ops/builder.py) and the
weight memory (memory/weights.py) count. AWQ / GPTQ (the default when a checkpoint gives no
group): one fp16 scale and one packed 4-bit zero point per 128 inputs of each output channel.
compressed-tensors "pack-quantized" symmetric int4 (Kimi-K2.5's experts): one bf16 scale per
`group_size` inputs (32), no zero point. docs/models.md gives the sources.

Also the one home of the padded layout vLLM's Marlin MoE kernel keeps MXFP4 experts in, which the expert
GEMMs (ops/linears.py mlp_linears) and the weight memory both build from (docs/serving.md "Engine profiles").
"""

from __future__ import annotations

import math

INT4_GROUP = 128  # AWQ / GPTQ group size along the input dimension
SCALE_BYTES = 2  # fp16 / bf16 group scale
ZERO_BYTES = 0.5  # packed 4-bit zero point of an asymmetric group


def int4_group_bytes(zero_point: bool = True) -> float:
    """Bytes of one group's metadata for one output channel."""
    return SCALE_BYTES + (ZERO_BYTES if zero_point else 0.0)


def int4_matrix_bytes(k: int, n: int, group: int = INT4_GROUP, zero_point: bool = True) -> float:
    """A k-input x n-output int4 matrix as stored: k*n/2 bytes of values, ceil(k/group) groups per output."""
    return k * n * 0.5 + n * math.ceil(k / group) * int4_group_bytes(zero_point)


def int4_bytes_per_weight(group: int = INT4_GROUP, zero_point: bool = True) -> float:
    """What a kernel streams per weight (values and scales), for the GEMM's byte count."""
    return 0.5 + int4_group_bytes(zero_point) / group


# vLLM's Marlin MoE kernel (fused_marlin_moe; weight-only: the MXFP4 tiles are dequantized to bf16 in registers
# and multiplied on bf16 tensor cores) needs n % 256 == 0 and k % 128 == 0 of each expert GEMM, so vLLM pads the
# hidden size to a multiple of 256 and each GPU's intermediate slice to a multiple of 128 (vllm
# model_executor/layers/quantization/mxfp4.py Mxfp4MoEMethod.create_weights, v0.10-v0.13;
# fused_moe/oracle/mxfp4.py mxfp4_round_up_hidden_size_and_intermediate_size, later releases). docs/serving.md.
MARLIN_HIDDEN_ALIGN = 256
MARLIN_INTER_ALIGN = 128
PRE_HOPPER = ("ampere", "ada")  # vLLM's triton_kernels MXFP4 path needs compute capability 9.0-10.x


def marlin_expert_dims(hidden: int, inter: int) -> tuple[int, int]:
    """(hidden, per-GPU intermediate) of an MXFP4 expert in the Marlin MoE layout."""
    return -(-hidden // MARLIN_HIDDEN_ALIGN) * MARLIN_HIDDEN_ALIGN, -(-inter // MARLIN_INTER_ALIGN) * MARLIN_INTER_ALIGN


def marlin_moe(run, engine: str | None) -> bool:
    """Whether `run`'s routed MXFP4 experts run vLLM's Marlin MoE kernel: `engine.moe_kernel` when set, else
    vLLM (`engine`) on an NVIDIA GPU before Hopper, where vLLM has no other MXFP4 MoE path (oracle/mxfp4.py
    select_mxfp4_moe_backend: capability >= 7.0 below 9.0 -> MARLIN)."""
    if run.expert_dtype != "mxfp4":
        return False
    kernel = run.experiment.engine.moe_kernel
    if kernel is not None:
        return kernel == "marlin"
    gpu = run.system.gpu
    return engine == "vllm" and gpu.vendor == "nvidia" and gpu.architecture in PRE_HOPPER
