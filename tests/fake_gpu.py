"""A fake `simcore profile` backend: a made-up GPU whose kernel times are simcore's own roofline
with known efficiencies, so the collector runs without torch and calibrate must recover them."""

from __future__ import annotations

from simcore.config import hardware as hw
from simcore.cost import calibration as cal
from simcore.cost.roofline import Pricer

TRUTH = {
    "kernel_floor_us": 6.0, "gemm.compute_max": 0.6, "gemm.m_half": 60.0, "gemm.memory": 0.8,
    "attention_prefill.compute_max": 0.5, "attention_prefill.s_half": 1200.0, "attention_decode_memory": 0.85,
    "gemm.compute_max_fp8": 0.55, "elementwise_floor_us": 3.0, "collectives.ring_link": 0.7,
    "collectives.nccl_step_latency_us": 2.0,
}
COPY, H2D = 0.75, 0.6  # achieved fractions of the HBM and host-link spec


class FakeBackend:
    def __init__(self, gpu: str = "l40s", devices: int = 8, fp8: bool = True, truth: dict = TRUTH):
        system = cal.with_params(hw.load_system(gpu), truth)
        eff = system.efficiency.model_copy(update={"memory": COPY, "host_link": H2D})
        self.system = system.model_copy(update={"efficiency": eff})
        self.pricer = Pricer(self.system)
        self.ring = Pricer(cal.ring_only(self.system), custom_all_reduce=False)
        self.devices, self.fp8 = devices, fp8
        self.calls: list[tuple] = []

    def identity(self) -> dict:
        g = self.system.gpu
        return {"gpu": f"Fake {g.name}", "vendor": g.vendor, "torch": "0.0-fake", "cuda": "0.0", "device": "cuda",
                "device_count": self.devices, "sms": g.sm_count, "total_mem_bytes": int(g.memory.capacity),
                "l2_bytes": 0, "graphs": True}

    def supports(self, dtype: str) -> bool:
        return dtype == "bf16" or (dtype == "fp8" and self.fp8)

    def _ms(self, fam: str, row: dict, pricer=None) -> float:
        self.calls.append((fam, tuple(sorted(row.items()))))
        return sum((pricer or self.pricer).time(op) for op in cal.OPS[fam](row)) * 1e3

    def gemm(self, m, k, n, dtype):
        return self._ms("gemm", {"M": m, "K": k, "N": n, "dtype": dtype})

    def decode_attn(self, **shape):
        return {"sdpa": self._ms("decode_attn", shape)}

    def prefill_attn(self, **shape):
        return {"sdpa": self._ms("prefill_attn", shape)}

    def elementwise(self, op, tokens, hidden):
        from simcore.calibrate.collect.plan import elementwise_bytes

        return self._ms("elementwise", {"op": op, "bytes": elementwise_bytes(op, tokens, hidden)})

    def copy_GBps(self) -> float:
        return COPY * self.system.gpu.memory.bandwidth_gbps

    def h2d_GBps(self) -> float:
        return H2D * self.system.gpu.links.host.bandwidth_gbps

    def collectives(self, rows):
        return [self._ms("collective", r, self.ring) for r in rows]
