"""Sarathi-Serve stall-free batching: decodes first, then prefill chunks filling a small fixed token
budget per step (`chunk` tokens, Sarathi's 512 default unless max_num_batched_tokens is smaller),
so decodes never stall behind a long prompt."""

from __future__ import annotations

from simcore.serving.schedulers import register

CHUNK = 512  # Sarathi-Serve's token budget per step for latency-sensitive serving


@register
class Sarathi:
    name = "sarathi"
    description = "stall-free chunked prefill with a 512-token step budget (Sarathi-Serve)"

    def schedule(self, rep):
        budget = min(CHUNK, rep.cfg.max_num_batched_tokens)
        dec = rep.decode_all()
        budget = max(0, budget - len(dec))
        chunks, budget = rep.continue_prefills(budget)
        if not rep.preempted_now:
            rep.admit(budget, chunks)
        return dec, chunks
