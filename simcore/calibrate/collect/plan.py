"""What `simcore profile` measures: pure data, derived from the catalog's own op lists.

GEMM (K, N) pairs are the weight matrices simcore.ops.linears gives every catalog model at
each tensor-parallel degree; attention head shapes are the catalog's (hq, hkv, hd) per GPU;
the M, batch, length and size sweeps span decode (M = 1) to long prefill. A backend times
each entry (simcore.calibrate.collect.backend); nothing here touches a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.config.model import load_model, model_names
from simcore.ops.linears import Sharding, attention_linears, mlp_linears

BF16 = 2


@dataclass(frozen=True)
class Sweep:
    tps: tuple[int, ...]
    gemm_m: tuple[int, ...]
    decode_b: tuple[int, ...]
    decode_l: tuple[int, ...]
    prefill_s: tuple[int, ...]
    heads: int  # distinct (hq, hkv, hd) attention shapes at most
    max_gemm_pairs: int  # distinct (K, N) weight shapes at most
    elementwise_tokens: tuple[int, ...]
    collective_bytes: tuple[int, ...]
    repeats: int  # timed repetitions per row (the median is recorded)
    max_kv_bytes: int = 8 * 2**30  # decode rows whose K+V would exceed this are skipped


FULL = Sweep(tps=(1, 2, 4, 8), gemm_m=(1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192),
             decode_b=(1, 8, 32, 128), decode_l=(128, 1024, 4096, 16384, 65536), prefill_s=(512, 1024, 2048, 4096, 8192),
             heads=8, max_gemm_pairs=10_000, elementwise_tokens=(1, 16, 256, 2048, 16384),
             collective_bytes=tuple(2**p for p in range(10, 31, 2)), repeats=30)
QUICK = Sweep(tps=(1, 8), gemm_m=(1, 16, 128, 1024, 4096), decode_b=(1, 32), decode_l=(1024, 16384),
              prefill_s=(512, 2048, 8192), heads=3, max_gemm_pairs=24, elementwise_tokens=(16, 2048),
              collective_bytes=(2**10, 2**16, 2**20, 2**24, 2**28), repeats=10)
ELEMENTWISE = ("rmsnorm", "add", "silu_mul")
COLLECTIVES = ("all_reduce", "all_gather", "all_to_all")


@dataclass
class Plan:
    """Every measurement as (family, shape) in the order the file lists them."""

    dtypes: tuple[str, ...]
    gemm: list[dict] = field(default_factory=list)
    decode_attn: list[dict] = field(default_factory=list)
    prefill_attn: list[dict] = field(default_factory=list)
    elementwise: list[dict] = field(default_factory=list)
    collective: list[dict] = field(default_factory=list)
    repeats: int = 10

    FAMILIES = ("gemm", "decode_attn", "prefill_attn", "elementwise", "collective")

    def rows(self) -> list[tuple[str, dict]]:
        return [(fam, shape) for fam in self.FAMILIES for shape in getattr(self, fam)]


def gemm_pairs(tps: tuple[int, ...]) -> list[tuple[int, int]]:
    """(K, N) of every weight matrix one GPU holds, over the catalog and the tp degrees, smallest first."""
    pairs = set()
    for name in model_names():
        m = load_model(name)
        layers = {0} | ({m.moe_layers.index(True)} if any(m.moe_layers) else set())
        for tp in tps:
            if m.heads % tp or (m.kv_heads % tp and tp % m.kv_heads):
                continue
            s = Sharding(tp=tp)
            for layer in layers:
                for lin in attention_linears(m, s, "bf16") + mlp_linears(m, layer, s, "bf16", "bf16"):
                    pairs.add((lin.k, lin.n))
    return sorted(pairs, key=lambda kn: (kn[0] * kn[1], kn))


def head_shapes(tps: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(hq, hkv, hd) per GPU of the catalog's non-MLA models (MLA attention is not SDPA-shaped)."""
    shapes = set()
    for name in model_names():
        m = load_model(name)
        if m.is_mla:
            continue
        for tp in tps:
            if m.heads % tp == 0 and tp <= m.heads:
                shapes.add((m.heads // tp, max(1, m.kv_heads // tp), m.head_dim))
    return sorted(shapes, key=lambda s: (-s[0] * s[2], s))


def _spread(items: list, n: int) -> list:
    """n items evenly spread over a sorted list (first and last kept)."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:1]


def measurement_plan(peak_tflops: dict, quick: bool = False, gpus: int = 1) -> Plan:
    """The plan for a GPU with these peak dtypes (keys as hardware/gpus: bf16, fp8, ...) and `gpus` devices."""
    sw = QUICK if quick else FULL
    dtypes = tuple(d for d in ("bf16", "fp8") if d in peak_tflops)
    plan = Plan(dtypes=dtypes, repeats=sw.repeats)
    pairs = _spread(gemm_pairs(sw.tps), sw.max_gemm_pairs)
    plan.gemm = [{"M": m, "K": k, "N": n, "dtype": d} for d in dtypes for k, n in pairs for m in sw.gemm_m
                 if d != "fp8" or (k % 16 == 0 and n % 16 == 0)]  # fp8 tensor-core GEMMs need multiples of 16
    heads = _spread(head_shapes(sw.tps), sw.heads)
    for hq, hkv, hd in heads:
        for b in sw.decode_b:
            for L in sw.decode_l:
                if b * L * 2 * hkv * hd * BF16 <= sw.max_kv_bytes:
                    plan.decode_attn.append({"B": b, "L": L, "hq": hq, "hkv": hkv, "hd": hd})
        plan.prefill_attn += [{"B": 1, "S": s, "hq": hq, "hkv": hkv, "hd": hd} for s in sw.prefill_s]
    hiddens = sorted({load_model(n).hidden for n in model_names()})
    for hidden in _spread(hiddens, 2):
        for t in sw.elementwise_tokens:
            plan.elementwise += [{"op": op, "tokens": t, "hidden": hidden, "bytes": elementwise_bytes(op, t, hidden)}
                                 for op in ELEMENTWISE]
    if gpus > 1:
        plan.collective = [{"op": op, "gpus": gpus, "bytes": b} for op in COLLECTIVES for b in sw.collective_bytes]
    return plan


# the fields that make a row's shape, per family (the rest of a row is what was measured)
SHAPE_KEYS = {"gemm": ("M", "K", "N"), "decode_attn": ("B", "L", "hq", "hkv", "hd"),
              "prefill_attn": ("B", "S", "hq", "hkv", "hd"), "elementwise": ("op", "tokens", "hidden"),
              "collective": ("op", "bytes")}


def plan_from_file(bench: dict, peak_tflops: dict, gpus: int = 1, repeats: int = FULL.repeats) -> Plan:
    """The shapes of an existing microbenchmark file (its rows' shape fields, not their timings), to time
    another GPU like for like (`simcore profile --shapes`): every GEMM shape in each dtype this GPU has
    (fp8 only where K and N are multiples of 16), and the file's attention, elementwise and (with gpus > 1)
    collective rows. A shape that appears more than once (rows per attention backend) is timed once."""
    dtypes = tuple(d for d in ("bf16", "fp8") if d in peak_tflops)
    plan = Plan(dtypes=dtypes, repeats=repeats)
    for fam, names in SHAPE_KEYS.items():
        seen = []
        for row in bench.get(fam) or []:
            shape = {k: row[k] for k in names}
            if shape not in seen:
                seen.append(shape)
        if fam == "gemm":
            plan.gemm = [{**s, "dtype": d} for d in dtypes for s in seen
                         if d != "fp8" or (s["K"] % 16 == 0 and s["N"] % 16 == 0)]
        elif fam == "elementwise":
            plan.elementwise = [{**s, "bytes": elementwise_bytes(s["op"], s["tokens"], s["hidden"])} for s in seen]
        elif fam == "collective":
            plan.collective = [{"op": s["op"], "gpus": gpus, "bytes": s["bytes"]} for s in seen] if gpus > 1 else []
        else:
            setattr(plan, fam, seen)
    return plan


def elementwise_bytes(op: str, tokens: int, hidden: int) -> int:
    """HBM bytes (reads + writes) of one kernel, bf16: what the Pricer prices it by."""
    x = tokens * hidden * BF16
    if op == "rmsnorm":  # read x and the weight, write y
        return 2 * x + hidden * BF16
    if op == "add":  # residual add: read two, write one
        return 3 * x
    if op == "silu_mul":  # read gate and up (2 x hidden wide), write one
        return 3 * x
    raise ValueError(f"unknown elementwise op {op!r}")
