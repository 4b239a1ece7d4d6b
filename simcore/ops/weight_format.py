"""Group-quantized int4 weights as checkpoints store them: 4-bit values plus per-group scales.

One home for the scale overhead that both the GEMM's weight stream (ops/builder.py) and the
weight memory (memory/weights.py) count. AWQ / GPTQ (the default when a checkpoint gives no
group): one fp16 scale and one packed 4-bit zero point per 128 inputs of each output channel.
compressed-tensors "pack-quantized" symmetric int4 (Kimi-K2.5's experts): one bf16 scale per
`group_size` inputs (32), no zero point. docs/models.md gives the sources.
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
