"""SGLang's default scheduler: prefill first. A step that can take new prompts runs only prefill chunks
(the request being chunked continues first, then waiting requests in order, under chunked_prefill_size =
max_num_batched_tokens); otherwise it runs every decode. Admission keeps room for the tokens running
requests are still expected to produce, estimated as new_token_ratio x their remaining output: the
ratio starts at 0.7, falls by 0.001 per decode step to 0.1 and goes back to 0.7 after a preemption
(sglang/srt/managers/scheduler.py and schedule_policy.py, 0.5.x; docs/serving.md)."""

from __future__ import annotations

from simcore.serving.schedulers import register

INIT_RATIO, MIN_RATIO, DECAY = 0.7, 0.1, 0.001


@register
class SGLang:
    name = "sglang"
    description = "prefill-first chunked prefill with new-token-ratio admission (SGLang)"

    def __init__(self):
        self.ratio = INIT_RATIO

    def schedule(self, rep):
        chunks, budget = rep.continue_prefills(rep.cfg.max_num_batched_tokens)
        if rep.queued() and budget > 0 and rep.free_slots:
            rep.admit(budget, chunks, reserve=self.ratio * rep.remaining_output() / rep.bs)
        if chunks:
            return rep.no_decodes(), chunks
        dec = rep.decode_all()
        self.ratio = INIT_RATIO if rep.preempted_now else max(MIN_RATIO, self.ratio - DECAY)
        return dec, chunks
