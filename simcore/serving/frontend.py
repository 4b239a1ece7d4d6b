"""The server's frontend loop: one event loop per replica that forwards every streamed token to its client and takes in
new requests (Dynamo's Python engine worker: its handler yields one message per engine response on the same asyncio
loop that accepts requests; docs/serving.md "The frontend loop"). While the engine streams tokens faster than the
loop forwards them, its backlog grows and a new request waits behind it before the engine sees it; the client's
clock, already running, counts the wait in TTFT. Token work is spread evenly over the time since the last request
(a fluid queue): below saturation a request waits for nothing."""

from __future__ import annotations


class FrontendLoop:
    __slots__ = ("token_s", "backlog", "at", "seen")

    def __init__(self, token_s: float):
        self.token_s = token_s  # loop time per streamed token
        self.backlog = 0.0  # seconds of work queued at `at`
        self.at = 0.0
        self.seen = 0  # tokens streamed up to `at`

    def wait(self, t: float, streamed: int) -> float:
        """Seconds a request arriving at t waits for the loop, given `streamed`, the replica's tokens so far."""
        work = (streamed - self.seen) * self.token_s
        self.seen = streamed
        self.backlog = max(0.0, self.backlog + work - (t - self.at))
        self.at = t
        return self.backlog
