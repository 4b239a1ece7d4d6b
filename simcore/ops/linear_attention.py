"""Gated DeltaNet layers (Qwen3-Next, Qwen3.5 'linear_attention'): ops of one layer on one GPU.

Each value head keeps a key_dim x value_dim state S per sequence (no KV growth). Per token, the gated
delta rule (Yang, Kautz, Hatamizadeh, "Gated Delta Networks", ICLR 2025, arXiv 2412.06464) decays S,
corrects it toward v along k and reads it with q:
    u = beta (v - S^T k);  S' = alpha S + k u^T;  o = S'^T q
Decode runs this recurrence once per token: 7 key_dim x value_dim FLOPs per value head (S^T k 2, the
decay 1, the rank-1 update 2, the read-out 2), and reads and writes the whole state. Prefill runs the
chunked form (flash-linear-attention's chunk_gated_delta_rule, chunk C = 64, the kernel vLLM and SGLang
call): per token and value head 6 key_dim x value_dim FLOPs against the chunk-start state (q S, w S,
the state update k^T u) plus 2 C (3 key_dim + 2 value_dim) inside the chunk (q k^T, k k^T, the WY
factors w = T k and u = T v, the intra-chunk A u); it writes one chunk-start state per chunk (in the
activation dtype) and reads it back, and stores the sequence's final state. docs/models.md.
"""

from __future__ import annotations

import math

from simcore.ops.kv import conv_channels, linear_heads_per_gpu, recurrent_state_bytes
from simcore.ops.linears import linear_attention_linears
from simcore.ops.op import COMPUTE, LINEAR_ATTN, Op

CHUNK = 64  # fla chunk_gated_delta_rule chunk size
DECODE_FLOPS = 7  # x key_dim x value_dim per value head per token
INTER_CHUNK_FLOPS = 6  # x key_dim x value_dim per value head per prefill token


def prefill_flops_per_token(key_dim: int, value_dim: int, new: int) -> float:
    """Per value head and prefill token; a prompt shorter than a chunk is one chunk of its own length."""
    c = min(CHUNK, new)
    return INTER_CHUNK_FLOPS * key_dim * value_dim + 2 * c * (3 * key_dim + 2 * value_dim)


def layer_ops(sb, layer: int, b) -> list[Op]:
    """The token mixer of one linear-attention layer for batch `b` on a GPU of StageBuilder `sb`."""
    m, t, a, tp = sb.m, b.tokens, sb.a, sb.run.par.tp
    la = m.linear_attention
    hk, hv = linear_heads_per_gpu(m, tp)
    dk, dv = la.key_dim, la.value_dim
    lins = {l.name: l for l in linear_attention_linears(m, tp, sb.run.weight_dtype)}
    conv = conv_channels(m, tp)
    state = recurrent_state_bytes(m, tp)
    conv_state = (la.conv_kernel - 1) * conv * a
    ops: list[Op | None] = [sb.elementwise("input_norm", layer, 4 * t * m.hidden * a),
                            *sb.linear(lins["in_proj"], t, layer)]
    seqs = sum(g.seqs for g in b.groups)
    ops.append(sb.elementwise("conv1d", layer, 2 * t * conv * a + 2 * seqs * conv_state))
    decodes, prefills = b.of("decode"), b.of("prefill")
    if decodes:
        td, sd = sum(g.tokens for g in decodes), sum(g.seqs for g in decodes)
        flops = DECODE_FLOPS * td * hv * dk * dv
        io = td * (2 * hk * dk + 2 * hv * dv + 2 * hv) * a  # q, k in; v in, o out; beta, alpha in
        ops.append(Op("gdn_recurrent", COMPUTE, LINEAR_ATTN, layer, flops=float(flops), bytes=2 * sd * state + io,
                      dtype=sb.act, act_bytes=io))
    if prefills:
        flops = sum(g.seqs * g.new * hv * prefill_flops_per_token(dk, dv, g.new) for g in prefills)
        chunks = sum(g.seqs * math.ceil(g.new / CHUNK) for g in prefills)
        carried = sum(g.seqs for g in prefills if g.past)  # a continued prompt reads its state back
        tokens = sum(g.tokens for g in prefills)
        io = tokens * (2 * hk * dk + 2 * hv * dv + 2 * hv) * a
        moved = io + 2 * chunks * hv * dk * dv * a + (sum(g.seqs for g in prefills) + carried) * state
        ops.append(Op("gdn_chunked", COMPUTE, LINEAR_ATTN, layer, flops=float(flops), bytes=moved, dtype=sb.act,
                      act_bytes=io))
    ops.append(sb.elementwise("gated_norm", layer, 3 * t * hv * dv * a))  # RMSNorm(o) x silu(z)
    ops += sb.linear(lins["out_proj"], t, layer)
    ops.append(sb.tp_all_reduce("attn_all_reduce", layer, t))
    return [op for op in ops if op is not None]
