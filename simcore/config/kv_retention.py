"""Schema of `inference.kv_retention` and how a retention cap becomes the model's attention window.

The policies live one per file in simcore/ops/kv_retention/ (found through the registry, never
imported here); each says how many tokens it keeps. Resolving an experiment turns that cap into
a window on every layer, so the op builder, the memory model and the planner all see the kept
tokens through the one window path (ops/kv.py cached_tokens). docs/serving.md documents it.
"""

from __future__ import annotations

import dataclasses

from pydantic import Field, model_validator

from simcore.config.validation import Strict
from simcore.errors import SimcoreError
from simcore.registry import lookup

NEEDS = {"sliding_window": ("window",), "sink_recent": ("sink", "recent"), "heavy_hitter": ("heavy", "recent")}


class KVRetention(Strict):
    policy: str = "full"  # full | sliding_window | sink_recent | heavy_hitter (simcore/ops/kv_retention/)
    window: int | None = Field(default=None, gt=0, le=2**24)  # sliding_window: tokens kept
    sink: int | None = Field(default=None, gt=0, le=2**24)  # sink_recent: first tokens kept (StreamingLLM uses 4)
    recent: int | None = Field(default=None, gt=0, le=2**24)  # sink_recent, heavy_hitter: last tokens kept
    heavy: int | None = Field(default=None, gt=0, le=2**24)  # heavy_hitter: highest-scoring tokens kept

    @model_validator(mode="after")
    def _fields(self):
        need = NEEDS.get(self.policy, ())
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"policy {self.policy} needs {', '.join(missing)}")
        extra = [f for f in ("window", "sink", "recent", "heavy") if getattr(self, f) is not None and f not in need]
        if extra:
            raise ValueError(f"{', '.join(extra)} not used by policy {self.policy}; it takes "
                             f"{', '.join(need) or 'nothing'}")
        return self


def retention_policy(cfg: KVRetention):
    try:
        return lookup("simcore.ops.kv_retention", cfg.policy, "inference.kv_retention.policy")
    except SimcoreError as exc:
        raise SimcoreError(f"field 'inference.kv_retention.policy': {exc}") from None


def with_retention(model, cfg: KVRetention):
    """The model whose every layer attends to at most the policy's kept tokens (unchanged for `full`)."""
    kept = retention_policy(cfg).retained(cfg)
    if kept is None:
        return model
    if model.sliding_window:
        raise SimcoreError(f"field 'inference.kv_retention.policy' = {cfg.policy!r}: {model.name} already has "
                           f"sliding-window layers (window {model.sliding_window}); allowed: full")
    kinds = tuple("linear" if k == "linear" else "sliding" for k in model.layer_kinds)  # a state has no tokens to drop
    return dataclasses.replace(model, layer_kinds=kinds, sliding_window=kept)
