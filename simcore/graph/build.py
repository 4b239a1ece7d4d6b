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

import networkx as nx

from simcore.config.experiment import Run
from simcore.ops.builder import StageBuilder
from simcore.ops.passes import Pass


def split_batch(batch: int, micro_batches: int) -> list[int]:
    m = max(1, min(micro_batches, batch))
    base, extra = divmod(batch, m)
    return [base + (1 if i < extra else 0) for i in range(m)]


def build_graph(run: Run, ps: Pass, micro_batches: int = 1, steps: int = 1,
                builders: list[StageBuilder] | None = None) -> nx.DiGraph:
    """All ops of `steps` consecutive passes like `ps` (decode steps grow the context by one)."""
    g = nx.DiGraph(ranks=run.par.tp * run.par.pp, tp=run.par.tp, pp=run.par.pp, phase=ps.phase)
    builders = builders or [StageBuilder(run, s) for s in range(run.par.pp)]
    sizes = split_batch(ps.batch, micro_batches)
    g.graph["micro_batches"] = sizes
    g.graph["passes"] = passes = {}  # (step, micro-batch, stage) -> the Pass it runs
    last_of_prev_step: dict[int, tuple] = {}
    for step in range(steps):
        step_pass = replace(ps, past=ps.past + step * ps.new_tokens) if step else ps
        for mb, size in enumerate(sizes):
            prev = last_of_prev_step.get(mb)
            for stage, b in enumerate(builders):
                passes[step, mb, stage] = mb_pass = replace(step_pass, batch=size)
                for i, op in enumerate(b.ops(mb_pass)):
                    node = (step, mb, stage, i)
                    g.add_node(node, op=op, step=step, mb=mb, stage=stage)
                    if prev is not None:
                        g.add_edge(prev, node)
                    prev = node
            last_of_prev_step[mb] = prev
    return g


def stage_streams(g: nx.DiGraph) -> dict[tuple[int, int, int], list[tuple]]:
    """(step, micro-batch, stage) -> its nodes in order."""
    out: dict[tuple[int, int, int], list[tuple]] = {}
    for node in sorted(g.nodes):
        out.setdefault(node[:3], []).append(node)
    return out
