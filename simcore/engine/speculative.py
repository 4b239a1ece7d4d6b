"""Pricing of speculative decoding: one verified step = the drafter's k passes + the target's pass
over k + 1 positions per sequence, all through the same op builder and roofline as any pass.

A verified step gives each sequence tau = 1 + E[accepted] tokens on average (simcore.config.speculative).
Runs book decode one token per sequence per step, so a decode step under speculation is priced as
1 / tau of a verified step: the expected time per token. Means (TPOT, throughput, KV growth) are kept;
the burstiness of tokens within a step is not (docs/serving.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simcore.config.speculative import accepted_at_least, draft_run, expected_accepted, tokens_per_step
from simcore.engine.walk import engine_parts, stage_time
from simcore.ops.passes import Batch, Group

STATIC_SAMPLES = 9  # contexts priced over a static run's decode (step time is linear in the context)


class SpecPricer:
    """Times of the drafter and of the target's verification for `seqs` sequences at context `past`."""

    def __init__(self, run, parts=None):
        self.run = run
        self.spec = run.experiment.speculative
        self.k = self.spec.k if self.spec.enabled else 0
        self.tau = tokens_per_step(self.spec)
        self.parts = parts or engine_parts(run)
        self.draft = draft_run(run)
        self.dparts = engine_parts(self.draft) if self.draft is not None else None

    @staticmethod
    def _time(parts, batch: Batch) -> float:
        return sum(stage_time(b, batch, parts.pricer, parts.policy, parts.launch_s) for b in parts.builders)

    def plain(self, seqs: int, past: int) -> float:
        """One ordinary decode step (no speculation)."""
        return self._time(self.parts, Batch((Group("decode", seqs, 1, past),), emitting=seqs))

    def verify_group(self, seqs: int, past: int) -> Group:
        """The target's verification: k drafts + the last token per sequence, logits at every position."""
        return Group("decode", seqs, self.k + 1, past)

    def draft_time(self, seqs: int, past: int) -> float:
        """k autoregressive drafter passes of one token each; their contexts past .. past + k - 1 are
        priced at their mean (decode time is linear in the context). 0 for ngram prompt lookup."""
        if self.dparts is None or not self.k:
            return 0.0
        mid = past + (self.k - 1) // 2
        return self.k * self._time(self.dparts, Batch((Group("decode", seqs, 1, mid),), emitting=seqs))

    def verified(self, seqs: int, past: int) -> float:
        """One whole speculative step: drafting + verification."""
        g = self.verify_group(seqs, past)
        return self._time(self.parts, Batch((g,), emitting=g.tokens)) + self.draft_time(seqs, past)

    def record(self) -> dict:
        """The settings and acceptance figures every output reports."""
        s = self.spec
        e = expected_accepted(s)
        return {"method": s.method, "k": self.k, "draft_model": self.draft.model.name if self.draft else None,
                "acceptance_rate": e / self.k if self.k else 0.0,
                "accepted_at_least": accepted_at_least(s), "accepted_tokens_per_step": e,
                "tokens_per_step": self.tau}


@dataclass
class StaticSpeculation:
    record: dict
    decode_s: float  # the run's decode with speculation (expected)
    decode_s_without: float  # the same decode without it, priced the same way
    verified_steps: float  # expected verified steps: (output - 1) / tau

    @property
    def speedup(self) -> float:
        return self.decode_s_without / self.decode_s if self.decode_s else 1.0


def static_speculation(run, batch: int, prompt: int, output: int, parts=None) -> StaticSpeculation:
    """The decode of a static batch with and without speculation, each token at its context priced as
    1 / tau of a verified step (with) or one plain step (without), one batch through the stages in turn."""
    p = SpecPricer(run, parts)
    steps = output - 1
    if steps <= 0:
        return StaticSpeculation(p.record(), 0.0, 0.0, 0.0)
    ctx = np.arange(prompt, prompt + steps, dtype=float)
    xs = np.unique(np.linspace(prompt, prompt + steps - 1, min(STATIC_SAMPLES, steps)).round())
    plain = np.interp(ctx, xs, [p.plain(batch, int(x)) for x in xs])
    spec = np.interp(ctx, xs, [p.verified(batch, int(x)) for x in xs]) / p.tau
    rec = p.record()
    return StaticSpeculation(rec, float(spec.sum()), float(plain.sum()), steps / p.tau)
