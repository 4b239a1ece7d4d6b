"""Chrome / Perfetto trace JSON of simulated passes: one process per rank, one track per stream.

Open the file at ui.perfetto.dev (or chrome://tracing). KV cache ops get their own
category and colour, apart from compute and communication.
"""

from __future__ import annotations

import json
from pathlib import Path

from simcore.engine.des import Event

# The one colour and category table for every trace simcore writes (runs and serving).
COLOURS = {"compute": "thread_state_running", "iteration": "thread_state_running", "comm": "thread_state_iowait",
           "kv_cache_store": "yellow", "kv_cache_fetch": "olive",
           "backward": "thread_state_runnable", "recompute": "terrible", "optimizer": "good"}
CATEGORY = {"kv_cache_store": "kv_cache", "kv_cache_fetch": "kv_cache"}


def track_names(pid: int, process: str, tid: int, track: str) -> list[dict]:
    return [{"ph": "M", "name": "process_name", "pid": pid, "args": {"name": process}},
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": track}}]


def span(name: str, kind: str, pid: int, tid: int, start_s: float, dur_s: float, args: dict) -> dict:
    """One complete ("X") event; times in seconds, written in microseconds."""
    return {"name": name, "cat": CATEGORY.get(kind, kind), "ph": "X", "pid": pid, "tid": tid, "ts": start_s * 1e6,
            "dur": dur_s * 1e6, "cname": COLOURS.get(kind, "generic_work"), "args": args}


def write_json(path: Path, events: list[dict], metadata: dict | None = None) -> None:
    doc = {"traceEvents": events, "displayTimeUnit": "ms"}
    if metadata is not None:
        doc["metadata"] = metadata
    path.write_text(json.dumps(doc))


def trace_events(passes: list[tuple[str, float, list[Event]]], rank_name) -> list[dict]:
    """passes: (label, time offset in seconds, events). rank_name(rank) -> process name."""
    out: list[dict] = []
    seen: set[tuple[int, str]] = set()
    streams = {"main": 0, "copy": 1, "comm": 2, "dp": 3, "prefetch": 4}
    for label, offset, events in passes:
        for ev in events:
            tid = streams.get(ev.stream, 3)
            if (ev.rank, ev.stream) not in seen:
                seen.add((ev.rank, ev.stream))
                out += track_names(ev.rank, rank_name(ev.rank), tid, ev.stream)
            out.append(span(ev.name, ev.kind, ev.rank, tid, offset + ev.start, ev.end - ev.start,
                            {"pass": label, "kind": ev.kind, "layer": ev.layer, "micro_batch": ev.mb, "step": ev.step,
                             "stage": ev.stage, "link": ev.link, "work_us": ev.duration * 1e6}))
    return out


def write_trace(res, path: Path) -> None:
    """Prefill, then the first and last priced decode steps, laid end to end."""
    lanes = res.ranks // res.run.par.pp if res.ranks else 1
    tp = res.run.par.tp

    def rank_name(rank: int) -> str:
        stage, lane = divmod(rank, lanes)
        return f"stage {stage} (tp x{tp})" if lanes == 1 else f"stage {stage} tp rank {lane}"

    passes = [("prefill", 0.0, res.prefill.events)]
    t = res.prefill.events and max(e.end for e in res.prefill.events) or 0.0
    for label, p in (("decode first step", res.decode_first), ("decode last step", res.decode_last)):
        if p is not None and p.events:
            passes.append((label, t, p.events))
            t += max(e.end for e in p.events)
    write_json(path, trace_events(passes, rank_name))
