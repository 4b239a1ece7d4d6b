"""What a drafter takes from the KV budget: its weights and its own KV cache per token.

vLLM (v1) allocates the draft model's or EAGLE head's attention layers in the same paged cache as
the target's, so one block holds both models' K/V for its tokens: per-token bytes add, and the block
count falls. The drafter sits with the last pipeline stage (it needs the target's last hidden state
and LM head). EAGLE heads and DeepSeek MTP modules share the target's embedding and LM head and add
one layer plus a 2h -> h projection (`fc` in vLLM's llama_eagle.py, `eh_proj` in deepseek_mtp.py),
kept whole on every GPU.
"""

from __future__ import annotations

import math

from simcore.config.speculative import draft_run
from simcore.memory.weights import stage_weight_bytes
from simcore.ops.kv import kv_bytes


def draft_weight_bytes(run) -> float:
    """Weight bytes of the drafter on one GPU (0 without a model drafter)."""
    d = draft_run(run)
    if d is None:
        return 0.0
    total = stage_weight_bytes(d, 0)
    if run.experiment.speculative.method == "draft":
        return total
    m, tp = d.model, d.par.tp
    table = m.vocab // tp * m.hidden * 2
    shared = table + m.hidden * 2 + (0 if m.tie_embeddings else table)  # embedding, final norm, LM head
    return total - shared + 2 * m.hidden * m.hidden * 2


def draft_kv_bytes(run, batch: int, context: int) -> float:
    """KV bytes the drafter holds on one GPU for `batch` sequences of `context` tokens (0 without a model drafter)."""
    d = draft_run(run)
    return kv_bytes(d.model, batch, context, run.kv_dtype, d.par.tp) if d is not None else 0.0


def draft_kv_bytes_per_token(run) -> float:
    """KV bytes one token takes in the drafter's layers on one GPU (0 without a model drafter)."""
    d = draft_run(run)
    if d is None:
        return 0.0
    return kv_bytes(d.model, 1, 1, run.kv_dtype, d.par.tp)


def blocks_with_draft(budget) -> int:
    """KV blocks per GPU once the drafter's weights and per-token cache share the last stage's budget:
    floor((capacity - draft weights) / (block_size x (target + draft bytes per token))), the smallest
    over stages (the budget's own blocks() when nothing drafts with a model)."""
    run = budget.run
    w, per = draft_weight_bytes(run), draft_kv_bytes_per_token(run)
    if not w and not per:
        return budget.blocks()
    last = len(budget.stages) - 1
    out = []
    for i, s in enumerate(budget.stages):
        cap = s.kv_capacity - (w if i == last else 0.0)
        tok = budget.bytes_per_token(s) + (per if i == last else 0.0)
        out.append(max(0, math.floor(cap / (budget.block_size * tok))) if cap > 0 else 0)
    return min(out)
