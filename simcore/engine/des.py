"""The discrete-event engine: one SimPy process per (rank, stream) walks its ordered events.

An event waits for its dependencies (events on other streams or ranks), then for the
resources it needs: the link it sends on and, when other streams on the same GPU could use
HBM at the same time, the GPU's HBM channel (held for the event's memory-bound part).
A link is shared fairly: the transfers on it at one moment split its bandwidth equally
(processor sharing), as a NIC or NVLink port interleaves the packets of concurrent flows, so
a short pipeline send next to a long gradient bucket slows down instead of queueing behind
the whole bucket. Without contention the time is the longest dependency chain; with it, a
transfer's stretch and waits for HBM show up as 'contention' on the critical path.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import simpy


@dataclass(slots=True, eq=False)
class Event:
    id: int
    rank: int
    stream: str
    name: str
    kind: str
    duration: float
    memory_s: float = 0.0
    gpu: int = 0
    link: str | None = None
    deps: list[int] = field(default_factory=list)
    step: int = 0
    mb: int = 0
    stage: int = 0
    layer: int = -1
    kinds: dict[str, float] | None = None  # time by op kind for merged (stage- or layer-level) events
    ready: float = 0.0  # when its dependencies were met
    start: float = 0.0  # when it got its link (HBM waits fall inside start..end)
    end: float = 0.0
    pred: int = -1  # the event whose end let this one start (critical-path back pointer)


class SharedLink:
    """Processor sharing: k transfers in flight each progress at 1/k of the link's rate. A transfer's
    work is its uncontended duration; `send` returns the SimPy event that fires when it is done."""

    __slots__ = ("env", "flows", "since", "version")

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.flows: dict[simpy.Event, float] = {}  # done signal -> remaining work (s at the full rate)
        self.since = 0.0
        self.version = 0

    def _advance(self) -> None:
        if self.flows:
            share = (self.env.now - self.since) / len(self.flows)
            for f in self.flows:
                self.flows[f] -= share
        self.since = self.env.now

    def send(self, work: float) -> simpy.Event:
        self._advance()
        done = self.env.event()
        self.flows[done] = max(work, 0.0)
        self._next()
        return done

    def _next(self) -> None:
        self.version += 1
        if not self.flows:
            return
        version = self.version
        wake = self.env.timeout(max(min(self.flows.values()), 0.0) * len(self.flows))
        wake.callbacks.append(lambda _: self._finish(version))

    def _finish(self, version: int) -> None:
        if version != self.version:  # a transfer joined or left since this wake-up was set
            return
        self._advance()
        least = min(self.flows.values())
        for f in [f for f, left in self.flows.items() if left <= least + 1e-15]:
            del self.flows[f]
            f.succeed()
        self._next()


def execute(events: list[Event], contention: bool = True, hbm_gpus: set[int] | frozenset = frozenset()) -> float:
    """Run every event; fills start/end/pred; returns the makespan."""
    env = simpy.Environment()
    # Only events another lane waits for get a SimPy event, made when they finish (a lane follows its
    # own previous event without one): most events need none, and none is made up front.
    awaited = {d for ev in events for d in ev.deps}
    done: dict[int, simpy.Event] = {}
    lanes: dict[tuple[int, str], list[Event]] = defaultdict(list)
    for ev in events:
        lanes[ev.rank, ev.stream].append(ev)
    links: dict[str, SharedLink] = {}
    # The main stream goes first on HBM: a prefetch only fills what compute leaves idle.
    hbm = {g: simpy.PriorityResource(env, 1) for g in hbm_gpus} if contention else {}
    if contention:
        for ev in events:
            if ev.link and ev.link not in links:
                links[ev.link] = SharedLink(env)

    def lane(evs: list[Event]):
        prev: Event | None = None
        for ev in evs:
            ready, pred = (prev.end, prev.id) if prev else (0.0, -1)
            for d in ev.deps:
                signal = done.get(d)
                if signal is None:  # not finished yet: wait for the signal it will send
                    signal = done[d] = env.event()
                if not signal.processed:
                    yield signal
                if events[d].end > ready:
                    ready, pred = events[d].end, d
            ev.pred, ev.ready = pred, env.now
            link = links.get(ev.link) if ev.link else None
            ev.start = env.now
            channel = hbm.get(ev.gpu) if ev.memory_s > 0 else None
            if link is not None:
                yield link.send(ev.duration)
            elif channel is not None:
                with channel.request(priority=0 if ev.stream == "main" else 1) as r:
                    yield r
                    yield env.timeout(ev.memory_s)
                if ev.duration > ev.memory_s:
                    yield env.timeout(ev.duration - ev.memory_s)
            else:
                yield env.timeout(ev.duration)
            ev.end = env.now
            if ev.id in awaited:
                signal = done.get(ev.id)
                if signal is None:
                    signal = done[ev.id] = env.event()
                signal.succeed()
            prev = ev

    for evs in lanes.values():
        env.process(lane(evs))
    env.run()
    return max((ev.end for ev in events), default=0.0)


KIND_GROUP = {"compute": "compute", "comm": "comm", "kv_cache_store": "kv_cache", "kv_cache_fetch": "kv_cache",
              "host_launch": "host_launch"}


def critical_path(events: list[Event]) -> dict[str, float]:
    """Time on the critical path by kind: compute, comm, kv_cache, host_launch, contention (waits for a
    shared link or HBM) and idle (waits for nothing modeled). Sums to the makespan."""
    out: dict[str, float] = defaultdict(float)
    if not events:
        return {}
    ev = max(events, key=lambda e: e.end)
    while True:
        work = min(ev.duration, ev.end - ev.start)
        if ev.kinds:
            total = sum(ev.kinds.values()) or 1.0
            for kind, t in ev.kinds.items():
                out[KIND_GROUP.get(kind, kind)] += work * t / total
        else:
            out[KIND_GROUP.get(ev.kind, ev.kind)] += work
        out["contention"] += (ev.start - ev.ready) + (ev.end - ev.start - work)
        before = events[ev.pred].end if ev.pred >= 0 else 0.0
        out["idle"] += max(0.0, ev.ready - before)
        if ev.pred < 0:
            break
        ev = events[ev.pred]
    return {k: v for k, v in out.items() if v > 1e-15}


def busiest_rank_idle(events: list[Event]) -> float:
    """Makespan minus the busy time of the busiest rank: the pipeline bubble that rank sits through."""
    if not events:
        return 0.0
    busy: dict[int, float] = defaultdict(float)
    for ev in events:
        if ev.stream == "main":
            busy[ev.rank] += ev.end - ev.start
    makespan = max(ev.end for ev in events)
    return max(0.0, makespan - max(busy.values(), default=makespan))
