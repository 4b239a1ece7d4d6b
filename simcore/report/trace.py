"""Chrome / Perfetto trace JSON of simulated passes: one process per rank, one track per stream.

Open the file at ui.perfetto.dev (or chrome://tracing). KV cache ops get their own
category and colour, apart from compute and communication.
"""

from __future__ import annotations

import json
from pathlib import Path

from simcore.engine.des import Event

COLOURS = {"compute": "thread_state_running", "comm": "thread_state_iowait",
           "kv_cache_store": "yellow", "kv_cache_fetch": "olive"}
CATEGORY = {"kv_cache_store": "kv_cache", "kv_cache_fetch": "kv_cache"}


def trace_events(passes: list[tuple[str, float, list[Event]]], rank_name) -> list[dict]:
    """passes: (label, time offset in seconds, events). rank_name(rank) -> process name."""
    out: list[dict] = []
    seen: set[tuple[int, str]] = set()
    streams = {"main": 0, "copy": 1, "comm": 2}
    for label, offset, events in passes:
        for ev in events:
            if (ev.rank, ev.stream) not in seen:
                seen.add((ev.rank, ev.stream))
                out.append({"ph": "M", "name": "process_name", "pid": ev.rank, "args": {"name": rank_name(ev.rank)}})
                out.append({"ph": "M", "name": "thread_name", "pid": ev.rank, "tid": streams.get(ev.stream, 3),
                            "args": {"name": ev.stream}})
            out.append({
                "name": ev.name, "cat": CATEGORY.get(ev.kind, ev.kind), "ph": "X", "pid": ev.rank,
                "tid": streams.get(ev.stream, 3), "ts": (offset + ev.start) * 1e6, "dur": (ev.end - ev.start) * 1e6,
                "cname": COLOURS.get(ev.kind, "generic_work"),
                "args": {"pass": label, "kind": ev.kind, "layer": ev.layer, "micro_batch": ev.mb, "step": ev.step,
                         "stage": ev.stage, "link": ev.link, "work_us": ev.duration * 1e6},
            })
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
    path.write_text(json.dumps({"traceEvents": trace_events(passes, rank_name), "displayTimeUnit": "ms"}))
