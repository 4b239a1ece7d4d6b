"""Chrome / Perfetto trace of a serving run: engine iterations per replica and KV tier transfers on
their links. Meant for short runs (it keeps every span in memory; spans past `limit` are dropped
and counted). The event format and colours are simcore.report.trace's."""

from __future__ import annotations

from pathlib import Path

from simcore.report.trace import span, track_names, write_json


class SpanLog:
    def __init__(self, limit: int = 200_000):
        self.spans: list[tuple] = []  # (process, track, name, kind, start s, end s, args)
        self.limit = limit
        self.dropped = 0

    def add(self, process: str, track: str, name: str, kind: str, start: float, end: float, args: dict) -> None:
        if len(self.spans) >= self.limit:
            self.dropped += 1
            return
        self.spans.append((process, track, name, kind, start, end, args))

    def iteration(self, replica: int, start: float, end: float, decodes: int, prefills: int, tokens: int) -> None:
        self.add(f"replica {replica}", "engine", f"iteration ({decodes} decode, {prefills} prefill)", "iteration",
                 start, end, {"decodes": decodes, "prefills": prefills, "prefill_tokens": tokens})

    def transfer(self, where: str, kind: str, start: float, end: float, blocks: int, nbytes: float) -> None:
        """A KV tier move: kv_cache_store (HBM -> host) or kv_cache_fetch (host -> HBM) on `where`'s link."""
        self.add(where, "host link", f"{kind} {blocks} blocks", kind, start, end, {"blocks": blocks, "bytes": nbytes})

    def write(self, path: Path) -> None:
        pids: dict[str, int] = {}
        tids: dict[tuple[str, str], int] = {}
        events: list[dict] = []
        for process, track, name, kind, start, end, args in self.spans:
            pids.setdefault(process, len(pids))
            if (process, track) not in tids:
                tids[process, track] = len(tids)
                events += track_names(pids[process], process, tids[process, track], track)
            events.append(span(name, kind, pids[process], tids[process, track], start, end - start, args))
        write_json(path, events, {"spans_dropped": self.dropped} if self.dropped else {})
