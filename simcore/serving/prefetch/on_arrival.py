"""on_arrival: host hits start loading when the request arrives, overlapping its time in the queue."""

from __future__ import annotations

from simcore.serving.prefetch import register


@register
class OnArrival:
    name = "on_arrival"
    description = "load host hits when the request arrives, if HBM has free blocks for them; else on admission"

    def arrive(self, rep, r: int, now: float) -> None:
        rep.prefetch_host(r, now)
