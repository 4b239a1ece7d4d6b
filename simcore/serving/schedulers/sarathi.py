"""Sarathi-Serve stall-free batching: decodes first, then prefill chunks filling a small fixed token
budget per step (`chunk` tokens, Sarathi's 512 default unless max_num_batched_tokens is smaller),
so decodes never stall behind a long prompt."""

from __future__ import annotations

from simcore.serving.schedulers import register
from simcore.serving.schedulers.vllm import VLLM

CHUNK = 512  # Sarathi-Serve's token budget per step for latency-sensitive serving


@register
class Sarathi(VLLM):
    """vLLM's step with Sarathi's small token budget."""

    name = "sarathi"
    description = "stall-free chunked prefill with a 512-token step budget (Sarathi-Serve)"

    def token_budget(self, rep) -> int:
        return min(CHUNK, rep.cfg.max_num_batched_tokens)
