"""vLLM-style continuous batching: decodes first, then running chunked prefills, then new requests.

Follows vLLM's scheduler with chunked prefill: every running sequence's next token is scheduled
first (preempting the newest running request by recompute when blocks run out), the token
budget (max_num_batched_tokens) left goes to partial prefills and then to waiting requests in
arrival order, each a chunk of at most the budget left; at most max_num_seqs run at once.
"""

from __future__ import annotations

from simcore.serving.schedulers import register


@register
class VLLM:
    name = "vllm"
    description = "continuous batching, decode-first, chunked prefill (vLLM)"
    idle_decodes = True  # nothing queued or prefilling: decode_all() alone (schedulers/__init__.py)

    def token_budget(self, rep) -> int:
        return rep.cfg.max_num_batched_tokens

    def schedule(self, rep):
        dec = rep.decode_all()
        chunks, budget = rep.continue_prefills(self.token_budget(rep) - len(dec))
        if not rep.preempted_now:
            rep.admit(budget, chunks)
        return dec, chunks
