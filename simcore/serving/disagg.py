"""Disaggregated prefill / decode pools (DistServe, Splitwise, vLLM's disaggregated prefill, Dynamo).

Requests are routed to a prefill replica (serving.router). When a request's prefill completes
there, its first token is emitted on the prefill replica, its blocks are freed (published to the
prefix cache as usual) and its prompt KV goes over the link to a decode replica picked by
`disaggregation.decode_router`. Each prefill replica sends one transfer at a time (a FIFO). At
the transfer's end the request joins the decode replica's queue with its prompt cached; when
slots and blocks allow it takes a slot and decodes from the next step on (no recompute). Decode
replicas run prefill chunks only to recompute a request they preempted. docs/serving.md.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from simcore.config.experiment import _check_parallelism
from simcore.cost.collectives import schedule
from simcore.errors import SimcoreError
from simcore.memory import replica_kv
from simcore.serving.replica import Replica


def pool_run(run, which: str, replicas: int):
    """The Run of one pool: the experiment with the pool's tp / pp and `replicas` as dp."""
    e = run.experiment
    d = e.serving.disaggregation
    own = getattr(d, f"{which}_parallelism")
    par = e.parallelism.model_copy(update={k: getattr(own, k) or getattr(e.parallelism, k)
                                           for k in ("tp", "pp", "attention_dp", "ep")} | {"dp": replicas})
    try:
        _check_parallelism(run.model, par)
        check_replica_experts(par, "parallelism")
    except SimcoreError as exc:
        raise SimcoreError(str(exc).replace("field 'parallelism.",
                                            f"field 'serving.disaggregation.{which}_parallelism.")) from None
    hw = getattr(d, f"{which}_hardware")
    if hw is not None and hw != e.hardware:  # a pool on another GPU kind: resolved as its own experiment
        from simcore.config.experiment import resolve
        try:
            return resolve(e.model_copy(update={"parallelism": par, "hardware": hw, "cluster": None}))
        except SimcoreError as exc:
            raise SimcoreError(str(exc).replace("field 'hardware'", f"field 'serving.disaggregation.{which}_hardware'")
                               .replace("field 'precision.", f"field 'serving.disaggregation.{which}_hardware' "
                                        "with 'precision.")) from None
    return dataclasses.replace(run, experiment=e.model_copy(update={"parallelism": par}))


def pool_cfg(cfg, which: str):
    """The serving settings of one pool's replicas: the pool's limits (disaggregation.<which>_limits) over the
    experiment's."""
    own = getattr(cfg.disaggregation, f"{which}_limits")
    update = {k: v for k, v in own.model_dump().items() if v is not None}
    return cfg.model_copy(update=update) if update else cfg


def check_replica_experts(par, field: str) -> None:
    """Serving replicas (parallelism.dp, or a pool's replicas) are independent servers: each holds all the
    experts on its own tp x attention_dp GPUs per stage, so ep must divide that (not tp x dp)."""
    group = par.tp * par.attention_dp
    if par.ep > 1 and group % par.ep:
        eps = ", ".join(str(d) for d in range(1, group + 1) if group % d == 0)
        raise SimcoreError(
            f"field '{field}.ep' = {par.ep}: a serving replica holds every expert on its own tp x attention_dp = "
            f"{group} GPUs per stage (dp replicas are independent servers); allowed ep: {eps}; to share experts "
            f"across data-parallel attention ranks set {field}.attention_dp")


def worker_run(run):
    """The Run one replica is priced and budgeted with: dp 1, since each replica (an aggregated run's dp, a
    pool's workers) holds its own copy of the experts (a dp > 1 Run spreads them over dp: Sharding.moe_tp)."""
    if run.par.dp == 1:
        return run
    return dataclasses.replace(run, experiment=run.experiment.model_copy(
        update={"parallelism": run.experiment.parallelism.model_copy(update={"dp": 1})}))


def pool_blocks(run, cfg, which: str) -> tuple:
    """(KV blocks per replica from the planner's kv_budget for the pool's parallelism, the budget)."""
    blocks, budget = replica_kv(run, cfg.max_num_batched_tokens, cfg.max_num_seqs, cfg.block_size, cfg.engine or "vllm")
    if blocks <= 0:
        raise SimcoreError(f"serving.disaggregation: {run.model.name} leaves no room for a KV block on "
                           f"{run.system.gpu.name} at the {which} pool's tp {run.par.tp} pp {run.par.pp}; "
                           f"raise its tp or pp, or quantize")
    return blocks, budget


def check_replicas(run, prun, drun) -> bool:
    """Validate the pool sizes; True when the transfer goes over the network (inter-node)."""
    e = run.experiment
    d = e.serving.disaggregation
    n = d.prefill_replicas + d.decode_replicas
    if e.parallelism.dp not in (1, n):
        raise SimcoreError(f"field 'parallelism.dp' = {e.parallelism.dp}: with serving.disaggregation the replicas "
                           f"are prefill_replicas + decode_replicas = {n}; leave dp at 1 or set it to {n}")
    gpus = prun.gpus + drun.gpus
    node = run.system.cluster.gpus_per_node
    link = d.transfer.link
    mixed = prun.system.gpu.name != drun.system.gpu.name
    if link == "intra_node" and mixed:
        raise SimcoreError(f"field 'serving.disaggregation.transfer.link' = intra_node: the prefill pool's "
                           f"{prun.system.gpu.name} and the decode pool's {drun.system.gpu.name} are not in one "
                           "NVLink node; use link: inter_node, custom or auto")
    if link == "intra_node" and gpus > node:
        raise SimcoreError(f"field 'serving.disaggregation.transfer.link' = intra_node: the pools need {gpus} GPUs "
                           f"({prun.gpus} prefill + {drun.gpus} decode), more than the {node} of one "
                           f"{run.system.cluster.name} node; use fewer replicas or link: inter_node")
    return link == "inter_node" or (link == "auto" and (gpus > node or mixed))


class KVLink:
    """Prefill -> decode KV transfers: a point-to-point send per GPU shard, one FIFO per sender.

    Each GPU of the decode replica receives its own shard (the decode layout's per-GPU KV, from
    ops/kv.py kv_bytes) in parallel, and the prefill GPUs that hold the request (its tp x pp: with
    attention DP one rank's group holds it) send the whole replica's bytes between them, so a transfer
    takes the send_recv time of the larger of the largest shard and a sender's share. They are equal
    when the pools' tp x pp match; a sender's share binds when fewer GPUs send than receive, e.g. an
    attention-DP prefill rank feeding a TP16 decode worker an MLA latent that all 16 GPUs keep whole.
    `bytes` counts the whole replica's."""

    def __init__(self, drun, budget, inter_node: bool, senders: int, prun=None):
        self.budget, self.tp = budget, drun.par.tp  # the decode pool's KV budget sizes what it receives
        self.holders = prun.par.tp * prun.par.pp if prun is not None else drun.par.tp * drun.par.pp
        self.system, self.inter_node = drun.system, inter_node
        if prun is not None and inter_node:  # pools on different nodes: the slower per-GPU network share binds
            self.system = min((drun.system, prun.system), key=lambda s: s.inter_link.bandwidth)
        t = drun.experiment.serving.disaggregation.transfer
        self.custom = (t.bandwidth_gbps * 1e9, t.latency_us * 1e-6) if t.link == "custom" else None
        self.busy = [0.0] * senders
        self.sizes: dict[int, tuple[float, float]] = {}
        self.bytes = 0.0
        self.seconds = 0.0
        self.count = 0

    def size(self, tokens: int) -> tuple[float, float]:
        """(bytes over the whole decode replica, bytes through the busiest GPU: the largest per-GPU shard
        received, or a sender's share of the whole) of `tokens` tokens' KV."""
        got = self.sizes.get(tokens)
        if got is None:
            per = [self.budget.request_bytes(tokens, stage=st) for st in self.budget.stages]
            total = sum(per) * self.tp
            got = self.sizes[tokens] = (total, max(max(per), total / self.holders))
        return got

    def send(self, sender: int, tokens: int, now: float) -> float:
        """Queue one request's prompt KV on the sender's FIFO at `now`; returns when it has arrived."""
        total, shard = self.size(tokens)
        if self.custom:
            t = self.custom[1] + shard / self.custom[0]
        else:
            t = schedule("send_recv", shard, 2, self.system, self.inter_node).time
        start = self.busy[sender] if self.busy[sender] > now else now
        end = self.busy[sender] = start + t
        self.bytes += total
        self.seconds += float(end - now)  # queueing included: the request's wait for its KV
        self.count += 1
        return end


class PrefillReplica(Replica):
    """Runs prefills only: a request whose first token is out (and has more to produce) leaves."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.prefill_only = True
        self.sent: list[int] = []  # requests handed off in the last step, for the loop to transfer

    def step(self):
        finished = Replica.step(self)
        if self.handed:
            out = self.reqs.output
            sent = self.sent = []
            for s in self.handed:
                r = self.slots.request[s]
                self._release(s)
                self.outstanding -= int(out[r]) - 1
                sent.append(r)
            self.handed = []
        return finished


class DecodeReplica(Replica):
    """Admits transferred requests with their prompt KV in place; its `waiting` queue holds only
    requests it preempted (re-prefilled by recompute, ahead of new transfers, as vLLM requeues them)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.arrived: deque[int] = deque()  # transferred requests waiting for a slot and blocks
        self.first: dict[int, float] = {}  # transferred request -> its first token's time

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or bool(self.running_order) or bool(self.arrived)

    def queued(self) -> bool:
        return bool(self.waiting) or bool(self.arrived)

    def receive(self, r: int, first: float) -> None:
        self.arrived.append(r)
        self.first[r] = first

    def admit(self, budget: int, chunks: list, whole: bool = False, reserve: float | None = None,
              whole_output: bool = False) -> int:
        """Preempted requests first (Replica.admit), then transferred ones under the same admission rule:
        blocks above `reserve` (default: the watermark), with whole_output those of the whole prompt +
        output (TensorRT-LLM's no-evict policy, as Replica.admit)."""
        if self.waiting:
            budget = Replica.admit(self, budget, chunks, whole, reserve, whole_output)
            if self.waiting:
                return budget
        arrived = self.arrived
        if not arrived or not self.free_slots:
            return budget
        pool, bs, reqs = self.pool, self.bs, self.reqs
        if reserve is None:
            reserve = self.cfg.watermark * pool.capacity
        while arrived and self.free_slots:
            r = arrived[0]
            p = int(reqs.prompt[r])
            need = -(-p // bs)
            later = self.output_blocks(r, need) if whole_output else 0
            if pool.free - need - later < reserve:
                break
            reserve += later
            arrived.popleft()
            first = self.first.pop(r)
            if self.cfg.disaggregation.first_token == "decode":  # the client's first token comes from here
                first = self.metrics.first_token[r] = self.clock
            s = self._seat(r, p, p, 1, need, first)
            pool.allocate(r, need)
            self.resume_dec.append((s, first))  # decodes from the next step: its gap counts from the first token
        return budget


def build(run, cfg, cost_cls, make_scheduler, reqs, metrics, policy, ctx):
    """(replicas: prefill pool then decode pool, the KVLink (with .gpus: GPUs of each pool), prefill blocks,
    decode blocks, the decode router, the two pools' IterationCosts)."""
    from simcore.serving.routers import get_router

    d = cfg.disaggregation
    prun, drun = pool_run(run, "prefill", d.prefill_replicas), pool_run(run, "decode", d.decode_replicas)
    inter = check_replicas(run, prun, drun)
    droute = get_router(d.decode_router, "serving.disaggregation.decode_router")
    pcfg, dcfg = pool_cfg(cfg, "prefill"), pool_cfg(cfg, "decode")
    pworker, dworker = worker_run(prun), worker_run(drun)
    pblocks, _ = pool_blocks(pworker, pcfg, "prefill")
    dblocks, dbudget = pool_blocks(dworker, dcfg, "decode")
    pcost, dcost = cost_cls(pworker), cost_cls(dworker)
    mk = lambda: policy(ctx) if cfg.prefix_caching else None  # noqa: E731
    reps = [PrefillReplica(i, pcfg, pblocks, pcost, make_scheduler(), reqs, metrics, mk())
            for i in range(d.prefill_replicas)]
    reps += [DecodeReplica(d.prefill_replicas + i, dcfg, dblocks, dcost, make_scheduler(), reqs, metrics, mk())
             for i in range(d.decode_replicas)]
    link = KVLink(drun, dbudget, inter, d.prefill_replicas, prun)
    link.gpus = (prun.gpus, drun.gpus)
    link.hardware = (prun.system.gpu.name, drun.system.gpu.name)
    link.kind = "custom" if link.custom else "inter_node" if inter else "intra_node"
    return reps, link, pblocks, dblocks, droute, (pcost, dcost)
