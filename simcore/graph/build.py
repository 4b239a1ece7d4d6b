"""Pipeline graph: a networkx DiGraph of every op a pass runs, for every micro-batch and stage.

Node = (step, micro-batch, stage, index) with the stage's Op; one node stands for the TP
group of its stage (TP ranks run identical op lists; the flattener expands them).
Edges are data dependencies: ops in order within (step, micro-batch, stage); a stage's
pp_send feeds the next stage's first op; the last stage of step k feeds stage 0 of step k+1
for the same micro-batch (the next token needs the previous one). Node kinds are the op
kinds: compute, comm, kv_cache_store, kv_cache_fetch; kv_cache nodes carry no
communication metadata.
"""

from __future__ import annotations

from dataclasses import replace


from simcore.config.experiment import Run
from simcore.ops.builder import StageBuilder
from simcore.ops.passes import Pass


def split_batch(batch: int, micro_batches: int) -> list[int]:
    m = max(1, min(micro_batches, batch))
    base, extra = divmod(batch, m)
    return [base + (1 if i < extra else 0) for i in range(m)]


Streams = dict[tuple[int, int, int], tuple[Pass, list]]  # (step, micro-batch, stage) -> (its Pass, its ops)


def pass_streams(run: Run, ps: Pass, micro_batches: int = 1, steps: int = 1,
                 builders: list[StageBuilder] | None = None, build_ops: bool = True) -> Streams:
    """The ops each (step, micro-batch, stage) runs, in execution order of the keys. build_ops=False
    leaves the ops None: the flattener prices such a stage from its builder, one layer per class."""
    builders = builders or [StageBuilder(run, s) for s in range(run.par.pp)]
    out: Streams = {}
    for step in range(steps):
        step_pass = replace(ps, past=ps.past + step * ps.new_tokens) if step else ps
        for mb, size in enumerate(split_batch(ps.batch, micro_batches)):
            mb_pass = replace(step_pass, batch=size)
            for stage, b in enumerate(builders):
                out[step, mb, stage] = (mb_pass, b.ops(mb_pass) if build_ops else None)
    return out


def build_graph(run: Run, ps: Pass, micro_batches: int = 1, steps: int = 1,
                builders: list[StageBuilder] | None = None, pricer=None):
    """All ops of `steps` consecutive passes like `ps` (decode steps grow the context by one).

    Node attributes: op, kind, bytes, kv_cache (flag), step, mb, stage, ranks (the GPUs of the
    stage's TP group) and, with a pricer, duration (seconds, from the one roofline)."""
    import networkx as nx  # only here: a static run flattens pass_streams directly, without the graph

    tp = run.par.tp
    g = nx.DiGraph(ranks=run.par.tp * run.par.pp, tp=run.par.tp, pp=run.par.pp, phase=ps.phase)
    g.graph["micro_batches"] = split_batch(ps.batch, micro_batches)
    g.graph["passes"] = passes = {}  # (step, micro-batch, stage) -> the Pass it runs
    prev_of_mb: dict[int, tuple] = {}  # the last node of each micro-batch so far
    for key, (mb_pass, ops) in pass_streams(run, ps, micro_batches, steps, builders).items():
        step, mb, stage = key
        passes[key] = mb_pass
        prev = prev_of_mb.get(mb)
        ranks = tuple(range(stage * tp, (stage + 1) * tp))
        for i, op in enumerate(ops):
            node = (step, mb, stage, i)
            g.add_node(node, op=op, kind=op.kind, bytes=op.bytes, kv_cache=op.kind.startswith("kv_cache"),
                       step=step, mb=mb, stage=stage, ranks=ranks,
                       duration=pricer.time(op) if pricer is not None else None)
            if prev is not None:
                g.add_edge(prev, node)
            prev = node
        prev_of_mb[mb] = prev
    return g


def stage_streams(g) -> Streams:
    """The graph back as (step, micro-batch, stage) -> (Pass, ops in order)."""
    nodes: dict[tuple[int, int, int], list[tuple]] = {}
    for node in sorted(g.nodes):
        nodes.setdefault(node[:3], []).append(node)
    return {key: (g.graph["passes"][key], [g.nodes[n]["op"] for n in ns]) for key, ns in nodes.items()}
