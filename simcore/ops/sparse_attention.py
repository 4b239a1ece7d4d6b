"""DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): the lightning indexer's ops of one MLA layer.

The indexer projects index_heads x index_dim queries from the q latent and one index_dim key per token
from the hidden state (plus one weight per head), caches the key in fp8, scores every cached token for
every query (logit = sum over heads of w_h ReLU(q_h . k), DeepGEMM's fp8 MQA-logits kernels in SGLang
and vLLM) and keeps the top index_topk tokens; the MLA attention then reads only those
(builder.attention_core caps each query's keys at top-k, kv_ops reads top-k latent rows). The indexer's
linears are replicated on every TP rank (vLLM's and SGLang's Indexer use ReplicatedLinear), so every
rank scores every token. DeepSeek-V3.2-Exp report (DeepSeek-AI, 2025); docs/models.md.
"""

from __future__ import annotations

import math

from simcore.ops.kv import cached_tokens
from simcore.ops.linears import attention_linears
from simcore.ops.op import ATTN_DECODE, ATTN_PREFILL, COMPUTE, Op

LOGIT_BYTES = 4  # fp32 logits, written by the scoring kernel and read by the top-k kernel
INDEX_BYTES = 4  # int32 top-k indices
FLASH_TILE = 128


def scored_pairs(past: int, new: int) -> int:
    """(query, cached key) pairs the indexer scores: every causal pair, no cap."""
    return (2 * past + new + 1) * new // 2


def indexer_ops(sb, layer: int, b) -> list[Op]:
    m, t, a = sb.m, b.tokens, sb.a
    sa = m.sparse_attention
    h, d = sa.index_heads, sa.index_dim
    lins = {l.name: l for l in attention_linears(m, sb.shard, sb.run.weight_dtype)}
    q_lin, k_lin = lins["indexer_q"], lins["indexer_k"]  # wq_b; wk with weights_proj
    dtype = sb.compute_dtype("fp8")  # fp8 logits where the GPU has fp8 math
    ops: list[Op] = [sb.gemm(q_lin, t, layer), sb.gemm(k_lin, t, layer),
                     # rope on q and k, then quantize both to fp8 (16-bit in, 8-bit out)
                     sb.elementwise("indexer_rope_quant", layer, t * (h + 1) * d * (a + 1))]
    for phase in ("prefill", "decode"):
        groups = b.of(phase)
        if not groups:
            continue
        pairs = sum(g.seqs * scored_pairs(g.past, g.new) for g in groups)
        tokens = sum(g.tokens for g in groups)
        logits = pairs * LOGIT_BYTES
        q_bytes = tokens * (h * d + h * LOGIT_BYTES)  # fp8 queries and fp32 head weights
        flops = 2.0 * h * d * pairs
        if phase == "decode":
            seqs = sum(g.seqs for g in groups)
            span = sum(g.seqs * cached_tokens(m, layer, g.past + g.new) for g in groups) / seqs
            ops.append(Op("indexer_logits", COMPUTE, ATTN_DECODE, layer, flops=flops, bytes=q_bytes + logits,
                          dtype=dtype, shape=(seqs, h, span), act_bytes=q_bytes + logits))
        else:
            tiles = sum(g.seqs * h * math.ceil(g.new / FLASH_TILE) for g in groups)  # as attention of h query heads
            ops.append(Op("indexer_logits", COMPUTE, ATTN_PREFILL, layer, flops=flops, bytes=q_bytes + logits,
                          dtype=dtype, shape=(tiles, 2 * pairs / tokens), act_bytes=q_bytes + logits))
        picked = tokens * sa.topk * INDEX_BYTES
        ops.append(sb.elementwise("indexer_topk", layer, logits + picked))
    return ops
