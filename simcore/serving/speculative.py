"""Speculative decoding in a serving replica: its iterations priced through SpecPricer.

The replica books one token per decoding sequence per decode step; under speculation a verified
step yields tau tokens per sequence on average, so a booked decode step costs 1 / tau of one
(simcore/engine/speculative.py). A step with prefill chunks is the verified mixed step with the
decode share scaled the same way: T(prefill + verify) + draft - (1 - 1/tau) x (T(verify) + draft),
exact at both ends (no decodes; no prefill). Host overhead is per verified step, so 1 / tau of it
per decode-only booked step.
"""

from __future__ import annotations

from simcore.engine.speculative import SpecPricer
from simcore.ops.passes import Batch, Group
from simcore.serving.cost import IterationCost


def make_cost(run, profile=None) -> IterationCost:
    """The replica's iteration pricer: IterationCost, or SpecCost with speculation on (k > 0); profile: the
    engine profile whose host model and CUDA-graph padding apply (IterationCost)."""
    return SpecCost(run, profile) if run.experiment.speculative.enabled else IterationCost(run, profile)


class SpecCost(IterationCost):
    def __init__(self, run, profile=None):
        super().__init__(run, profile)
        self.spec = SpecPricer(run)
        self.tau = self.spec.tau
        self.dec_steps = 0  # decode-carrying iterations, and their sequences and contexts (for the speed-up)
        self.dec_seqs = 0
        self.dec_ctx = 0.0

    def corner(self, dec: int, dec_past: int, pre: int, pre_tokens: int, pre_past: int) -> float:
        if not dec:
            return super().corner(dec, dec_past, pre, pre_tokens, pre_past)
        key = (dec, dec_past, pre, pre_tokens, pre_past)
        t = self.priced.get(key)
        if t is None:
            sp = self.spec
            g = sp.verify_group(dec, dec_past)
            draft = sp.draft_time(dec, dec_past)
            alone = self.batch_time(Batch((g,), emitting=g.tokens)) + draft
            if pre:
                per = max(1, round(pre_tokens / pre))
                both = Batch((Group("prefill", pre, per, pre_past), g), emitting=g.tokens + pre)
                t = self.batch_time(both) + draft - (1 - 1 / self.tau) * alone
            else:
                t = alone / self.tau
            self.priced[key] = t
        return t

    def time(self, dec: int, dec_past: float, pre: int, pre_tokens: int, pre_past: float) -> float:
        if dec and not pre:
            return self.decode_time(dec, dec_past)
        t = super().time(dec, dec_past, pre, pre_tokens, pre_past)
        if dec:
            self._count(dec, dec_past)
        return t

    def decode_time(self, dec: int, dec_past: float) -> float:
        t = super().decode_time(dec, dec_past)
        self._count(dec, dec_past)
        return t - self.overhead * (1 - 1 / self.tau)

    def _count(self, dec: int, dec_past: float) -> None:
        self.dec_steps += 1
        self.dec_seqs += dec
        self.dec_ctx += dec * dec_past

    def summary(self, blocks_without_draft: int) -> dict:
        """The speculative block of the serving summary (docs/serving.md)."""
        from simcore.memory.speculative import draft_kv_bytes_per_token, draft_weight_bytes

        out = self.spec.record()
        b = self.dec_seqs / self.dec_steps if self.dec_steps else 0.0
        c = self.dec_ctx / self.dec_seqs if self.dec_seqs else 0.0
        speed = None
        if b:
            n, past = max(1, round(b)), round(c)
            with_ = (self.spec.verified(n, past) + self.overhead) / self.tau
            speed = (self.spec.plain(n, past) + self.overhead) / with_
        run = self.spec.run
        out.update({"mean_decode_batch": b, "mean_decode_context": c, "decode_step_speedup": speed,
                    "draft_weight_bytes_per_gpu": draft_weight_bytes(run),
                    "draft_kv_bytes_per_token_per_gpu": draft_kv_bytes_per_token(run),
                    "kv_blocks_without_draft": blocks_without_draft})
        return out
