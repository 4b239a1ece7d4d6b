"""The flattener: expand the pipeline graph into per-rank event streams, at the mode's granularity.

- analytical: one event per (step, micro-batch, stage) whose time is the closed-form walk
  of the stage's ops (collectives closed-form, no resources); a rank per stage.
- hybrid: per stage, consecutive compute ops merge into layer-level events; every
  collective and pipeline send is its own event holding the stage's link, so
  communication contends; a rank per stage (one TP rank stands for its group).
- flattened: every op as its own event; collectives become their algorithm's rounds of
  transfers, each holding the sending GPU's link. The TP ranks of a stage run identical op
  lists on identical links, so one rank per stage stands for its group (its collective
  rounds are the group's synchronisation) and gives the same times as simulating every
  GPU; `engine.all_ranks` (`--all-ranks`) expands to tp x pp ranks (bigger traces, same times).
Overlap policies place ops on streams (main, copy, comm) the same way in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.config.experiment import Run
from simcore.cost.collectives import schedule
from simcore.cost.roofline import Pricer
from simcore.engine.des import Event
from simcore.engine.policies import COPY, MAIN, PREFETCH, OverlapPolicy
from simcore.engine.walk import class_totals, consumer_end, walk_totals
from simcore.graph.build import Streams, stage_streams
from simcore.ops.op import COMM, Op
from simcore.ops.passes import as_batch

@dataclass
class Plan:
    events: list[Event] = field(default_factory=list)
    hbm_gpus: set[int] = field(default_factory=set)
    ranks: int = 0
    # per event, how its duration follows from the ops (Flattener.retime): [how, (step, mb, stage), op index or
    # indices, pieces, ...]; the rest of an event (streams, deps, links) depends only on the pass's shape
    recipes: list[list] = field(default_factory=list)

    def add(self, recipe: list, **kw) -> Event:
        ev = Event(id=len(self.events), **kw)
        self.events.append(ev)
        self.recipes.append(recipe)
        return ev


def link_of(op: Op, gpu: int) -> str:
    """The link a GPU's transfer holds: its NVLink port inside a node, its NIC across nodes."""
    return f"{'nic' if op.inter_node else 'egress'}:{gpu}"


def shape(streams: Streams) -> tuple:
    """What the flattener's events depend on besides durations: passes of equal shape (the sampled decode
    steps: only the context length differs) share one plan, re-timed for each. An overlap policy's stream and
    chunk choices may depend on these fields only."""
    return tuple((key, tuple((op.name, op.kind, op.family, op.layer, op.collective, op.group, op.inter_node, op.tier)
                             for op in ops)) for key, (_, ops) in streams.items())


class Flattener:
    def __init__(self, run: Run, mode: str, pricer: Pricer, policy: OverlapPolicy, launch_s: float = 0.0,
                 all_ranks: bool = False, builders: list | None = None):
        self.run, self.mode, self.pricer, self.policy, self.launch_s = run, mode, pricer, policy, launch_s
        self.builders = builders  # per stage: prices stages whose streams carry no ops (analytical, nothing overlaps)
        self.tp = run.par.tp
        self.lanes = self.tp if mode == "flattened" and all_ranks else 1  # ranks per stage that get their own events
        self.plan = Plan()
        self._schedules: dict[tuple, object] = {}  # a collective's rounds recur every layer
        self._walks: dict[tuple, tuple] = {}  # (stage, Pass) -> ((time, by kind), its send): micro-batches, steps repeat

    def flatten(self, streams: Streams) -> Plan:
        exits: dict[tuple[int, int, int], list[int]] = {}
        pp = self.run.par.pp
        for (step, mb, stage), (mb_pass, ops) in streams.items():
            if stage > 0:
                entry = exits[step, mb, stage - 1]
            elif step > 0:
                entry = exits[step - 1, mb, pp - 1]
            else:
                entry = [None] * self.lanes
            meta = dict(step=step, mb=mb, stage=stage)
            if self.mode == "analytical":
                exits[step, mb, stage] = self._stage_event(ops, entry, meta, (stage, mb_pass))
            else:
                exits[step, mb, stage] = self._op_events(ops, entry, meta)
        self.plan.ranks = pp * self.lanes
        return self.plan

    # -- helpers ---------------------------------------------------------------------------
    def _rank(self, stage: int, lane: int) -> int:
        return stage * self.lanes + lane

    def _stage_event(self, ops: list[Op] | None, entry: list, meta: dict, key: tuple) -> list[int]:
        found = self._walks.get(key)
        if found is not None:
            w, send = found
        elif ops is None:  # no ops built: one layer per class (the policy exposes every op whole)
            w, send = self._walks[key] = class_totals(self.builders[key[0]], as_batch(key[1]), self.pricer,
                                                      self.launch_s)
        else:
            send = ops[-1] if ops[-1].collective == "send_recv" else None
            body = ops[:-1] if send else ops
            w = walk_totals(body, self.pricer, self.policy, self.launch_s)
            self._walks[key] = (w, send)
        rank = meta["stage"]
        ev = self.plan.add(None, rank=rank, stream=MAIN, name=f"stage {rank}", kind="compute", duration=w[0],
                           gpu=rank, deps=[d for d in entry if d is not None], kinds=dict(w[1]), **meta)
        if not send:
            return [ev.id]
        s = self.plan.add(None, rank=rank, stream=self.policy.stream_for(send), name=send.name, kind=COMM,
                          duration=self.pricer.time(send), gpu=rank, deps=[ev.id], layer=send.layer, **meta)
        return [s.id]

    def _op_events(self, ops: list[Op], entry: list, meta: dict) -> list[int]:
        lanes = range(self.lanes)
        stage = meta["stage"]
        key = (meta["step"], meta["mb"], stage)
        hybrid = self.mode == "hybrid"
        gpus = [self._rank(stage, t) for t in lanes]
        last_main: list[int | None] = list(entry)  # the event a lane's next op must follow
        first = [True] * self.lanes
        segment: list[Event | None] = [None] * self.lanes
        pending: list[list[int]] = [[] for _ in lanes]  # cross-stream deps for the next main event
        anchor: list[int | None] = [None] * self.lanes  # where the previous fetch was issued
        i = 0
        while i < len(ops):
            op = ops[i]
            stream = self.policy.stream_for(op)
            if op.kind == COMM and stream == PREFETCH:
                # a ZeRO-3 gather may start once the main stream reached the previous gather's issue point;
                # the layer's next main op waits for it
                after = [a if a is not None else m for a, m in zip(anchor, last_main)]
                anchor = list(last_main)
                tails = self._collective(op, stream, gpus, after, first, 1, meta, (key, i))
                for t in lanes:
                    pending[t].append(tails[t][-1])
                segment = [None] * self.lanes
                i += 1
                continue
            if op.kind == COMM:
                segment = [None] * self.lanes
                chunks = self.policy.chunks_for(op)
                tails = self._collective(op, stream, gpus, last_main, first, chunks, meta, (key, i))
                if stream == MAIN:
                    last_main = [t[-1] for t in tails]
                    first = [False] * self.lanes
                    i += 1
                    continue
                if chunks == 1:  # a pipeline send off the main stream: the next stage waits on it
                    i += 1
                    if i == len(ops):
                        return [t[-1] for t in tails]
                    continue
                end = consumer_end(ops, i)
                last_main = self._consumers(ops[i + 1 : end + 1], tails, gpus, last_main, first, chunks, meta,
                                            (key, i + 1))
                first = [False] * self.lanes
                i = end + 1
                continue
            cost = self.pricer.cost(op)
            for t in lanes:
                if stream == COPY:
                    # layer l's fetch may start once the main stream reached layer l-1's fetch point
                    after = anchor[t] if anchor[t] is not None else last_main[t]
                    anchor[t] = last_main[t]
                    deps = [after] if after is not None else []
                    # in pieces, so the fetch can slip into every gap the main stream leaves in HBM
                    pieces = self.policy.fetch_chunks
                    for _ in range(pieces):
                        ev = self.plan.add(["ops", key, [i], pieces, False], rank=gpus[t], stream=COPY, name=op.name,
                                           kind=op.kind,
                                           duration=cost.total / pieces, memory_s=cost.memory_s / pieces,
                                           gpu=gpus[t], deps=deps, layer=op.layer, **meta)
                        deps = []
                    pending[t].append(ev.id)
                    self.plan.hbm_gpus.add(gpus[t])
                    continue
                seg = segment[t]
                merge = hybrid and seg is not None and not pending[t] and seg.layer == op.layer
                if merge:
                    self.plan.recipes[seg.id][2].append(i)
                    seg.duration += cost.total
                    seg.memory_s += cost.memory_s
                    seg.kinds[op.kind] = seg.kinds.get(op.kind, 0.0) + cost.total
                    continue
                deps = pending[t] + ([last_main[t]] if first[t] and last_main[t] is not None else [])
                ev = self.plan.add(["ops", key, [i], 1, hybrid], rank=gpus[t], stream=MAIN,
                                   name=op.name if not hybrid else f"layer {op.layer}",
                                   kind=op.kind, duration=cost.total, memory_s=cost.memory_s, gpu=gpus[t], deps=deps,
                                   layer=op.layer, kinds={op.kind: cost.total} if self.mode == "hybrid" else None, **meta)
                pending[t] = []
                segment[t] = ev
                last_main[t] = ev.id
                first[t] = False
            i += 1
        return [x for x in last_main]

    def _collective(self, op: Op, stream: str, gpus: list[int], after: list, first: list, chunks: int, meta: dict,
                    where: tuple):
        """Events of one collective (in `chunks` pieces); returns per lane the ids of each piece's last event."""
        floor = self.pricer.cost(op).floor_s
        tails: list[list[int]] = [[] for _ in gpus]
        lanes = len(gpus)
        if self.mode == "hybrid" or self.tp == 1:
            dur = (self.pricer.time(op) - floor) / chunks
            for c in range(chunks):
                for t, gpu in enumerate(gpus):
                    deps = [after[t]] if (c == 0 and after[t] is not None and (first[t] or stream != MAIN)) else []
                    ev = self.plan.add(["closed", *where, chunks, c == 0], rank=gpu, stream=stream, name=op.name, kind=COMM,
                                       duration=dur + (floor if c == 0 else 0),
                                       gpu=gpu, link=link_of(op, gpu), deps=deps, layer=op.layer, **meta)
                    tails[t].append(ev.id)
            return tails
        sched = self._schedule(op, chunks)
        for c in range(chunks):
            prev_round: list[int] = []
            for r in range(sched.steps):
                now: list[int] = []
                for t, gpu in enumerate(gpus):
                    if r == 0:
                        deps = [after[t]] if (c == 0 and after[t] is not None and (first[t] or stream != MAIN)) else []
                    elif sched.peers == "next":
                        deps = [prev_round[(t - 1) % lanes]]
                    else:
                        deps = list(prev_round)
                    ev = self.plan.add(["round", *where, chunks, c == 0 and r == 0, sched.steps, sched.peers],
                                       rank=gpu, stream=stream, name=op.name, kind=COMM, duration=sched.step_time + (floor if c == 0 and r == 0 else 0.0),
                                       gpu=gpu, link=link_of(op, gpu), deps=deps, layer=op.layer, **meta)
                    now.append(ev.id)
                prev_round = now
            for t in range(lanes):
                tails[t].append(prev_round[t])
        return tails

    def _consumers(self, ops: list[Op], tails, gpus, after, first, chunks: int, meta: dict, where: tuple) -> list[int]:
        """The ops fed by a chunked collective, chunk-major: piece c of each waits for the collective's piece c."""
        last = list(after)
        for c in range(chunks):
            for k, op in enumerate(ops):
                cost = self.pricer.cost(op)
                for t, gpu in enumerate(gpus):
                    deps = [tails[t][c]] if k == 0 else []
                    if first[t] and last[t] is not None and c == 0 and k == 0:
                        deps.append(last[t])
                    ev = self.plan.add(["ops", where[0], [where[1] + k], chunks, False], rank=gpu, stream=MAIN,
                                       name=op.name, kind=op.kind, duration=cost.total / chunks,
                                       memory_s=cost.memory_s / chunks, gpu=gpu, deps=deps, layer=op.layer, **meta)
                    last[t] = ev.id
        return last

    def _schedule(self, op: Op, chunks: int):
        """A collective piece's rounds (memoized: they recur every layer)."""
        key = (op.collective, op.bytes / chunks, op.group, op.inter_node, op.per_node)
        sched = self._schedules.get(key)
        if sched is None:
            sched = self._schedules[key] = schedule(*key[:3], self.run.system, op.inter_node,
                                                    self.pricer.custom_all_reduce, op.per_node)
        return sched

    def retime(self, streams: Streams) -> bool:
        """Give this plan's events the durations of `streams`, a pass of the same shape (see `shape`), as
        flattening it would (same formulas, same order of sums). False, leaving the plan unusable, where
        the shape differs after all (a collective's algorithm changed with its size): flatten anew."""
        cost = self.pricer.cost
        for ev, (how, key, at, pieces, *rest) in zip(self.plan.events, self.plan.recipes):
            ops = streams[key][1]
            if how == "ops":
                c = cost(ops[at[0]])
                duration, memory = c.total / pieces, c.memory_s / pieces
                kinds = {ops[at[0]].kind: c.total} if rest[0] else None
                for i in at[1:]:  # a hybrid layer-level event: its ops summed in order
                    c = cost(ops[i])
                    duration += c.total
                    memory += c.memory_s
                    kinds[ops[i].kind] = kinds.get(ops[i].kind, 0.0) + c.total
                ev.duration, ev.memory_s, ev.kinds = duration, memory, kinds
                continue
            op = ops[at]
            floor = cost(op).floor_s
            if how == "closed":
                ev.duration = (cost(op).total - floor) / pieces + (floor if rest[0] else 0)
                continue
            sched = self._schedule(op, pieces)
            if (sched.steps, sched.peers) != tuple(rest[1:]):
                return False
            ev.duration = sched.step_time + (floor if rest[0] else 0.0)
        return True


def flatten(g, run: Run, mode: str, pricer: Pricer, policy: OverlapPolicy, launch_s: float = 0.0,
            all_ranks: bool | None = None, builders: list | None = None) -> Plan:
    """From the pipeline graph (a networkx DiGraph) or its streams (what the static driver passes: the
    graph would only be read back into streams). all_ranks: default engine.all_ranks."""
    streams = g if isinstance(g, dict) else stage_streams(g)
    if all_ranks is None:
        all_ranks = run.experiment.engine.all_ranks
    return Flattener(run, mode, pricer, policy, launch_s, all_ranks, builders).flatten(streams)
