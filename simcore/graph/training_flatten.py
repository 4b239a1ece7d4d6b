"""Flatten a training graph (simcore.graph.schedules) into per-rank event streams.

Units are expanded in the graph's order with the inference flattener's machinery, so each mode
means what it means for inference: analytical = one closed-form event per unit; hybrid =
layer-level compute and every collective on a link; flattened = every op on every TP rank.
Each unit's first event waits on the exits of the units it depends on; a rank's events run in
its schedule's order. Data-parallel gradient buckets under `dp_grad` run on the rank's dp
stream; the optimizer waits for the last of them. In analytical mode the buckets' exposed
tail is closed form: buckets issue when the backward reaches them and queue on the link.
"""

from __future__ import annotations

import networkx as nx

from simcore.engine.policies import DP_STREAM
from simcore.engine.walk import walk
from simcore.graph.flatten import Flattener, Plan
from simcore.graph.schedules import B, OPT


class TrainingFlattener(Flattener):
    def flatten_training(self, g: nx.DiGraph) -> Plan:
        exits: dict[tuple, list] = {}
        self._split: dict[int, tuple] = {}  # id(ops) -> (ops, on dp stream?, the rest): units share op lists
        dp_tail: dict[int, list] = {}  # rank -> per lane, the last dp-stream event so far
        for u in g.graph["order"]:
            phase, mb, vs = u
            rank = g.nodes[u]["rank"]
            ops = g.nodes[u]["ops"]
            preds = list(g.predecessors(u))
            if phase == OPT:
                entry = dp_tail.get(rank) or [None] * self.lanes
            elif preds:
                entry = exits[preds[0]]
            else:
                entry = [None] * self.lanes
            meta = dict(step=0, mb=max(mb, 0), stage=rank)
            first = len(self.plan.events)
            if not ops:
                exits[u] = entry
                continue
            if self.mode == "analytical":
                exits[u] = self._unit_event(ops, entry, meta, (phase, vs), u)
            else:
                exits[u] = self._op_events(ops, entry, meta)
            new = self.plan.events[first:]
            label = "optimizer" if phase == OPT else f"{phase}{mb} v{vs}"
            for ev in new:
                if self.mode == "analytical" and ev.stream == "main":
                    ev.name = label
                elif ev.kinds:  # a hybrid layer segment: coloured by the kind it spends most time in
                    ev.kind = max(ev.kinds, key=ev.kinds.get)
            tails = {}
            for ev in new:
                if ev.stream == DP_STREAM:
                    tails[ev.gpu] = ev.id
            if tails:
                lanes = [self._rank(rank, t) for t in range(self.lanes)]
                dp_tail[rank] = [tails.get(gpu, (dp_tail.get(rank) or [None] * self.lanes)[i])
                                 for i, gpu in enumerate(lanes)]
        self.plan.ranks = g.graph["pp"] * self.lanes
        return self.plan

    def _unit_event(self, ops: list, entry: list, meta: dict, key: tuple, u: tuple) -> list[int]:
        """One closed-form event for the unit (kind backward or optimizer where it is one), then the exposed tail
        of its dp buckets on the dp stream."""
        split = self._split.get(id(ops))
        if split is None or split[0] is not ops:
            on_dp = [self.policy.stream_for(op) == DP_STREAM for op in ops]
            split = self._split[id(ops)] = (ops, on_dp, [op for op, dp in zip(ops, on_dp) if not dp])
        _, on_dp, body = split
        exits = self._stage_event(body, entry, meta, key) if body else list(entry)
        main = self.plan.events[exits[0]] if body else None
        if main is not None and main.stream != "main":  # the send: the stage event is its dependency
            main = self.plan.events[main.deps[0]]
        if main is not None and u[0] in (B, OPT):
            main.kind = "backward" if u[0] == B else "optimizer"
        if not any(on_dp):
            return exits
        # bucket k is issued when the walk reaches it; buckets queue on the dp stream
        send = body[-1] if body and body[-1].collective == "send_recv" else None
        timed = walk(body[:-1] if send else body, self.pricer, self.policy, self.launch_s).ops
        t = comm_end = 0.0
        j = 0
        for op, dp in zip(ops, on_dp):
            if dp:
                comm_end = max(comm_end, t) + self.pricer.time(op)
            elif op is not send:
                t += timed[j].exposed
                j += 1
        tail = max(0.0, comm_end - t)
        rank = meta["stage"]
        self.plan.add(None, rank=rank, stream=DP_STREAM, name="dp_grad (exposed tail)", kind="comm", duration=tail,
                      gpu=rank, deps=[main.id] if main is not None else [], **meta)
        return exits

