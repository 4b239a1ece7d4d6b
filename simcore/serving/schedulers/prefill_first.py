"""Prefill-first (Orca / vLLM v0 without chunked prefill): a step that can admit new prompts runs
only prefills, whole prompts within the token budget; otherwise it runs every decode."""

from __future__ import annotations

from simcore.serving.schedulers import register


@register
class PrefillFirst:
    name = "prefill_first"
    description = "whole-prompt prefill steps take priority over decode steps (Orca, vLLM v0)"
    idle_decodes = True  # nothing queued or prefilling: decode_all() alone (schedulers/__init__.py)

    def schedule(self, rep):
        chunks: list = []
        rep.admit(rep.cfg.max_num_batched_tokens, chunks, whole=True)
        if chunks:
            return rep.no_decodes(), chunks
        return rep.decode_all(), chunks
