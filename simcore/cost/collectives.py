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
- pairwise (all-to-all): every rank sends each peer its share at once (NCCL's grouped
  send/recv, DeepEP); one latency, then the bytes over the busiest link: (g-1)/n of the
  message over the node's fabric and (n-g)/n over the rank's network share, in parallel.
- hierarchical (across nodes, as NCCL's tree/CollNet and the engines' two-level all-reduce):
  reduce-scatter inside each node, the 1/g shard reduced across nodes, all-gather inside the
  node; only the middle phase pays network latency. g = the group's GPUs per node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simcore.config.hardware import System

FULL_MESH = ("nvswitch", "infinity-fabric")
# The engines' custom all-reduce kernels take messages up to 8 MiB; larger ones go to NCCL (vLLM
# CustomAllreduce(max_size=8192 * 1024), vllm/distributed/device_communicators/custom_all_reduce.py)
CUSTOM_MAX_BYTES = 8 * 2**20


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


def schedule(kind: str, nbytes: float, n: int, system: System, inter_node: bool, custom: bool = True,
             per_node: int = 0) -> Schedule:
    """The cheapest algorithm for one collective of `nbytes` (the per-rank message) among n ranks.

    custom: the engine's own all-reduce kernel (vLLM, TensorRT-LLM) may be used inside a
    full-mesh node; it synchronizes through peer memory at the bare link latency.
    per_node: the group's ranks on each node when it crosses nodes (a strided group, e.g. data
    parallelism over tp x cp-wide slices, has fewer than the node's GPUs); 0: packed.
    """
    bw, lat = _link(system, inter_node)
    g = (per_node or _per_node(n, system)) if inter_node else n
    if kind == "send_recv":
        return Schedule("p2p", 1, lat + nbytes / bw, "next")
    if kind == "all_to_all":
        bw_in, _ = _link(system, False)
        t = max((g - 1) / n * nbytes / bw_in, (n - g) / n * nbytes / bw)
        return Schedule("pairwise", 1, lat + t, "all")
    if kind in ("all_gather", "reduce_scatter"):
        options = [Schedule("ring", n - 1, lat + nbytes / n / bw, "next")]
        if inter_node and g > 1:
            options.append(Schedule("hierarchical", 1, _two_level(kind, nbytes, n, g, system), "all"))
        return min(options, key=lambda o: o.time)
    if kind != "all_reduce":
        raise ValueError(f"unknown collective {kind!r}")
    frac = (n - 1) / n
    options = [Schedule("ring", 2 * (n - 1), lat + nbytes / n / bw, "next")]
    if inter_node:
        depth = 2 * math.ceil(math.log2(n))
        options.append(Schedule("tree", depth, lat + 2 * nbytes / bw / depth, "next"))
        if g > 1:
            options.append(Schedule("hierarchical", 1, _two_level(kind, nbytes, n, g, system), "all"))
    else:
        fabric = system.cluster.intra_node
        if custom and fabric.fabric in FULL_MESH and nbytes <= CUSTOM_MAX_BYTES:
            options.append(Schedule("direct", 2, system.intra_link.latency + frac * nbytes / bw, "all"))
        if fabric.nvls:
            eff = system.efficiency.collectives
            t = eff.nvls_latency_us * 1e-6 + frac * nbytes / (system.intra_link.bandwidth * eff.nvls_link)
            options.append(Schedule("nvls", 1, t, "all"))
    return min(options, key=lambda o: o.time)


def _per_node(n: int, system: System) -> int:
    """The group's ranks per node when it crosses nodes: packed, and on at least two nodes."""
    nodes = max(2, math.ceil(n / system.cluster.gpus_per_node))
    return max(1, n // nodes)


def _two_level(kind: str, nbytes: float, n: int, g: int, system: System) -> float:
    """Intra-node ring phase(s) around an inter-node ring among the n/g nodes on a 1/g shard.

    all_reduce: reduce-scatter in the node, all-reduce across nodes, all-gather in the node;
    all_gather / reduce_scatter: the inter-node phase on the shard, then (or before) the node's.
    nbytes is the per-rank message (the gathered / reduced whole).
    """
    bw_in, lat_in = _link(system, False)
    bw_out, lat_out = _link(system, True)
    nodes = math.ceil(n / g)
    node_phase = (g - 1) * lat_in + (g - 1) / g * nbytes / bw_in  # one RS or AG among g ranks
    shard = nbytes / g
    if kind == "all_reduce":
        across = 2 * (nodes - 1) * lat_out + 2 * (nodes - 1) / nodes * shard / bw_out
        return 2 * node_phase + across
    across = (nodes - 1) * lat_out + (nodes - 1) / nodes * shard / bw_out
    return node_phase + across


def collective_time(kind: str, nbytes: float, n: int, system: System, inter_node: bool, custom: bool = True,
                    per_node: int = 0) -> float:
    """Seconds for one collective among n ranks, without the kernel floor (see `schedule`)."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return schedule(kind, nbytes, n, system, inter_node, custom, per_node).time
