"""Weight bytes on one GPU, sized as the checkpoint is stored (and as an engine lays it out).

Quantized checkpoints carry more than their values: fp8 keeps one fp32 scale per weight block
(`weight_block_size`, e.g. 128 x 128) or per output channel; 4-bit AWQ/GPTQ keep an fp16 scale and
a 4-bit zero point per group of 128 inputs, symmetric compressed-tensors int4 a bf16 scale per group
of its group_size (ops/weight_format.py); MXFP4 keeps one 8-bit scale per 32 values (already in
`DTYPE_BYTES['mxfp4']`). Biases, norms, embeddings and the LM head stay 16-bit whatever the
checkpoint quantizes. docs/memory.md gives the sources.
"""

from __future__ import annotations

import math

from simcore.config.experiment import Run
from simcore.ops.linears import Linear, Sharding, attention_linears, mlp_linears, norm_params
from simcore.ops.op import nbytes
from simcore.ops.passes import stage_layers
from simcore.ops.weight_format import INT4_GROUP, int4_matrix_bytes

SCALE_BYTES = 4  # fp8 scales are fp32


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def linear_bytes(lin: Linear, block: tuple[int, int] | None = None, expert_align: int = 1,
                 fp8_scales: bool = True, int4_group: int = INT4_GROUP, int4_zero: bool = True) -> float:
    """Bytes of one linear as stored. expert_align: the engine pads a routed MXFP4 expert's
    intermediate dimension to this multiple (gate_up's outputs, down's inputs). fp8_scales: the
    checkpoint is fp8 (per-block or per-channel scales); a 16-bit checkpoint quantized on load keeps
    one per-tensor scale (negligible). int4_group / int4_zero: the checkpoint's int4 groups
    (ops/weight_format.py)."""
    k, n = lin.k, lin.n
    if lin.routed and lin.dtype == "mxfp4" and expert_align > 1:
        if lin.name.endswith("gate_up"):
            n = 2 * _round_up(n // 2, expert_align)
        else:
            k = _round_up(k, expert_align)
    e = lin.experts
    total = e * k * n * nbytes(lin.dtype)
    if lin.dtype == "fp8" and fp8_scales:
        total += e * SCALE_BYTES * (math.ceil(k / block[0]) * math.ceil(n / block[1]) if block else n)
    elif lin.dtype == "int4":
        total = e * int4_matrix_bytes(k, n, int4_group, int4_zero)
    if lin.bias:
        total += e * n * 2
    return total


def stage_weight_bytes(run: Run, stage: int, expert_align: int = 1, rope_cache: bool = False,
                       marlin: bool = False) -> float:
    """Weight bytes one GPU of pipeline `stage` holds: its layers' linears as stored (attention and
    dense MLP split by tp, experts by ep), norms, the embedding on the first stage and the LM head
    (vocab / tp) on the last. rope_cache: add the engine's rotary cos/sin table (vLLM keeps one
    buffer of max_position x head_dim in the model dtype). marlin: MXFP4 experts in vLLM's Marlin MoE layout
    (ops/weight_format.py), which replaces expert_align."""
    m, p = run.model, run.par
    shard = Sharding.of(p)
    q = m.quantization
    block = q.block if q else None
    fp8_ckpt = q is not None and q.method == "fp8"
    group, zero = (q.group, q.zero_point) if q is not None and q.weight_dtype == "int4" else (INT4_GROUP, True)
    total = 0.0
    for layer in stage_layers(m.layers, p.pp)[stage]:
        lins = attention_linears(m, shard, run.weight_dtype, layer) + mlp_linears(m, layer, shard, run.weight_dtype,
                                                                           run.expert_dtype, marlin)
        align = 1 if marlin else expert_align
        total += sum(linear_bytes(lin, block, align, fp8_ckpt, group, zero) for lin in lins) + norm_params(m) * 2
    table = m.vocab // p.tp * m.hidden * 2
    if stage == 0:
        total += table
    if stage == p.pp - 1:
        total += m.hidden * 2 + (0 if m.tie_embeddings and p.pp == 1 else table)
    if rope_cache and m.max_position:
        rot = m.qk_rope_head_dim if m.is_mla else m.head_dim
        total += m.max_position * rot * 2
    return total
