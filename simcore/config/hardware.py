"""Hardware catalog: GPUs, clusters (topology) and efficiency profiles, from hardware/*.

Units in the YAML are named in the keys: GB/s = 1e9 bytes/s, GiB = 2**30 bytes,
Gb/s (network NICs) = 1e9 bits/s, TFLOP/s = 1e12. In memory everything is SI base units.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Literal

from pydantic import Field

from simcore.config.catalog import entries, resolve
from simcore.config.validation import Strict, read_yaml, validate
from simcore.errors import SimcoreError

GIB = 2**30
# Every rate, size and price in the catalog's units lies in [1e-3, 1e7] (docs/experiments.md, "Bounds"):
# a subnormal bandwidth would turn a transfer time into inf, a huge one into zero.
PositiveFloat = Annotated[float, Field(ge=1e-3, le=1e7)]
PositiveInt = Annotated[int, Field(gt=0, le=100_000)]
Micros = Annotated[float, Field(ge=0, le=1e6)]
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")


class Link(Strict):
    kind: str
    bandwidth_gbps: PositiveFloat  # per direction
    latency_us: Micros

    @property
    def bandwidth(self) -> float:
        return self.bandwidth_gbps * 1e9

    @property
    def latency(self) -> float:
        return self.latency_us * 1e-6


class Links(Strict):
    gpu: Link
    host: Link


class Memory(Strict):
    capacity_gib: PositiveFloat
    bandwidth_gbps: PositiveFloat
    l2_mib: PositiveFloat

    @property
    def capacity(self) -> float:
        return self.capacity_gib * GIB

    @property
    def bandwidth(self) -> float:
        return self.bandwidth_gbps * 1e9


class GPU(Strict):
    kind: Literal["gpu"]
    name: str
    description: str
    vendor: Literal["nvidia", "amd"]
    architecture: str
    sm_count: PositiveInt
    peak_tflops: dict[Literal[DTYPES], PositiveFloat]  # type: ignore[valid-type]
    memory: Memory
    links: Links
    efficiency: str
    cost_per_hour_usd: PositiveFloat
    default_cluster: str

    def peak_flops(self, dtype: str) -> float:
        return self.peak_tflops[dtype] * 1e12

    def supports(self, dtype: str) -> bool:
        return dtype in self.peak_tflops


class IntraNode(Strict):
    fabric: Literal["nvswitch", "nvlink-bridge", "pcie", "infinity-fabric"]
    nvls: bool = False
    bandwidth_gbps: PositiveFloat | None = None
    latency_us: Micros | None = None


class InterNode(Strict):
    fabric: Literal["infiniband", "roce", "ethernet"]
    nics_per_node: PositiveInt
    nic_gbps: PositiveFloat  # bits per second, as NICs are sold
    latency_us: Micros


class Host(Strict):
    memory_gib: PositiveFloat
    dram_bandwidth_gbps: PositiveFloat


class Cluster(Strict):
    kind: Literal["cluster"]
    name: str
    gpu: str
    gpus_per_node: PositiveInt
    intra_node: IntraNode
    inter_node: InterNode
    host: Host


class GemmEfficiency(Strict):
    compute_max: float = Field(ge=1e-3, le=1)  # fraction of peak for large GEMMs
    m_half: float = Field(ge=0, le=1e9)  # tokens at which small-M GEMMs reach half of compute_max
    memory: float = Field(ge=1e-3, le=1)  # fraction of HBM bandwidth when streaming weights
    compute_max_fp8: float = Field(ge=1e-3, le=1)  # fp8 tensor-core GEMMs reach a lower fraction of their peak

    def compute_max_for(self, dtype: str) -> float:
        return self.compute_max_fp8 if dtype == "fp8" else self.compute_max


class PrefillAttentionEfficiency(Strict):
    compute_max: float = Field(ge=1e-3, le=1)
    s_half: float = Field(ge=0, le=1e9)  # sequence length at half of compute_max


class CollectiveEfficiency(Strict):
    ring_link: float = Field(ge=1e-3, le=1)  # achieved / line rate for ring and direct algorithms
    nvls_link: float = Field(ge=1e-3, le=1)  # same for in-switch reduction (NVLS)
    nvls_latency_us: Micros  # fixed cost of an NVLS collective
    nccl_step_latency_us: Micros  # per algorithm step inside NCCL (protocol + sync), beyond the link
    network_link: float = Field(ge=1e-3, le=1)  # achieved / NIC line rate across nodes


class Efficiency(Strict):
    kind: Literal["efficiency"]
    name: str
    source: str
    measured_on: str  # the GPU whose microbenchmarks the profile was fitted to
    kernel_floor_us: Micros  # GEMM and attention kernels: launch, ramp and tail
    elementwise_floor_us: Micros  # small memory-bound kernels (norms, rope, cache stores)
    gemm: GemmEfficiency
    attention_prefill: PrefillAttentionEfficiency
    attention_decode_memory: float = Field(ge=1e-3, le=1)
    memory: float = Field(ge=1e-3, le=1)  # elementwise ops and KV cache stores
    host_link: float = Field(ge=1e-3, le=1)  # achieved / line rate of the GPU-host link (KV on host)
    collectives: CollectiveEfficiency

    @property
    def kernel_floor(self) -> float:
        return self.kernel_floor_us * 1e-6

    @property
    def elementwise_floor(self) -> float:
        return self.elementwise_floor_us * 1e-6


class System(Strict):
    """What one experiment runs on: a cluster of one GPU kind and its efficiency profile."""

    gpu: GPU
    cluster: Cluster
    efficiency: Efficiency

    @property
    def intra_link(self) -> Link:
        """GPU-to-GPU inside a node: the cluster may override the GPU's own link."""
        own = self.gpu.links.gpu
        c = self.cluster.intra_node
        return Link(
            kind=c.fabric,
            bandwidth_gbps=c.bandwidth_gbps or own.bandwidth_gbps,
            latency_us=own.latency_us if c.latency_us is None else c.latency_us,
        )

    @property
    def host_bandwidth(self) -> float:
        """Achieved GPU <-> host bytes/s, per direction: the link's line rate x the profile's host_link."""
        return self.gpu.links.host.bandwidth * self.efficiency.host_link

    @property
    def inter_link(self) -> Link:
        """Per-GPU share of the node's network, per direction."""
        n = self.cluster.inter_node
        per_node_gbps = n.nics_per_node * n.nic_gbps / 8  # bits -> bytes
        return Link(
            kind=n.fabric,
            bandwidth_gbps=per_node_gbps / self.cluster.gpus_per_node,
            latency_us=n.latency_us,
        )


def _load(model, kind: str, folder: str, name: str):
    path = resolve(kind, folder, ".yaml", name)
    obj = validate(model, read_yaml(path), str(path))
    if obj.name != path.stem and path.parent.name == folder.split("/")[-1]:
        raise SimcoreError(f"{path}: field 'name' = {obj.name!r} must equal the file name {path.stem!r}")
    return obj


@cache
def load_gpu(name: str) -> GPU:
    return _load(GPU, "GPU", "hardware/gpus", name)


@cache
def load_cluster(name: str) -> Cluster:
    return _load(Cluster, "cluster", "hardware/clusters", name)


@cache
def load_efficiency(name: str) -> Efficiency:
    return _load(Efficiency, "efficiency profile", "hardware/efficiency", name)


@cache
def load_system(gpu: str, cluster: str | None = None) -> System:
    g = load_gpu(gpu)
    c = load_cluster(cluster or g.default_cluster)
    if c.gpu != g.name:
        fitting = sorted(n for n in cluster_names() if _cluster_gpu(n) == g.name)
        raise SimcoreError(
            f"cluster '{c.name}' is built from {c.gpu} GPUs, not {g.name}; allowed clusters for {g.name}: "
            f"{', '.join(fitting) or 'none in the catalog (leave cluster out to use ' + g.default_cluster + ')'}"
        )
    return System(gpu=g, cluster=c, efficiency=load_efficiency(g.efficiency))


def _cluster_gpu(name: str) -> str | None:
    try:
        return load_cluster(name).gpu
    except SimcoreError:
        return None


def calibration_note(gpus) -> str | None:
    """Say which GPUs are priced with an efficiency profile fitted on another GPU (no silent borrowing)."""
    borrowed: dict[str, list[str]] = {}
    for name in gpus:
        g = load_gpu(name)
        profile = load_efficiency(g.efficiency)
        if profile.measured_on != name:
            borrowed.setdefault(profile.name, []).append(name)
    if not borrowed:
        return None
    return "; ".join(f"{', '.join(sorted(names))}: spec sheet x the {prof} efficiency profile (not measured on them)"
                     for prof, names in borrowed.items())


def gpu_names() -> list[str]:
    return list(entries("hardware/gpus", ".yaml"))


def cluster_names() -> list[str]:
    return list(entries("hardware/clusters", ".yaml"))
