"""Schema of speculative decoding (`speculative:`), its acceptance arithmetic, and the draft's Run.

Per engine step a drafter proposes k tokens per sequence; the target verifies them in one forward
pass of k + 1 positions and keeps the longest accepted run plus one token of its own (the bonus or
the correction). Plain data and pure arithmetic: pricing lives in simcore/engine/speculative.py,
memory in simcore/memory/speculative.py. docs/serving.md documents every key.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from pydantic import Field, model_validator

from simcore.config.validation import Strict
from simcore.errors import SimcoreError

METHODS = ("none", "draft", "eagle", "mtp", "ngram")


class AcceptanceDist(Strict):
    """P(exactly j draft tokens accepted) for j = 0 .. k."""

    accepted: list[float] = Field(min_length=1)


class Speculative(Strict):
    method: Literal["none", "draft", "eagle", "mtp", "ngram"] = "none"
    k: int = Field(default=0, ge=0, le=32)  # draft tokens per sequence per step; 0: no speculation
    draft_model: str | None = None  # method draft: a models/ name or a config.json path
    # a fixed rate per position, one conditional rate per position (k of them), or {accepted: [p0 .. pk]}
    acceptance: float | list[float] | AcceptanceDist = 0.7

    @model_validator(mode="after")
    def _check(self):
        if self.method == "draft" and self.draft_model is None:
            raise ValueError("method draft needs draft_model (a models/ name, e.g. llama-3.2-1b)")
        if self.method != "draft" and self.draft_model is not None:
            raise ValueError(f"draft_model is only used with method draft, not {self.method}")
        if self.method == "none" and self.k:
            raise ValueError(f"k = {self.k} needs a method: draft, eagle, mtp or ngram")
        a = self.acceptance
        rates = a.accepted if isinstance(a, AcceptanceDist) else a if isinstance(a, list) else [a]
        for x in rates:
            if not (isinstance(x, (int, float)) and 0 <= x <= 1):
                raise ValueError(f"acceptance {x!r}: every rate and probability must be in [0, 1]")
        if isinstance(a, list) and self.k and len(a) != self.k:
            raise ValueError(f"acceptance has {len(a)} per-position rates; k = {self.k} needs exactly {self.k}")
        if isinstance(a, AcceptanceDist):
            if self.k and len(a.accepted) != self.k + 1:
                raise ValueError(f"acceptance.accepted has {len(a.accepted)} probabilities; k = {self.k} needs "
                                 f"k + 1 = {self.k + 1} (0 .. k accepted)")
            if abs(sum(a.accepted) - 1) > 1e-6:
                raise ValueError(f"acceptance.accepted sums to {sum(a.accepted):g}; the probabilities must sum to 1")
        return self

    @property
    def enabled(self) -> bool:
        return self.method != "none" and self.k > 0


def accepted_at_least(spec: Speculative) -> list[float]:
    """P(at least j drafts accepted) for j = 1 .. k: the product of the first j per-position rates."""
    a, k = spec.acceptance, spec.k
    if isinstance(a, AcceptanceDist):
        p = a.accepted
        return [sum(p[j:]) for j in range(1, k + 1)]
    rates = a if isinstance(a, list) else [a] * k
    return [math.prod(rates[:j]) for j in range(1, k + 1)]


def expected_accepted(spec: Speculative) -> float:
    """E[accepted drafts per step] = sum over j of prod_{i <= j} a_i (= sum_j j p_j for a distribution)."""
    return sum(accepted_at_least(spec))


def tokens_per_step(spec: Speculative) -> float:
    """Tokens a sequence gains per verified step: the accepted drafts plus the target's own token."""
    return 1.0 + expected_accepted(spec) if spec.enabled else 1.0


def head_model(model, method: str):
    """An EAGLE head or a DeepSeek MTP module as a one-layer model of the target's shape (the target's
    last layer: MoE for DeepSeek-V3's MTP module); it runs the shared embedding and LM head."""
    return dataclasses.replace(model, name=f"{model.name}-{method}", layers=1, layer_kinds=model.layer_kinds[-1:],
                               moe_layers=model.moe_layers[-1:])


def draft_run(run):
    """The drafter as a Run (same GPUs, tp and dtypes; pp 1 and dp 1: it sits with the last stage), or
    None when the drafter is not a model (ngram prompt lookup) or speculation is off."""
    from simcore.config.experiment import tp_problem  # defined on top of this schema: imported at call time
    from simcore.config.model import load_model

    spec = run.experiment.speculative
    if not spec.enabled or spec.method == "ngram":
        return None
    if spec.method == "draft":
        try:
            m = load_model(spec.draft_model)
        except SimcoreError as exc:
            raise SimcoreError(f"speculative.draft_model: {exc}") from None
        if m.vocab != run.model.vocab:
            raise SimcoreError(f"speculative.draft_model: {spec.draft_model!r} has a vocabulary of {m.vocab:,} "
                               f"tokens, {run.model.name} of {run.model.vocab:,}; a draft must share the target's "
                               "tokenizer")
        why = tp_problem(m, run.par.tp)
        if why:
            raise SimcoreError(f"speculative.draft_model: {spec.draft_model!r} at tp {run.par.tp}: {why}")
    else:
        m = head_model(run.model, spec.method)
    par = run.par.model_copy(update={"pp": 1, "dp": 1})
    e = run.experiment.model_copy(update={"parallelism": par})
    return dataclasses.replace(run, experiment=e, model=m)
