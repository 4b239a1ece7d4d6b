"""Hardware catalog: GPUs, clusters (topology) and efficiency profiles, from hardware/*.

Units in the YAML are named in the keys: GB/s = 1e9 bytes/s, GiB = 2**30 bytes,
Gb/s (network NICs) = 1e9 bits/s, TFLOP/s = 1e12. In memory everything is SI base units.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
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
    # training: the backward kernel's rate (its FLOPs per second) as a fraction of the forward's at the
    # same length; 1 prices it on the forward curve
    backward: float = Field(default=1.0, ge=1e-3, le=1)
    # training `attention: flash2`: FlashAttention-2's rate as a fraction of the flash kernel's (forward and
    # backward alike); 1 prices FlashAttention-2 as the flash kernel
    flash2: float = Field(default=1.0, ge=1e-3, le=1)


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
    # fixed cost of one MoE layer's routing chain (top-k bookkeeping, token permute and combine,
    # activation quantization): a handful of small serial kernels; fitted by benchmarks/fit_moe.py
    moe_layer_us: float = Field(default=0.0, ge=0)
    # fixed cost of one output tile of a grouped (MoE) GEMM on one SM: pipeline fill, block scales,
    # epilogue; thin expert slices (small N or K per GPU) cut the work into many short tiles
    moe_tile_us: float = Field(default=0.0, ge=0)
    # share of the large-GEMM compute efficiency kept when the kernel converts the weights to the
    # compute dtype as it goes (a format this GPU has no tensor-core math for, e.g. MXFP4 on Hopper):
    # the dequantization is redone for every M tile, so it adds time in proportion to the FLOPs
    # (weight-streaming decode steps hide it); fitted by benchmarks/fit_moe.py --upcast (1: free)
    upcast_gemm: float = Field(default=1.0, gt=0, le=1)
    # fixed cost a per-tensor-scaled fp8 GEMM through TensorRT-LLM's cublas_scaled_mm pays on top of the GEMM
    # price (its kernel floor and weight stream, fitted on bf16): measured on aiconfigurator's H100 TensorRT-LLM
    # Linear microbenchmark (docs/cost-model.md, "Per-tensor fp8 GEMMs in TensorRT-LLM"); 0: none
    scaled_mm_fp8_us: float = Field(default=0.0, ge=0, le=1e4)

    @property
    def kernel_floor(self) -> float:
        return self.kernel_floor_us * 1e-6

    @property
    def elementwise_floor(self) -> float:
        return self.elementwise_floor_us * 1e-6

    @property
    def moe_layer_floor(self) -> float:
        return self.moe_layer_us * 1e-6


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


PROFILES_ENV = "SIMCORE_EFFICIENCY_PATH"  # folders of user profiles (`simcore calibrate --out`), searched first
# Cross-GPU error band of a borrowed profile (docs/calibration.md derives it): the largest gap in
# facts.md §4 between what another GPU measures and the H100-fitted fraction it borrows is
# MI300X HBM, 73-80% of spec against H100's 90.2%, so borrowed memory-bound times run up to
# 1 - 0.73 / 0.902 = 19% short; A100 HBM 79-86% gives 12%, A100 FP16 GEMM 73-82% against 73.5%
# gives up to 10% long. Rounded up to 20%.
BORROWED_ERROR_BAND = 0.20


def efficiency_entries() -> dict[str, Path]:
    """name -> path of every efficiency profile: $SIMCORE_EFFICIENCY_PATH folders (os.pathsep
    separated, first wins) override the catalog's hardware/efficiency."""
    return _efficiency_entries(os.environ.get(PROFILES_ENV, ""))


@cache
def _efficiency_entries(folders: str) -> dict[str, Path]:
    found = dict(entries("hardware/efficiency", ".yaml"))
    for folder in reversed([f for f in folders.split(os.pathsep) if f]):
        found.update({p.stem: p for p in sorted(Path(folder).expanduser().glob("*.yaml"))})
    return found


def efficiency_path(name: str) -> Path:
    found = efficiency_entries()
    return found[name] if name in found else resolve("efficiency profile", "hardware/efficiency", ".yaml", name)


@cache
def load_efficiency(name: str) -> Efficiency:
    path = efficiency_path(name)
    obj = validate(Efficiency, read_yaml(path), str(path))
    if obj.name != path.stem and name in efficiency_entries():
        raise SimcoreError(f"{path}: field 'name' = {obj.name!r} must equal the file name {path.stem!r}")
    return obj


def clear_caches() -> None:
    """Forget loaded hardware (after `simcore calibrate` wrote a profile, or the profile path changed)."""
    for f in (load_gpu, load_cluster, load_efficiency, load_system, _efficiency_entries):
        f.cache_clear()


def profile_name(gpu: GPU) -> str:
    """The GPU's own profile (a file named after it, written by `simcore calibrate`) when there is
    one, else the profile its YAML names (which may have been measured on another GPU)."""
    return gpu.name if gpu.name in efficiency_entries() else gpu.efficiency


def profile_info(gpu: GPU) -> dict:
    """The `efficiency_profile` object of results: which profile prices this GPU, and whether it
    was measured on it or borrowed (then timings carry the cross-GPU error band)."""
    return profile_record(load_efficiency(profile_name(gpu)), gpu.name)


def profile_tag(info: dict) -> str:
    """What tables append to a GPU priced with a borrowed profile ('' when measured on it)."""
    if not info.get("borrowed"):
        return ""
    return f" (efficiency borrowed from {info['measured_on']}, +/-{info['error_band']:.0%})"


def profile_record(eff: Efficiency, gpu: str) -> dict:
    borrowed = eff.measured_on != gpu
    return {"name": eff.name, "measured_on": eff.measured_on, "borrowed": borrowed,
            "error_band": BORROWED_ERROR_BAND if borrowed else None}


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
    return System(gpu=g, cluster=c, efficiency=load_efficiency(profile_name(g)))


def _cluster_gpu(name: str) -> str | None:
    try:
        return load_cluster(name).gpu
    except SimcoreError:
        return None


def calibration_note(gpus) -> str | None:
    """Say which GPUs are priced with an efficiency profile fitted on another GPU (no silent borrowing)."""
    borrowed: dict[str, list[str]] = {}
    for name in gpus:
        info = profile_info(load_gpu(name))
        if info["borrowed"]:
            borrowed.setdefault(info["name"], []).append(name)
    if not borrowed:
        return None
    return "; ".join(f"{', '.join(sorted(names))}: spec sheet x the {prof} efficiency profile (not measured on them, "
                     f"+/-{BORROWED_ERROR_BAND:.0%})" for prof, names in borrowed.items())


def gpu_names() -> list[str]:
    return list(entries("hardware/gpus", ".yaml"))


def cluster_names() -> list[str]:
    return list(entries("hardware/clusters", ".yaml"))
