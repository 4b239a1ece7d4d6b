"""The PyTorch backend of `simcore profile`: times kernels on this machine's GPU (NVIDIA or AMD).

torch is imported only here, only when `simcore profile` runs (`pip install 'simcore[profile]'`).
Small kernels are captured in a CUDA/HIP graph, so the figure is the GPU's time and not the
CPU's launch rate; every operand is rotated through enough copies that the working set
exceeds twice the L2 cache, so operands come from HBM as in a real model's layer stream.
"""

from __future__ import annotations

import importlib
import os
import statistics
import subprocess

from simcore.errors import SimcoreError

ATTN_BACKENDS = ("sdpa", "flash_attn", "flashinfer")


def open_backend(quick: bool = False) -> "TorchBackend":
    """The backend on GPU 0, or a one-line SimcoreError (exit 2) saying why there is none."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise SimcoreError("simcore profile needs PyTorch with GPU support: pip install 'simcore[profile]' "
                           "(or a torch build for your CUDA/ROCm version)") from None
    return TorchBackend(torch, repeats=10 if quick else 30)


def describe(torch) -> dict:
    """Identity of GPU 0 from a torch module (raises SimcoreError when it sees no GPU).
    Works on CUDA and ROCm builds: ROCm's torch answers torch.cuda.* too, with torch.version.hip set."""
    hip = getattr(torch.version, "hip", None)
    cuda = getattr(torch.version, "cuda", None)
    if not torch.cuda.is_available():
        build = f"HIP {hip}" if hip else (f"CUDA {cuda}" if cuda else "CPU-only")
        raise SimcoreError(f"no GPU visible to PyTorch {torch.__version__} ({build} build); simcore profile "
                           "measures a GPU: run it on the GPU machine (check nvidia-smi / rocm-smi and CUDA_VISIBLE_DEVICES)")
    p = torch.cuda.get_device_properties(0)
    ident = {
        "gpu": p.name,
        "vendor": "amd" if hip else "nvidia",
        "torch": torch.__version__,
        "cuda": cuda if not hip else None,
        "hip": hip,
        "device": "cuda",
        "device_count": torch.cuda.device_count(),
        "sms": p.multi_processor_count,
        "total_mem_bytes": p.total_memory,
        "l2_bytes": getattr(p, "L2_cache_size", None) or 0,
        "capability": f"{p.major}.{p.minor}",
        "arch": getattr(p, "gcnArchName", None),
    }
    cudnn = getattr(torch.backends, "cudnn", None)
    if cudnn is not None and cudnn.is_available():
        ident["cudnn"] = cudnn.version()
    ident.update(_smi(hip is not None))
    for lib in ("flash_attn", "flashinfer"):
        try:
            ident[lib] = importlib.import_module(lib).__version__
        except Exception:  # not installed, or fails to load against this torch
            pass
    return {k: v for k, v in ident.items() if v is not None}


def _smi(amd: bool) -> dict:
    """Driver and clocks from nvidia-smi / rocm-smi when present (best effort, never fatal)."""
    cmd = (["rocm-smi", "--showdriverversion", "--showmaxclkfreq", "--json"] if amd else
           ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem", "--format=csv,noheader,nounits",
            "-i", "0"])
    try:
        text = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    if amd:
        return {"smi": text[:2000]}
    parts = [s.strip() for s in text.splitlines()[0].split(",")] if text else []
    keys = ("driver", "sm_clock_max_mhz", "mem_clock_max_mhz")
    return dict(zip(keys, parts))


class TorchBackend:
    def __init__(self, torch, repeats: int = 30):
        self.t = torch
        self.info = describe(torch)
        self.repeats = repeats
        self.l2 = int(self.info.get("l2_bytes") or 64 * 2**20)
        self.graphs = True
        self.dev = torch.device("cuda", 0)
        self._fp8 = None

    # -- identity -------------------------------------------------------------------------
    def identity(self) -> dict:
        return {**self.info, "graphs": self.graphs}

    def supports(self, dtype: str) -> bool:
        if dtype == "bf16":
            return True
        if dtype == "fp8" and self._fp8 is None:
            try:
                self._gemm_fn(16, 32, 32, "fp8")(0)
                self._fp8 = True
            except Exception:  # no fp8 tensor cores, or no scaled-matmul kernel in this build
                self._fp8 = False
        return bool(self._fp8) if dtype == "fp8" else False

    # -- timing ---------------------------------------------------------------------------
    def copies(self, nbytes: float) -> int:
        """Operand copies so the rotated working set is at least twice L2 (HBM-resident operands)."""
        return max(2, min(64, int(2 * self.l2 // max(nbytes, 1)) + 1))

    def _time(self, fn, copies: int) -> float:
        """Median ms of one call of fn(i); i picks the rotated copy. Small kernels are graph-captured."""
        t = self.t
        for i in range(copies):
            fn(i)
        t.cuda.synchronize()
        start, end = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
        start.record()
        fn(0)
        end.record()
        end.synchronize()
        once = start.elapsed_time(end)
        inner = max(1, min(200, int(2.0 / max(once, 1e-3))))  # ~2 ms of work per timed replay
        run = self._graph(fn, copies, inner) if self.graphs and once < 1.0 else None
        times = []
        for _ in range(self.repeats):
            start.record()
            if run is not None:
                run()
            else:
                for j in range(inner):
                    fn(j % copies)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / inner)
        return statistics.median(times)

    def _graph(self, fn, copies: int, inner: int):
        t = self.t
        try:
            g = t.cuda.CUDAGraph()
            side = t.cuda.Stream()
            side.wait_stream(t.cuda.current_stream())
            with t.cuda.stream(side):
                for i in range(copies):
                    fn(i)
            t.cuda.current_stream().wait_stream(side)
            with t.cuda.graph(g):
                for j in range(inner):
                    fn(j % copies)
            return g.replay
        except Exception:  # capture unsupported for this kernel or build: time eager launches
            self.graphs = False
            t.cuda.synchronize()
            return None

    # -- kernels --------------------------------------------------------------------------
    def _gemm_fn(self, m: int, k: int, n: int, dtype: str):
        t = self.t
        c = self.copies((k * n + m * k) * (1 if dtype == "fp8" else 2))
        if dtype == "fp8":
            f8 = t.float8_e4m3fnuz if self.info.get("vendor") == "amd" else t.float8_e4m3fn
            xs = [t.randn(m, k, device=self.dev).to(f8) for _ in range(c)]
            ws = [t.randn(n, k, device=self.dev).to(f8).t() for _ in range(c)]  # column-major, as _scaled_mm wants
            one = t.ones((), device=self.dev)
            return lambda i: t._scaled_mm(xs[i], ws[i], scale_a=one, scale_b=one, out_dtype=t.bfloat16)
        xs = [t.randn(m, k, device=self.dev, dtype=t.bfloat16) for _ in range(c)]
        ws = [t.randn(k, n, device=self.dev, dtype=t.bfloat16) for _ in range(c)]
        outs = [t.empty(m, n, device=self.dev, dtype=t.bfloat16) for _ in range(c)]
        return lambda i: t.matmul(xs[i], ws[i], out=outs[i])

    def gemm(self, m: int, k: int, n: int, dtype: str) -> float:
        c = self.copies((k * n + m * k) * (1 if dtype == "fp8" else 2))
        ms = self._time(self._gemm_fn(m, k, n, dtype), c)
        self.t.cuda.empty_cache()
        return ms

    def _attention(self, b: int, sq: int, skv: int, hq: int, hkv: int, hd: int, causal: bool) -> dict[str, float]:
        t = self.t
        F = t.nn.functional
        kv_bytes = b * skv * 2 * hkv * hd * 2
        c = self.copies(kv_bytes)
        qs = [t.randn(b, hq, sq, hd, device=self.dev, dtype=t.bfloat16) for _ in range(c)]
        ks = [t.randn(b, hkv, skv, hd, device=self.dev, dtype=t.bfloat16) for _ in range(c)]
        vs = [t.randn(b, hkv, skv, hd, device=self.dev, dtype=t.bfloat16) for _ in range(c)]
        out = {"sdpa": self._time(lambda i: F.scaled_dot_product_attention(
            qs[i], ks[i], vs[i], is_causal=causal, enable_gqa=hq != hkv), c)}
        if "flash_attn" in self.info:
            fa = importlib.import_module("flash_attn")
            q2 = [q.transpose(1, 2).contiguous() for q in qs]  # flash_attn wants (B, S, H, D)
            k2 = [k.transpose(1, 2).contiguous() for k in ks]
            v2 = [v.transpose(1, 2).contiguous() for v in vs]
            out["flash_attn"] = self._time(lambda i: fa.flash_attn_func(q2[i], k2[i], v2[i], causal=causal), c)
        del qs, ks, vs
        t.cuda.empty_cache()
        return out

    def decode_attn(self, B: int, L: int, hq: int, hkv: int, hd: int) -> dict[str, float]:
        return self._attention(B, 1, L, hq, hkv, hd, causal=False)

    def prefill_attn(self, B: int, S: int, hq: int, hkv: int, hd: int) -> dict[str, float]:
        return self._attention(B, S, S, hq, hkv, hd, causal=True)

    def elementwise(self, op: str, tokens: int, hidden: int) -> float:
        t = self.t
        F = t.nn.functional
        c = self.copies(3 * tokens * hidden * 2)
        xs = [t.randn(tokens, hidden, device=self.dev, dtype=t.bfloat16) for _ in range(c)]
        ys = [t.randn(tokens, hidden, device=self.dev, dtype=t.bfloat16) for _ in range(c)]
        w = t.ones(hidden, device=self.dev, dtype=t.bfloat16)
        if op == "rmsnorm":
            fn = lambda i: F.rms_norm(xs[i], (hidden,), w)  # noqa: E731
        elif op == "add":
            fn = lambda i: t.add(xs[i], ys[i], out=xs[(i + 1) % c])  # noqa: E731
        else:
            fn = lambda i: F.silu(xs[i]) * ys[i]  # noqa: E731  (unfused: two kernels, as eager engines run it)
        return self._time(fn, c)

    def copy_GBps(self) -> float:
        t = self.t
        n = max(256 * 2**20, 4 * self.l2)
        a, b = t.empty(n, dtype=t.uint8, device=self.dev), t.empty(n, dtype=t.uint8, device=self.dev)
        ms = self._time(lambda i: b.copy_(a), 1)
        return 2 * n / ms / 1e6

    def h2d_GBps(self) -> float:
        t = self.t
        n = 256 * 2**20
        host = t.empty(n, dtype=t.uint8, pin_memory=True)
        dev = t.empty(n, dtype=t.uint8, device=self.dev)
        graphs, self.graphs = self.graphs, False  # a host copy is not a small kernel
        ms = self._time(lambda i: dev.copy_(host, non_blocking=True), 1)
        self.graphs = graphs
        return n / ms / 1e6

    def collectives(self, rows: list[dict]) -> list[float]:
        """Median ms of each collective row, measured by one process per GPU (torch.distributed)."""
        import tempfile

        mp = importlib.import_module("torch.multiprocessing")
        n = rows[0]["gpus"]
        self.t.cuda.empty_cache()  # the workers need GPU 0's memory too
        os.environ.setdefault("NCCL_ALGO", "Ring")  # fit ring constants: no NVLS, no tree
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29531")
        with tempfile.TemporaryDirectory() as tmp:
            result = os.path.join(tmp, "collectives.json")
            mp.spawn(_collective_worker, args=(n, rows, self.repeats, result), nprocs=n, join=True)
            import json

            with open(result) as f:
                return json.load(f)


def _collective_worker(rank: int, world: int, rows: list[dict], repeats: int, result: str) -> None:
    import json

    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    out = []
    for row in rows:
        elems = max(world, row["bytes"] // 2 // world * world)
        x = torch.ones(elems, dtype=torch.bfloat16, device="cuda")
        if row["op"] == "all_reduce":
            fn = lambda: dist.all_reduce(x)  # noqa: E731
        elif row["op"] == "all_gather":
            part = torch.ones(elems // world, dtype=torch.bfloat16, device="cuda")  # own buffer: no aliasing
            fn = lambda: dist.all_gather_into_tensor(x, part)  # noqa: E731
        else:
            y = torch.empty_like(x)
            fn = lambda: dist.all_to_all_single(y, x)  # noqa: E731
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            dist.barrier()
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        out.append(statistics.median(times))
    if rank == 0:
        with open(result, "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()
