"""Run a measurement plan on a backend and write the microbenchmark JSON (`simcore profile`).

A backend is any object with the methods of backend.TorchBackend (identity, gemm,
decode_attn, prefill_attn, elementwise, copy_GBps, h2d_GBps, collectives); tests pass a
fake one, so the whole collector runs without PyTorch or a GPU.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from simcore.calibrate.collect.plan import SHAPE_KEYS, Plan, measurement_plan, plan_from_file
from simcore.errors import SimcoreError

ABOUT = (
    "Measured by `simcore profile` on {gpu} ({stack}). Each figure is the median of {repeats} timed repeats "
    "(CUDA/HIP events); small kernels were captured in {graphs} (no CPU launch overhead) and weights and "
    "activations were rotated through buffers larger than L2, so figures reflect HBM-resident operands. "
    "gemm: x[M,K] @ w[K,N] in `dtype` (fp8: scaled matmul, bf16 output); K, N are the catalog models' weight "
    "matrices per GPU at tp 1-8. decode_attn: {attn}, one query token per sequence, B sequences, L cached "
    "tokens, hq query heads, hkv KV heads, head dim hd (GQA). prefill_attn: causal, S tokens, batch 1. "
    "elementwise: bf16 kernels over tokens x hidden, `bytes` = HBM reads + writes. collective: "
    "torch.distributed (NCCL/RCCL, NCCL_ALGO=Ring) among `gpus` GPUs of this node, `bytes` per rank "
    "(the gathered size for all_gather). device.copy_rw_GBps: device-to-device copy, read + write bytes / "
    "time; device.h2d_GBps: pinned host-to-device copy. Use this to calibrate efficiency curves "
    "(`simcore calibrate`), not as a lookup table."
)


def collect(backend, plan: Plan, progress=None) -> dict:
    """Every plan row timed on `backend`, as the shared calibration format."""
    ident = backend.identity()
    start = time.perf_counter()
    out: dict = {"about": "", "meta": ident, "device": {}}
    rows = plan.rows()
    done = 0
    attn_backends: set[str] = set()
    skipped: list[str] = []
    for fam, shape in rows:
        if fam == "collective":
            continue
        try:
            for row in _measure(backend, fam, shape):
                attn_backends.add(row.get("backend", ""))
                out.setdefault(fam, []).append(row)
        except Exception as exc:  # out of memory, or no kernel for this shape/dtype: skip the row, say so
            skipped.append(f"{fam} {shape}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        done += 1
        if progress:
            progress(done, len(rows))
    if skipped:
        ident["skipped"] = skipped
    if plan.collective:
        try:
            for shape, ms in zip(plan.collective, backend.collectives(plan.collective)):
                out.setdefault("collective", []).append({**shape, "ms": ms})
        except Exception as exc:  # NCCL/RCCL could not start: the other families still stand
            skipped.append(f"collective (all rows): {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            ident["skipped"] = skipped
        done += len(plan.collective)
        if progress:
            progress(done, len(rows))
    out["device"] = {"copy_rw_GBps": backend.copy_GBps(), "h2d_GBps": backend.h2d_GBps()}
    if "bf16" in plan.dtypes:
        ms = backend.gemm(8192, 8192, 8192, "bf16")
        out["device"]["gemm_8192_tflops"] = 2 * 8192**3 / ms / 1e9
    ident["elapsed_s"] = time.perf_counter() - start
    ident["plan"] = {"repeats": plan.repeats, "dtypes": list(plan.dtypes), "rows": len(rows)}
    out["about"] = ABOUT.format(
        gpu=ident.get("gpu", "?"), repeats=plan.repeats,
        stack=", ".join(f"{k} {ident[k]}" for k in ("torch", "cuda", "hip", "driver") if ident.get(k)),
        graphs="CUDA graphs" if ident.get("graphs", True) else "no graphs (capture failed; eager launches)",
        attn=" and ".join(sorted(b for b in attn_backends if b)) or "attention",
    )
    return out


def _measure(backend, fam: str, shape: dict) -> list[dict]:
    if fam == "gemm":
        ms = backend.gemm(shape["M"], shape["K"], shape["N"], shape["dtype"])
        return [{**shape, "ms": ms, "tflops": 2 * shape["M"] * shape["K"] * shape["N"] / ms / 1e9}]
    if fam in ("decode_attn", "prefill_attn"):
        return [{**shape, "backend": name, "ms": ms} for name, ms in getattr(backend, fam)(**shape).items()]
    ms = backend.elementwise(shape["op"], shape["tokens"], shape["hidden"])
    return [{**shape, "ms": ms, "GBps": shape["bytes"] / ms / 1e6}]


def file_name(identity: dict) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(identity.get("gpu", "gpu")).lower()).strip("-") or "gpu"
    return f"{slug}_microbench.json"


def write_profile(out_dir: str | Path, doc: dict) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SimcoreError(f"--out {out_dir}: is a file; --out takes a folder (created if missing)")
    path = out / file_name(doc["meta"])
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")
    except OSError as exc:
        raise SimcoreError(f"--out {out_dir}: cannot write {path}: {exc.strerror}") from None
    return path


def shapes_of(path: str) -> dict:
    """The microbenchmark file `--shapes` names, read for its shapes; a bad file is one line (exit 2)."""
    try:
        bench = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SimcoreError(f"--shapes {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise SimcoreError(f"--shapes {path}: not JSON: {str(exc)[:120]}") from None
    if not isinstance(bench, dict) or not any(isinstance(bench.get(f), list) and bench[f] for f in Plan.FAMILIES):
        raise SimcoreError(f"--shapes {path}: no rows; a microbenchmark file has lists under "
                           f"{', '.join(Plan.FAMILIES)}")
    for fam, need in SHAPE_KEYS.items():
        for i, row in enumerate(bench.get(fam) or []):
            missing = [k for k in need if not isinstance(row, dict) or k not in row]
            bad = [k for k in need if k not in missing and k != "op" and
                   (not isinstance(row[k], int) or isinstance(row[k], bool) or row[k] < 1)]
            if missing or bad:
                what = f"missing {', '.join(missing)}" if missing else f"{bad[0]} = {row[bad[0]]!r:.40}: must be an integer >= 1"
                raise SimcoreError(f"--shapes {path}: {fam}[{i}]: {what}")
    return bench


def profile_main(out_dir: str, quick: bool = False, gpus: int | None = None, backend=None,
                 shapes: str | None = None) -> int:
    """`simcore profile`: open the GPU (exit 2 with one line when there is none), measure, write.
    shapes: a microbenchmark file whose shapes are timed instead of the catalog's plan."""
    from simcore.calibrate.collect.backend import open_backend
    from simcore.report.console import stdout_console

    if gpus is not None and gpus < 1:
        raise SimcoreError(f"--gpus {gpus}: must be >= 1")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise SimcoreError(f"--out {out_dir}: is a file; --out takes a folder (created if missing)")
    bench = shapes_of(shapes) if shapes else None
    backend = backend or open_backend(quick=quick)
    ident = backend.identity()
    visible = int(ident.get("device_count", 1))
    if gpus is not None and gpus > visible:
        raise SimcoreError(f"--gpus {gpus}: only {visible} GPU(s) visible")
    n = gpus or visible
    peak = {d: 1.0 for d in ("bf16", "fp8") if backend.supports(d)}
    if bench is not None:
        plan = plan_from_file(bench, peak, gpus=n, repeats=10 if quick else 30)
    else:
        plan = measurement_plan(peak, quick=quick, gpus=n)
    with _progress() as progress:
        doc = collect(backend, plan, progress)
    if bench is not None:
        doc["meta"]["shapes_from"] = Path(shapes).name
    path = write_profile(out_dir, doc)
    con = stdout_console()
    counts = ", ".join(f"{f} {len(doc[f])}" for f in Plan.FAMILIES if doc.get(f))
    con.print(f"wrote {path} ({counts} rows; {doc['meta']['elapsed_s']:.0f} s)", soft_wrap=True)
    if doc["meta"].get("skipped"):
        con.print(f"skipped {len(doc['meta']['skipped'])} rows (listed under meta.skipped); first: "
                  f"{doc['meta']['skipped'][0]}", soft_wrap=True)
    con.print(f"next: simcore calibrate {path} --gpu <the hardware/gpus name of this {ident.get('gpu', 'GPU')}>",
              soft_wrap=True)
    return 0


class _progress:
    """A transient bar over plan rows on stderr, only when stderr is a terminal."""

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        self.task = None

        def update(done: int, total: int) -> None:
            if self.task is None:
                self.task = self.bar.add_task("rows", total=total)
            self.bar.update(self.task, completed=done)
        return update

    def __exit__(self, *exc):
        if sys.stderr.isatty():
            self.bar.stop()
        return False
