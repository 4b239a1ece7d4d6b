"""Chrome / Perfetto trace of a serving run: engine iterations per replica, KV tier transfers on
their links, and request lifetimes. Meant for short runs (it keeps every span in memory; spans
past `limit` are dropped and counted)."""

from __future__ import annotations

import json
from pathlib import Path

COLOURS = {"iteration": "thread_state_running", "kv_cache_store": "yellow", "kv_cache_fetch": "olive",
           "request": "generic_work"}


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
            if process not in pids:
                pids[process] = len(pids)
                events.append({"ph": "M", "name": "process_name", "pid": pids[process], "args": {"name": process}})
            if (process, track) not in tids:
                tids[process, track] = len(tids)
                events.append({"ph": "M", "name": "thread_name", "pid": pids[process], "tid": tids[process, track],
                               "args": {"name": track}})
            events.append({"name": name, "cat": "kv_cache" if kind.startswith("kv_cache") else kind, "ph": "X",
                           "pid": pids[process], "tid": tids[process, track], "ts": start * 1e6,
                           "dur": (end - start) * 1e6, "cname": COLOURS.get(kind, "generic_work"), "args": args})
        meta = {"spans_dropped": self.dropped} if self.dropped else {}
        path.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms", "metadata": meta}))
