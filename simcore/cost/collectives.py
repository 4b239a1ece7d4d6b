"""Alpha-beta cost of collectives over the cluster topology.

Each algorithm is steps x latency + bytes on the busiest link / achieved bandwidth; the
cheapest algorithm the fabric offers is used, as NCCL's tuner and the engines' custom
all-reduce kernels do. Algorithms:
- ring: 2(n-1) steps moving 2(n-1)/n of the message (all-reduce); n-1 steps and (n-1)/n
  for all-gather, reduce-scatter and all-to-all.
- tree (double binary tree, multi-node): 2 log2(n) steps moving 2x the message.
- direct (one-shot / two-shot through peer memory, full-mesh fabrics inside a node):
  2 steps moving 2(n-1)/n of the message.
- nvls (in-switch reduction, NVSwitch with SHARP): one fixed cost, (n-1)/n of the message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simcore.config.hardware import System

FULL_MESH = ("nvswitch", "infinity-fabric")


def _link(system: System, inter_node: bool) -> tuple[float, float]:
    """(achieved bandwidth bytes/s, per-step latency s) of the busiest link, as NCCL drives it."""
    eff = system.efficiency.collectives
    step = eff.nccl_step_latency_us * 1e-6
    if inter_node:
        link = system.inter_link
        return link.bandwidth * eff.network_link, link.latency + step
    link = system.intra_link
    return link.bandwidth * eff.ring_link, link.latency + step


@dataclass(frozen=True)
class Schedule:
    """A collective as `steps` equal rounds; in each round every rank moves data to `peers`."""

    algorithm: str  # ring | tree | direct | nvls | p2p
    steps: int
    step_time: float
    peers: str  # "next": data comes from the ring predecessor; "all": a round needs every rank's previous one

    @property
    def time(self) -> float:
        return self.steps * self.step_time


def schedule(kind: str, nbytes: float, n: int, system: System, inter_node: bool, custom: bool = True) -> Schedule:
    """The cheapest algorithm for one collective of `nbytes` (the per-rank message) among n ranks.

    custom: the engine's own all-reduce kernel (vLLM, TensorRT-LLM) may be used inside a
    full-mesh node; it synchronizes through peer memory at the bare link latency.
    """
    bw, lat = _link(system, inter_node)
    if kind == "send_recv":
        return Schedule("p2p", 1, lat + nbytes / bw, "next")
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return Schedule("ring", n - 1, lat + nbytes / n / bw, "next")
    if kind != "all_reduce":
        raise ValueError(f"unknown collective {kind!r}")
    frac = (n - 1) / n
    options = [Schedule("ring", 2 * (n - 1), lat + nbytes / n / bw, "next")]
    if inter_node:
        depth = 2 * math.ceil(math.log2(n))
        options.append(Schedule("tree", depth, lat + 2 * nbytes / bw / depth, "next"))
    else:
        fabric = system.cluster.intra_node
        if custom and fabric.fabric in FULL_MESH:
            options.append(Schedule("direct", 2, system.intra_link.latency + frac * nbytes / bw, "all"))
        if fabric.nvls:
            eff = system.efficiency.collectives
            t = eff.nvls_latency_us * 1e-6 + frac * nbytes / (system.intra_link.bandwidth * eff.nvls_link)
            options.append(Schedule("nvls", 1, t, "all"))
    return min(options, key=lambda o: o.time)


def collective_time(kind: str, nbytes: float, n: int, system: System, inter_node: bool, custom: bool = True) -> float:
    """Seconds for one collective among n ranks, without the kernel floor (see `schedule`)."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return schedule(kind, nbytes, n, system, inter_node, custom).time
