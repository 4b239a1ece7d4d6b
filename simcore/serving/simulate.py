"""A serving run: requests -> router -> replicas, advanced in time order by one event loop.

The loop always does the earliest thing next: deliver the next arrival (a fixed arrival time,
or a closed-loop / next-turn request released when its parent finishes) or run one iteration
of the replica whose clock is earliest. Clocks only move forward.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass

import numpy as np

from simcore.config.experiment import Run
from simcore.errors import SimcoreError
from simcore.memory import replica_kv
from simcore.serving.cache_policies import CacheContext, get_cache_policy
from simcore.serving.disagg import check_replica_experts, worker_run
from simcore.serving.engines import resolve as resolve_engine
from simcore.serving.frontend import FrontendLoop
from simcore.serving.speculative import make_cost
from simcore.serving.host_tier import block_flops, make_tier, tier_geometry
from simcore.serving.prefetch import get_prefetch_policy
from simcore.serving.metrics import Metrics
from simcore.serving.pipeline import pipeline_batches, pipeline_summary, virtual_engines
from simcore.serving.replica import Replica
from simcore.serving.routers import get_router
from simcore.serving.schedulers import get_scheduler
from simcore.serving.requests import Requests
from simcore.serving.workload import generate


PROGRESS_EVERY = 2000  # finished requests between progress callbacks


@dataclass
class ServingResult:
    run: Run
    summary: dict
    metrics: Metrics
    replicas: list


def _children(reqs: Requests) -> np.ndarray:
    child = np.full(len(reqs), -1, dtype=np.int64)
    has = np.flatnonzero(reqs.parent >= 0)
    child[reqs.parent[has]] = has
    return child


def simulate(run: Run, csv_path=None, keep_series: bool = False, reqs: Requests | None = None,
             spans=None, progress=None) -> ServingResult:
    """spans: a simcore.report.serving_trace.SpanLog that records iterations and tier transfers (short runs).
    progress(done, total): called every PROGRESS_EVERY finished requests."""
    wall = time.perf_counter()
    e = run.experiment
    cfg, w = e.serving, e.workload
    run, cfg, profile = resolve_engine(run, cfg)  # serving.engine: the engine's defaults fill unset fields
    make_scheduler = lambda: get_scheduler(cfg.scheduler)  # noqa: E731
    make_scheduler()  # an unknown scheduler is reported before any request is generated
    route = get_router(cfg.router)
    policy = get_cache_policy(cfg.cache_policy)
    host_policy = get_cache_policy(cfg.host_tier.policy, "serving.host_tier.policy")
    prefetch = get_prefetch_policy(cfg.host_tier.prefetch)
    dis = cfg.disaggregation.enabled
    if not dis:
        check_replica_experts(run.experiment.parallelism, "parallelism")
    one = run if dis else worker_run(run)  # a replica is priced and budgeted on its own GPUs (dp replicas are independent)
    blocks, budget = replica_kv(one, cfg.max_num_batched_tokens, cfg.max_num_seqs, cfg.block_size, cfg.engine or "vllm")
    if blocks <= 0 and not dis:
        raise SimcoreError(f"{run.model.name} leaves no room for a KV block on {run.system.gpu.name} at tp "
                           f"{run.par.tp} pp {run.par.pp}; raise tp or pp, or quantize")
    reqs = reqs if reqs is not None else generate(w)
    metrics = Metrics(reqs, cfg.slo, csv_path)
    if w.arrival.process == "closed":
        metrics.warmup = w.arrival.warmup
    if keep_series:
        metrics.series = []
    ctx = CacheContext(block_flops(run, cfg.block_size), tier_geometry(run, budget, cfg.block_size)[0])
    if dis:  # prefill pool, then decode pool (simcore/serving/disagg.py)
        from simcore.serving.disagg import build
        pool_cost = lambda r: make_cost(r, profile)  # noqa: E731  (the engine's host model prices both pools)
        reps, link, blocks, dblocks, droute, costs = build(run, cfg, pool_cost, make_scheduler, reqs, metrics,
                                                           policy, ctx)
        front = reps[:cfg.disaggregation.prefill_replicas]
        back = reps[len(front):]
        dreserve = cfg.watermark * dblocks
        admit = front[0].cfg  # a prompt goes to the prefill pool: its limits (disaggregation.prefill_limits) decide
    else:
        cost = make_cost(one, profile)  # the pools of a disaggregated run price with their own layouts
        admit = cfg
        costs = [cost]
        reps = [Replica(i, cfg, blocks, cost, make_scheduler(), reqs, metrics,
                        policy(ctx) if cfg.prefix_caching else None,
                        make_tier(run, cfg, budget, host_policy, ctx), prefetch()) for i in range(run.par.dp)]
        if pipeline_batches(run) > 1:  # several batches in flight per replica (simcore/serving/pipeline.py)
            reps, pipes, blocks = virtual_engines(run, cfg, cost, blocks, lambda i, b, c: Replica(
                i, cfg, b, c, make_scheduler(), reqs, metrics, policy(ctx) if cfg.prefix_caching else None,
                None, prefetch()))
        for rep in reps:
            rep.admit_lag = bool(profile is not None and profile.admit_lag)
            rep.first_token_waits = bool(profile is not None and profile.first_token_waits_launch)
        front = reps
    xfer: list = []  # KV transfers in flight: (end, request, decode replica)
    nsent = 0
    if spans is not None:
        for rep in reps:
            rep.spans = spans
            if rep.tier is not None:
                rep.tier.trace_into(spans, f"replica {rep.idx}")
    # replicas whose plain decode steps run back to back in Replica.coast: not traced, no host tier, a pricer
    # with decode_time (a pipelined virtual engine's step waits for the shared stages), and decoding at all
    coasts = [rep.spans is None and rep.tier is None and hasattr(rep.cost, "decode_time") and not rep.prefill_only
              for rep in reps]
    prompt, output = reqs.prompt, reqs.output
    child = _children(reqs)
    delay = reqs.delay
    fixed = np.flatnonzero(~np.isnan(reqs.arrival))
    fixed = fixed[np.argsort(reqs.arrival[fixed], kind="stable")]
    fixed_t = reqs.arrival[fixed]
    nfixed = len(fixed)
    inf = math.inf
    pos, heap, seen = 0, [], 0
    # requests waiting for the frontend loop (serving.frontend_token_us): (reaches the engine, request, replica)
    intake: list = []
    loops = [FrontendLoop(cfg.frontend_token_us * 1e-6) for _ in reps] if cfg.frontend_token_us else None  # agg only
    reserve = cfg.watermark * blocks
    limit = cfg.max_time_s if cfg.max_time_s is not None else math.inf
    max_len = run.model.max_position or 0
    bsz = cfg.block_size
    tick = PROGRESS_EVERY
    while True:
        ta = fixed_t[pos] if pos < nfixed else inf
        if heap and heap[0][0] < ta:
            ta = heap[0][0]
        if xfer and xfer[0][0] < ta:
            ta = xfer[0][0]
        if intake and intake[0][0] < ta:
            ta = intake[0][0]
        rep = None
        for r in reps:
            if r.busy and (rep is None or r.clock < rep.clock):  # the earliest clock, the lowest index on ties
                rep = r
        tr = rep.clock if rep else inf
        if min(ta, tr) >= limit or (ta == inf and rep is None):
            break
        if ta <= tr:
            if xfer and xfer[0][0] == ta:  # a KV transfer arrived at its decode replica
                _, r, k = heapq.heappop(xfer)
                _wake(reps[k], ta).receive(r, float(metrics.first_token[r]))
                continue
            if intake and intake[0][0] == ta:  # through the frontend loop: the engine sees it now
                _, r, k = heapq.heappop(intake)
                _wake(reps[k], ta).enqueue(r, float(ta))
                continue
            if pos < nfixed and fixed_t[pos] == ta:
                r = int(fixed[pos])
                pos += 1
            else:
                r = heapq.heappop(heap)[1]
            k = route(front, reqs, r, seen)
            seen += 1
            metrics.arrived(r, ta, k)
            p, o = int(prompt[r]), int(output[r])
            why = None
            if -(-(p + o) // bsz) > blocks - reserve and not dis:
                why = f"needs {-(-(p + o) // bsz)} KV blocks (prompt + output), the replica has {blocks}"
            elif dis and -(-p // bsz) > blocks - reserve:
                why = f"needs {-(-p // bsz)} KV blocks (prompt), a prefill replica has {blocks}"
            elif max_len and p + o > max_len:
                why = f"prompt + output exceeds max_position_embeddings = {max_len}"
            elif not admit.chunked_prefill and p > admit.max_num_batched_tokens:
                why = "prompt exceeds max_num_batched_tokens with chunked_prefill off"
            elif dis and -(-(p + o) // bsz) > dblocks - dreserve:
                why = f"needs {-(-(p + o) // bsz)} KV blocks (prompt + output), a decode replica has {dblocks}"
            if why:
                metrics.drop(r, why)
                _release_child(child, delay, r, ta, heap)
                continue
            if loops is not None:
                wait = loops[k].wait(ta, reps[k].tokens_out)
                if wait > 0:
                    heapq.heappush(intake, (ta + wait, r, k))
                    continue
            _wake(reps[k], ta).enqueue(r, float(ta))
            continue
        # `rep` runs iterations while it stays the earliest thing to do: its clock before the next
        # arrival (ties go to arrivals), before max_time_s, and before every other busy replica's
        other = min(((q.clock, q.idx) for q in reps if q is not rep and q.busy), default=(inf, 0))
        idx = rep.idx
        coast = rep.coast if coasts[idx] else None
        step = rep.step
        while True:
            finished = coast(ta, limit, other) if coast is not None else step()  # coast: plain decode steps in a row
            if finished is None:
                if (rep.loading or rep.prefetching) and rep.next_ready() > rep.clock:  # only host transfers: wait
                    rep.clock = min(rep.next_ready(), ta, limit)
                    break
                _unstick(rep, metrics, child, delay, heap, dis)
                break
            if finished:
                t = rep.clock
                for r in finished:
                    metrics.finished(r, t)
                    _release_child(child, delay, r, t, heap)
                if progress is not None and metrics.finishes >= tick:
                    tick += PROGRESS_EVERY
                    progress(metrics.finishes, len(reqs.prompt))
                if heap and heap[0][0] < ta:
                    ta = heap[0][0]
            if dis and rep.prefill_only and rep.sent:  # prefills done: their KV goes to a decode replica
                t = rep.clock
                for r in rep.sent:
                    k = droute(back, reqs, r, nsent)
                    nsent += 1
                    dest = back[k]
                    dest.outstanding += int(output[r]) - 1
                    heapq.heappush(xfer, (link.send(idx, int(prompt[r]), t), r, dest.idx))
                rep.sent = []
                if xfer[0][0] < ta:
                    ta = xfer[0][0]
            if not rep.busy:
                break
            t = rep.clock
            if t >= ta or t >= limit or (t, idx) > other:
                break
    for rep in reps:  # stopped at max_time_s: what is still in the system is dropped
        for r in list(rep.waiting) + rep.running_requests() + list(rep.loading) + list(getattr(rep, "arrived", ())):
            metrics.drop(r, "unfinished at serving.max_time_s")
    for _, r, _ in sorted(xfer) + sorted(intake):
        metrics.drop(r, "unfinished at serving.max_time_s")
    unreleased = len(fixed) - pos + len(heap)
    metrics.close()
    s = metrics.summary()
    s["requests_not_arrived"] = int(unreleased)
    hit = [r.pool for r in reps if r.pool.caching]
    queried = sum(p.queried_tokens for p in hit)
    s["prefix_cache_hit_rate"] = (sum(p.hit_tokens for p in hit) / queried) if queried else 0.0
    tiers = [r.tier for r in reps if r.tier is not None]
    s["kv_tier_bytes"] = {"hbm_to_host": float(sum(t.blocks_out * t.block_bytes for t in tiers)),
                          "host_to_hbm": float(sum(t.blocks_in * t.block_bytes for t in tiers))}
    if cfg.host_tier.enabled:
        s["host_cache_hit_rate"] = (sum(t.hit_tokens for t in tiers) / queried) if queried else 0.0
        s["host_cache_blocks"] = tiers[0].capacity
    if cfg.preemption == "swap":
        s["swaps"] = sum(r.swaps for r in reps)
    s["kv_blocks"] = blocks
    s["block_size"] = cfg.block_size
    s["iterations"] = sum(r.iterations for r in reps)
    s["shapes_priced"] = sum(len(c.priced) for c in costs)
    if not dis and pipeline_batches(run) > 1:
        s["pipeline"] = pipeline_summary(pipes, s["duration_s"], pipeline_batches(run))
    if e.speculative.enabled:  # the decode pool's pricer when disaggregated
        s["speculative"] = costs[-1].summary(budget.blocks() * run.par.attention_dp)
    if dis:
        s["kv_blocks"] = dblocks
        s["disaggregation"] = {"kv_transfer_bytes": link.bytes,
                               "kv_transfer_s_mean": link.seconds / link.count if link.count else 0.0,
                               "prefill_replicas": len(front), "decode_replicas": len(back),
                               "kv_transfers": link.count, "inter_node": link.inter_node,
                               "prefill_kv_blocks": blocks, "decode_kv_blocks": dblocks,
                               "prefill_gpus": link.gpus[0], "decode_gpus": link.gpus[1],
                               "prefill_hardware": link.hardware[0], "decode_hardware": link.hardware[1],
                               "link": link.kind}
    if dis:  # the output's parallelism: the experiment's tp / pp, dp = all replicas of both pools
        import dataclasses
        par = run.par.model_copy(update={"dp": len(reps)})
        run = dataclasses.replace(run, experiment=e.model_copy(update={"parallelism": par}))
    s["wall_s"] = time.perf_counter() - wall
    return ServingResult(run, s, metrics, reps)


def _wake(rep, t: float):
    """`rep`, about to be handed a request at t: an idle replica's clock jumps to t (a busy one's runs on)."""
    if not rep.busy:
        rep.clock = max(rep.clock, t)
    return rep


def _release_child(child, delay, r: int, t: float, heap) -> None:
    c = int(child[r])
    if c >= 0:
        heapq.heappush(heap, (t + float(delay[c]), c))


def _unstick(rep, metrics, child, delay, heap, dis=False) -> None:
    """Nothing could be scheduled: free blocks by preempting the newest, or drop a request that can never fit."""
    if rep.running:
        rep.preempt(rep.newest())
        return
    if dis and not rep.waiting:  # a decode replica's transferred request that cannot fit
        r = rep.arrived.popleft()
        rep.first.pop(r, None)
        metrics.drop(r, "cannot be scheduled: not enough free KV blocks")
        _release_child(child, delay, r, rep.clock, heap)
        return
    r = rep.waiting.popleft()
    rep.drop_prefetch(r)
    metrics.drop(r, "cannot be scheduled: not enough free KV blocks")
    _release_child(child, delay, r, rep.clock, heap)
