"""Sliding-window retention: keep the last `window` tokens (a ring buffer; Mistral-style SWA applied
to a model trained with full attention). No bookkeeping beyond the ring's index arithmetic."""

from simcore.ops.kv_retention import register


class SlidingWindow:
    name = "sliding_window"
    description = "keep the last `window` tokens"

    @staticmethod
    def retained(cfg) -> int:
        return cfg.window

    @staticmethod
    def bookkeeping(builder, layer, batch) -> list:
        return []


register(SlidingWindow.name, SlidingWindow)
