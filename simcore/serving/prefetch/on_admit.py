"""on_admit (default, vLLM's offloading connector): host hits start loading when the scheduler takes the request."""

from __future__ import annotations

from simcore.serving.prefetch import register


@register
class OnAdmit:
    name = "on_admit"
    description = "load host hits when the request is admitted (vLLM)"

    def arrive(self, rep, r: int, now: float) -> None:
        """Nothing happens on arrival."""
