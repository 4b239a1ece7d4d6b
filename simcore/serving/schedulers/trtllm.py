"""TensorRT-LLM's in-flight batching (PyTorch backend): every generation request gets its next token,
then context requests are added whole (context chunking off, the default) while max_num_tokens
(= max_num_batched_tokens, counting the generation tokens) allows. The default capacity policy
GUARANTEED_NO_EVICT admits a request only when the KV blocks of its whole prompt + output fit beside
what the running requests will still need, so nothing is ever evicted (tensorrt_llm/_torch/pyexecutor/
scheduler.py, 1.0; docs/serving.md).

Batch waiting (serving.batch_wait_iters / batch_wait_tokens_ratio; TensorRT-LLM's batch_wait_timeout_iters /
batch_wait_max_tokens_ratio, off by default): in a step that has both generation and new context requests, the
contexts are held back unless the step's tokens (contexts + one per generation) reach ratio x max_num_tokens or
they have been held for batch_wait_iters steps; a step that lets them through resets the count
(py_executor.py PyExecutor._schedule and _waiting_requests, 1.1-1.2)."""

from __future__ import annotations

from simcore.serving.schedulers import register


@register
class TRTLLM:
    name = "trtllm"
    description = "in-flight batching: generation first, whole contexts under max_num_tokens, no eviction"
    idle_decodes = True  # nothing queued or prefilling: decode_all() alone (schedulers/__init__.py)

    def __init__(self):
        self.waited = 0  # steps the waiting contexts have been held back (batch waiting)

    def schedule(self, rep):
        dec = rep.decode_all()
        chunks, budget = rep.continue_prefills(rep.cfg.max_num_batched_tokens - len(dec))
        if rep.queued() and rep.free_slots and not rep.preempted_now and not self.hold(rep, len(dec), budget):
            rep.admit(budget, chunks, reserve=rep.future_blocks(), whole_output=True)
        return dec, chunks

    def hold(self, rep, decodes: int, budget: int) -> bool:
        """Whether batch waiting holds this step's new contexts back."""
        cfg = rep.cfg
        if not (cfg.batch_wait_iters or cfg.batch_wait_tokens_ratio) or not decodes:
            return False
        tokens = rep.waiting_context_tokens(budget)
        if not tokens:
            return False
        if self.waited >= cfg.batch_wait_iters or \
                tokens + decodes >= cfg.batch_wait_tokens_ratio * cfg.max_num_batched_tokens:
            self.waited = 0
            return False
        self.waited += 1
        return True
