"""Pipeline schedules of a training step: the per-rank order of forward and backward work.

A unit is (phase, micro-batch, virtual stage) with phase F or B. Virtual stage vs runs on
pipeline rank vs % pp (Megatron-LM's interleaved placement: rank r holds chunks r, r + pp, ...).
- gpipe: every forward, then every backward (Huang et al. 2019);
- 1f1b: pp - rank - 1 warm-up forwards, then one forward / one backward, then the remaining
  backwards (PipeDream-Flush; Narayanan et al. 2021);
- interleaved: Megatron-LM's interleaved 1F1B over virtual_stages chunks per rank
  (megatron/core/pipeline_parallel/schedules.py, forward_backward_pipelining_with_interleaving):
  (pp - rank - 1) x 2 + (v - 1) x pp warm-up forwards, micro-batches taken pp at a time per chunk.
The training graph's nodes are units plus one optimizer unit per rank; edges are data
dependencies (activations forward, gradients backward, the step's end before the optimizer).
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from simcore.ops.training import B, F, OPT

Unit = tuple[str, int, int]  # (phase, micro-batch, virtual stage); the optimizer is (O, -1, rank)


def rank_order(kind: str, rank: int, pp: int, v: int, m: int) -> list[Unit]:
    """The order in which one pipeline rank runs its forward and backward units."""
    if kind == "gpipe":
        return [(F, mb, rank) for mb in range(m)] + [(B, mb, rank) for mb in range(m)]
    if kind == "1f1b" or v == 1:
        warm = min(pp - rank - 1, m)
        out: list[Unit] = [(F, mb, rank) for mb in range(warm)]
        for k in range(m - warm):
            out += [(F, warm + k, rank), (B, k, rank)]
        return out + [(B, mb, rank) for mb in range(m - warm, m)]
    total = m * v

    def fwd(k: int) -> Unit:
        return F, (k // (pp * v)) * pp + k % pp, ((k // pp) % v) * pp + rank

    def bwd(k: int) -> Unit:
        return B, (k // (pp * v)) * pp + k % pp, (v - 1 - (k // pp) % v) * pp + rank

    warm = min((pp - rank - 1) * 2 + (v - 1) * pp, total)
    out = [fwd(k) for k in range(warm)]
    for k in range(total - warm):
        out += [fwd(warm + k), bwd(k)]
    return out + [bwd(k) for k in range(total - warm, total)]


def unit_deps(u: Unit, vstages: int) -> list[Unit]:
    phase, mb, vs = u
    if phase == F:
        return [(F, mb, vs - 1)] if vs > 0 else []
    return [(B, mb, vs + 1)] if vs < vstages - 1 else [(F, mb, vs)]


def training_graph(kind: str, pp: int, v: int, m: int, ops_of: Callable[[Unit], list]) -> nx.DiGraph:
    """Units as nodes (attributes: rank, ops), dependency edges, and g.graph['order']: every unit in
    an order that respects both the dependencies and each rank's schedule (what the flattener walks)."""
    vstages = pp * v
    orders = [rank_order(kind, r, pp, v, m) for r in range(pp)]
    g = nx.DiGraph(pp=pp, virtual_stages=v, micro_batches=m, schedule=kind, orders=orders)
    for r, order in enumerate(orders):
        for u in order:
            g.add_node(u, rank=r)
            for d in unit_deps(u, vstages):
                g.add_edge(d, u)
        g.add_node((OPT, -1, r), rank=r)
        g.add_edge(order[-1], (OPT, -1, r))
    done: set[Unit] = set()
    emitted: list[Unit] = []
    heads = [0] * pp
    while len(emitted) < sum(len(o) for o in orders):
        progress = False
        for r, order in enumerate(orders):
            while heads[r] < len(order) and all(d in done for d in unit_deps(order[heads[r]], vstages)):
                u = order[heads[r]]
                done.add(u)
                emitted.append(u)
                heads[r] += 1
                progress = True
        if not progress:
            raise RuntimeError(f"schedule {kind} deadlocks (pp {pp}, v {v}, m {m})")
    g.graph["order"] = emitted + [(OPT, -1, r) for r in range(pp)]
    for u in g.graph["order"]:
        g.nodes[u]["ops"] = ops_of(u)
    return g
