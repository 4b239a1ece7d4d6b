"""TensorRT-LLM's in-flight batching (PyTorch backend): every generation request gets its next token,
then context requests are added whole (context chunking off, the default) while max_num_tokens
(= max_num_batched_tokens, counting the generation tokens) allows. The default capacity policy
GUARANTEED_NO_EVICT admits a request only when the KV blocks of its whole prompt + output fit beside
what the running requests will still need, so nothing is ever evicted (tensorrt_llm/_torch/pyexecutor/
scheduler.py, 1.0; docs/serving.md)."""

from __future__ import annotations

from simcore.serving.schedulers import register


@register
class TRTLLM:
    name = "trtllm"
    description = "in-flight batching: generation first, whole contexts under max_num_tokens, no eviction"
    idle_decodes = True  # nothing queued or prefilling: decode_all() alone (schedulers/__init__.py)

    def schedule(self, rep):
        dec = rep.decode_all()
        chunks, budget = rep.continue_prefills(rep.cfg.max_num_batched_tokens - len(dec))
        if rep.queued() and rep.free_slots and not rep.preempted_now:
            rep.admit(budget, chunks, reserve=rep.future_blocks(), whole_output=True)
        return dec, chunks
