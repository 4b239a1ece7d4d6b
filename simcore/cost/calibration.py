"""Microbenchmark rows -> the simulator's own Ops -> predicted times, and the error tables.

Each row is turned into exactly the Ops that simcore.ops.builder emits for that kernel
(StageBuilder.gemm, kv_ops, attention_core), so a calibration fitted here prices the
simulator's real op lists, not a private re-implementation of them.
Used by simcore.calibrate (fitting, `simcore calibrate`) and benchmarks/op_fidelity.py (checking).
The file format (written by `simcore profile`, docs/calibration.md): top-level lists of rows per
family; gemm rows may carry a "dtype" (default bf16); elementwise and collective families are
optional (the shared H100 file has neither).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import NamedTuple

from simcore.config.hardware import Efficiency, System
from simcore.cost.roofline import Pricer
from simcore.ops.builder import FLASH_TILE, attended_pairs
from simcore.ops.op import (ATTN_DECODE, ATTN_PREFILL, COLLECTIVE, COMM, COMPUTE, GEMM, KV_FETCH, MEMORY, Op,
                            nbytes)

FAMILIES = ("gemm", "decode_attn", "prefill_attn", "elementwise", "collective")
BF16 = 2  # bytes; attention rows and GEMM activations are bf16


def load_bench(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def bench_l2_bytes(bench: dict, system: System) -> float:
    """The L2 size the file's GPU reported (meta.l2_bytes; null or absent: the catalog GPU's)."""
    l2 = bench.get("meta", {}).get("l2_bytes")
    return float(system.gpu.memory.l2_mib * 2**20 if l2 is None else l2)


def bench_rows(bench: dict) -> list[tuple[str, dict]]:
    """(family, row) for every measured row, in file order."""
    return [(fam, row) for fam in FAMILIES for row in bench.get(fam, [])]


# -- rows -> Ops ---------------------------------------------------------------------------
def gemm_ops(r: dict) -> list[Op]:
    """As StageBuilder.gemm: weights in the row's dtype, activations in and out in bf16."""
    m, k, n = r["M"], r["K"], r["N"]
    dtype = r.get("dtype", "bf16")
    return [Op("gemm", COMPUTE, GEMM, 0, flops=2.0 * m * n * k, bytes=nbytes(dtype) * k * n + BF16 * (m * k + m * n),
               dtype=dtype, shape=(m, n, k))]


def kv_bytes(r: dict) -> float:
    return r["B"] * r["L"] * 2 * r["hkv"] * r["hd"] * BF16  # K and V


def decode_ops(r: dict) -> list[Op]:
    """A decode step prices attention as the KV stream (no floor) plus the attention kernel."""
    b, L, hq, hd = r["B"], r["L"], r["hq"], r["hd"]
    kv = kv_bytes(r)
    qo = b * hq * (hd + hd) * BF16
    return [
        Op("kv_cache_fetch", KV_FETCH, MEMORY, 0, bytes=kv, kv_bytes=kv, kernel=False),
        Op("attention", COMPUTE, ATTN_DECODE, 0, flops=2.0 * hq * b * L * (hd + hd), bytes=qo,
           dtype="bf16", shape=(b, hq, L), act_bytes=qo),
    ]


def prefill_ops(r: dict) -> list[Op]:
    b, s, hq, hkv, hd = r["B"], r["S"], r["hq"], r["hkv"], r["hd"]
    pairs = b * attended_pairs(0, s, None)  # causal, no past
    io = b * s * (hq * 2 * hd + hkv * 2 * hd) * BF16  # q, o and the fresh k, v
    tiles = b * hq * math.ceil(s / FLASH_TILE)
    seq = 2 * pairs / (b * s)  # as attention_core: mean keys per query, doubled (S + 1)
    return [Op("attention", COMPUTE, ATTN_PREFILL, 0, flops=2.0 * hq * pairs * (2 * hd), bytes=io,
               dtype="bf16", shape=(tiles, seq), act_bytes=io)]


def elementwise_ops(r: dict) -> list[Op]:
    """A memory-bound kernel (norm, residual add, activation) moving r["bytes"] (reads + writes)."""
    return [Op(r["op"], COMPUTE, MEMORY, 0, bytes=float(r["bytes"]), act_bytes=float(r["bytes"]))]


def collective_ops(r: dict) -> list[Op]:
    """One NCCL collective of r["bytes"] per rank among r["gpus"] ranks of one node."""
    return [Op(r["op"], COMM, COLLECTIVE, 0, bytes=float(r["bytes"]), collective=r["op"], group=int(r["gpus"]))]


OPS = {"gemm": gemm_ops, "decode_attn": decode_ops, "prefill_attn": prefill_ops, "elementwise": elementwise_ops,
       "collective": collective_ops}


def l2_resident(family: str, r: dict, l2_bytes: float) -> bool:
    """The decode benchmark reused its KV buffers: if they fit in L2 it ran partly from L2.
    A real decode step never has a layer's KV in L2 (the weight stream evicts it)."""
    return family == "decode_attn" and kv_bytes(r) <= l2_bytes


def shape_label(family: str, r: dict) -> str:
    if family == "gemm":
        return f"M={r['M']} K={r['K']} N={r['N']}" + (f" {r['dtype']}" if r.get("dtype", "bf16") != "bf16" else "")
    if family == "elementwise":
        return f"{r['op']} {r['bytes'] / 2**20:.2f} MiB"
    if family == "collective":
        return f"{r['op']} {r['gpus']} GPUs {r['bytes'] / 2**20:.3f} MiB"
    if family == "decode_attn":
        return f"B={r['B']} L={r['L']} hq={r['hq']} hkv={r['hkv']} hd={r['hd']}"
    return f"B={r['B']} S={r['S']} hq={r['hq']} hkv={r['hkv']} hd={r['hd']}"


# -- pricing ---------------------------------------------------------------------------------
class Prediction(NamedTuple):
    family: str
    row: dict
    measured_s: float
    predicted_s: float

    @property
    def rel_err(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


def ring_only(system: System) -> System:
    """`system` as a profile run measures collectives: NCCL forced to ring (NCCL_ALGO=Ring), so
    neither NVLS nor an engine's custom all-reduce take part (the fit is of the ring constants)."""
    intra = system.cluster.intra_node.model_copy(update={"nvls": False})
    return system.model_copy(update={"cluster": system.cluster.model_copy(update={"intra_node": intra})})


def predict(rows: list[tuple[str, dict]], system: System, ops: list[list[Op]] | None = None) -> list[Prediction]:
    """Predicted time of each row = sum of its Ops' Pricer totals on `system` (ops: the rows' Ops, when
    the caller prices the same rows many times)."""
    pricer = Pricer(system)
    ring = Pricer(ring_only(system), custom_all_reduce=False) if any(f == "collective" for f, _ in rows) else None
    ops = ops or [OPS[fam](r) for fam, r in rows]
    return [Prediction(fam, r, r["ms"] * 1e-3, sum(map((ring if fam == "collective" else pricer).time, o)))
            for (fam, r), o in zip(rows, ops)]


class Stats(NamedTuple):
    count: int
    median_abs: float  # median |relative error|
    max_abs: float

    @staticmethod
    def of(preds: list[Prediction]) -> "Stats":
        errs = [abs(p.rel_err) for p in preds]
        if not errs:
            return Stats(0, math.nan, math.nan)
        return Stats(len(errs), statistics.median(errs), max(errs))


def error_table(preds: list[Prediction], l2_bytes: float) -> dict[str, dict[str, Stats]]:
    """family (plus "overall") -> {"all": Stats over every row, "hbm": Stats over HBM-resident rows}."""
    out: dict[str, dict[str, Stats]] = {}
    groups = {fam: [p for p in preds if p.family == fam] for fam in FAMILIES}
    groups["overall"] = list(preds)
    for name, ps in groups.items():
        if ps:
            hbm = [p for p in ps if not l2_resident(p.family, p.row, l2_bytes)]
            out[name] = {"all": Stats.of(ps), "hbm": Stats.of(hbm)}
    return out


# -- the fitted parameters ---------------------------------------------------------------------
# Name in the fit vector -> path in the efficiency profile.
FIT_PARAMS = (
    ("kernel_floor_us", ("kernel_floor_us",)),
    ("gemm.compute_max", ("gemm", "compute_max")),
    ("gemm.m_half", ("gemm", "m_half")),
    ("gemm.memory", ("gemm", "memory")),
    ("attention_prefill.compute_max", ("attention_prefill", "compute_max")),
    ("attention_prefill.s_half", ("attention_prefill", "s_half")),
    ("attention_decode_memory", ("attention_decode_memory",)),
    ("gemm.compute_max_fp8", ("gemm", "compute_max_fp8")),
    ("elementwise_floor_us", ("elementwise_floor_us",)),
    ("collectives.ring_link", ("collectives", "ring_link")),
    ("collectives.nccl_step_latency_us", ("collectives", "nccl_step_latency_us")),
)


def with_params(system: System, values: dict[str, float]) -> System:
    """`system` with the named efficiency fields replaced (validated, so bounds are enforced)."""
    data = system.efficiency.model_dump()
    for name, path in FIT_PARAMS:
        if name in values:
            node = data
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = float(values[name])
    return system.model_copy(update={"efficiency": Efficiency.model_validate(data)})


def params_of(eff: Efficiency) -> dict[str, float]:
    data = eff.model_dump()
    out = {}
    for name, path in FIT_PARAMS:
        node = data
        for key in path:
            node = node[key]
        out[name] = float(node)
    return out
