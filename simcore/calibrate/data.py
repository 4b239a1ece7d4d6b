"""Reading and checking a microbenchmark file (the shared calibration format, docs/calibration.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from simcore.config.validation import read_text
from simcore.errors import SimcoreError

# family -> keys every row must have (positive numbers unless named in TEXT)
ROW_KEYS = {
    "gemm": ("M", "K", "N", "ms"),
    "decode_attn": ("B", "L", "hq", "hkv", "hd", "ms"),
    "prefill_attn": ("B", "S", "hq", "hkv", "hd", "ms"),
    "elementwise": ("op", "bytes", "ms"),
    "collective": ("op", "gpus", "bytes", "ms"),
}
TEXT = {"op", "dtype", "backend"}
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
GEMM_DTYPES = ("bf16", "fp16", "fp8")
# Bounds on a row's numbers: sizes (M, K, N, B, L, S, heads, bytes, gpus) up to 2^40, times from a
# nanosecond to ~3 hours; past them a fit's FLOPs and bytes overflow to inf and its parameters to NaN.
SIZE_RANGE = (1, 2**40)
MS_RANGE = (1e-6, 10**7)
MAX_GBPS = 10**7  # a measured bandwidth, GB/s (as a KV tier's bound)
DEVICE_KEYS = ("copy_rw_GBps", "h2d_GBps")  # measured bandwidths the fit derives efficiencies from


def load(path: str | Path) -> dict:
    """The file as a dict, every row checked; bad input raises one SimcoreError line."""
    p = Path(path)
    if not os.path.exists(p):  # os.path: False, not OSError, for a name too long to look up
        raise SimcoreError(f"calibration file {path}: does not exist; give the JSON `simcore profile` wrote")
    text = read_text(p, "calibration")  # UTF-8, BOM dropped, size bounded: the one user-file reader
    try:
        bench = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimcoreError(f"calibration file {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise SimcoreError(f"calibration file {path}: not JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer past Python's digit limit
        raise SimcoreError(f"calibration file {path}: not JSON ({str(exc):.120})") from None
    check(bench, str(path))
    return bench


def check(bench, where: str) -> None:
    if not isinstance(bench, dict):
        raise SimcoreError(f"calibration file {where}: must be a JSON object with row lists per family")
    if not any(bench.get(f) for f in ROW_KEYS):
        raise SimcoreError(f"calibration file {where}: no rows; expected lists under {', '.join(ROW_KEYS)}")
    for fam, keys in ROW_KEYS.items():
        rows = bench.get(fam, [])
        if not isinstance(rows, list):
            raise SimcoreError(f"calibration file {where}: {fam}: must be a list of rows")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise SimcoreError(f"calibration file {where}: {fam}[{i}]: must be an object with {', '.join(keys)}")
            for k in keys:
                v = row.get(k)
                lo, hi = MS_RANGE if k == "ms" else SIZE_RANGE
                bad = (not isinstance(v, str)) if k in TEXT else (
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi)
                if bad:
                    what = "text" if k in TEXT else f"a number > 0 (allowed: {lo} to {hi})"
                    raise SimcoreError(f"calibration file {where}: {fam}[{i}].{k} = {v!r}: must be {what}")
            for k in ("dtype", "backend"):
                if k in row and not isinstance(row[k], str):
                    raise SimcoreError(f"calibration file {where}: {fam}[{i}].{k} = {row[k]!r}: must be text")
            if fam == "gemm" and row.get("dtype", "bf16") not in GEMM_DTYPES:
                raise SimcoreError(f"calibration file {where}: gemm[{i}].dtype = {row['dtype']!r}: allowed: "
                                   f"{', '.join(GEMM_DTYPES)}")
            if fam == "collective" and row["op"] not in COLLECTIVES:
                raise SimcoreError(f"calibration file {where}: collective[{i}].op = {row['op']!r}: allowed: "
                                   f"{', '.join(COLLECTIVES)}")
    for section in ("meta", "device"):
        if not isinstance(bench.get(section, {}), dict):
            raise SimcoreError(f"calibration file {where}: {section} = {bench[section]!r:.80}: must be an object")
    for k in DEVICE_KEYS:
        v = bench.get("device", {}).get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= MAX_GBPS):
            raise SimcoreError(f"calibration file {where}: device.{k} = {v!r:.80}: must be a number > 0 (GB/s), "
                               f"at most {MAX_GBPS}")
    meta = bench.get("meta", {})
    l2 = meta.get("l2_bytes")
    if l2 is not None and (isinstance(l2, bool) or not isinstance(l2, (int, float)) or not 0 <= l2 <= SIZE_RANGE[1]):
        raise SimcoreError(f"calibration file {where}: meta.l2_bytes = {l2!r:.80}: must be a number >= 0 "
                           f"(allowed: 0 to {SIZE_RANGE[1]})")
