"""The host-memory KV tier of one replica (vLLM's CPU offloading connector) and its link.

Blocks are keyed by their hash (docs/serving.md). The tier holds at most `capacity` blocks:
cached blocks (written through after their prefill, evicted by the tier's cache policy) plus
the blocks of requests preempted by swap (pinned until swapped in). Transfers go over the GPU's
host link, one FIFO per direction (links.host.bandwidth_gbps is per direction): a transfer starts
when the link is free, takes latency + bytes / (bandwidth x efficiency.host_link), and the link's
busy-until time advances to its end. Each GPU of a replica moves its own shard over its own link
in parallel, so the time is that of the largest per-GPU shard (the pipeline stage with the most
KV bytes) and the bytes reported are the whole replica's.
"""

from __future__ import annotations
from simcore.config.hardware import GIB



class Link:
    """One direction of the host link: a FIFO whose busy-until time advances by bytes / bandwidth."""

    def __init__(self, bandwidth: float, latency: float, gpu_block_bytes: float, kind: str = "kv_cache_store"):
        self.per_block = gpu_block_bytes / bandwidth
        self.latency = latency
        self.busy = 0.0
        self.kind = kind  # kv_cache_store (HBM -> host) or kv_cache_fetch (host -> HBM), for the trace
        self.log = None  # a SpanLog and the name of the link's owner, when the run is traced
        self.owner = ""
        self.block_bytes = 0.0  # one block of the whole replica (the trace reports replica bytes)

    def send(self, now: float, blocks: int) -> float:
        """Queue `blocks` blocks at `now`; returns when the last byte has arrived."""
        start = self.busy if self.busy > now else now
        self.busy = start + self.latency + blocks * self.per_block
        if self.log is not None:
            self.log.transfer(self.owner, self.kind, start, self.busy, blocks, blocks * self.block_bytes)
        return self.busy


class HostTier:
    def __init__(self, capacity: int, policy, block_bytes: float, gpu_block_bytes: float, link, caching: bool):
        self.capacity = capacity  # blocks
        self.policy = policy
        self.block_bytes = block_bytes  # one block, all GPUs of the replica
        self.caching = caching  # False: the tier only holds swapped blocks (preemption: swap, tier off)
        bw, lat = link
        self.d2h = Link(bw, lat, gpu_block_bytes, "kv_cache_store")
        self.h2d = Link(bw, lat, gpu_block_bytes, "kv_cache_fetch")
        self.ready: dict = {}  # cached key -> time its write-through completes (loadable from then on)
        self.pinned = 0  # swapped-out blocks
        self.stored_total = self.evicted_total = 0
        self.blocks_out = self.blocks_in = 0  # blocks moved HBM -> host, host -> HBM
        self.peak_used = 0
        self.hit_tokens = 0  # prompt tokens loaded from host (host hits)

    def trace_into(self, log, owner: str) -> None:
        for link in (self.d2h, self.h2d):
            link.log, link.owner, link.block_bytes = log, owner, self.block_bytes

    @property
    def used(self) -> int:
        return len(self.ready) + self.pinned

    def _room(self, n: int) -> bool:
        """Evict cached blocks until `n` more fit; False when the pinned blocks leave no room."""
        if self.pinned + n > self.capacity:
            return False
        while self.used + n > self.capacity:
            del self.ready[self.policy.pop()]
            self.evicted_total += 1
        return True

    def _peak(self) -> None:
        u = self.used
        if u > self.peak_used:
            self.peak_used = u

    def store(self, keys, now: float) -> None:
        """Write-through of computed full blocks not on host yet (async: nothing waits for it)."""
        new = [k for k in keys if k not in self.ready]
        if not new or not self._room(len(new)):
            return
        end = self.d2h.send(now, len(new))
        policy = self.policy
        for k in new:
            self.ready[k] = end
            policy.push(k)
        self.stored_total += len(new)
        self.blocks_out += len(new)
        self._peak()

    def lookup(self, keys, now: float, touch: bool = True) -> int:
        """Leading blocks of `keys` on host and written by `now`; with `touch` each counts as a hit."""
        ready, policy = self.ready, self.policy
        n = 0
        for k in keys:
            t = ready.get(k)
            if t is None or t > now:
                break
            n += 1
        if not touch:
            return n
        for k in keys[:n]:
            policy.hit(k)
            policy.remove(k)
            policy.push(k)
        return n

    def load(self, blocks: int, now: float) -> float:
        self.blocks_in += blocks
        return self.h2d.send(now, blocks)

    def swap_out(self, blocks: int, now: float) -> float | None:
        """Copy a preempted request's blocks to host (pinned); None when they cannot fit."""
        if not self._room(blocks):
            return None
        self.pinned += blocks
        self.blocks_out += blocks
        self._peak()
        return self.d2h.send(now, blocks)

    def swap_in(self, blocks: int, now: float) -> float:
        self.pinned -= blocks
        return self.load(blocks, now)


def tier_geometry(run, budget, block_size: int) -> tuple[float, float]:
    """(bytes of one block on the GPU with the most, bytes of one block over the whole replica)."""
    per_gpu = [budget.bytes_per_token(st) * block_size for st in budget.stages]
    return max(per_gpu), sum(per_gpu) * run.par.tp


def block_flops(run, block_size: int):
    """F(j): prefill FLOPs of block j given the j x block_size tokens before it (cost_aware's numerator)."""
    from simcore.ops.linears import active_params

    m = run.model
    lin = 2.0 * active_params(m) * block_size
    att = 4.0 * m.layers * m.heads * m.head_dim
    return lambda j: lin + att * (block_size * j * block_size + block_size * (block_size + 1) / 2)


def make_tier(run, cfg, budget, policy_cls, ctx) -> HostTier | None:
    ht = cfg.host_tier
    if not ht.enabled and cfg.preemption != "swap":
        return None
    gpu_bytes, rep_bytes = tier_geometry(run, budget, cfg.block_size)
    node = run.system.cluster
    gib = ht.capacity_gib if ht.capacity_gib is not None else node.host.memory_gib / node.gpus_per_node
    link = (run.system.host_bandwidth, run.system.gpu.links.host.latency)
    return HostTier(int(gib * GIB // gpu_bytes), policy_cls(ctx), rep_bytes, gpu_bytes, link, ht.enabled)
