"""`simcore models` and `simcore hardware` listings."""

from __future__ import annotations

from rich.table import Table

from simcore.config.hardware import gpu_names, load_gpu, load_system, profile_info
from simcore.config.model import load_model, model_names
from simcore.ops.kv import kv_bytes_per_token
from simcore.ops.linears import active_params, total_params


def models_table() -> Table:
    t = Table(title="models/ (catalog name, or pass a path to any config.json)", title_justify="left")
    for col in ("name", "architecture", "attention", "params B", "active B", "layers", "hidden", "heads/kv",
                "experts", "window", "max ctx", "KV B/token bf16", "weights"):
        t.add_column(col, justify="left" if col in ("name", "architecture", "attention", "weights") else "right")
    for name in model_names():
        m = load_model(name)
        experts = f"{m.experts_per_token}/{m.num_experts}" + (f"+{m.shared_experts}" if m.shared_experts else "") if m.is_moe else "-"
        t.add_row(
            name, m.architecture, m.attention_type, f"{total_params(m) / 1e9:.2f}",
            f"{active_params(m) / 1e9:.2f}", str(m.layers), str(m.hidden), f"{m.heads}/{m.kv_heads}", experts,
            str(m.sliding_window or "-"), f"{m.max_position:,}", f"{kv_bytes_per_token(m, 'bf16'):,.0f}",
            m.quantization.method if m.quantization else m.torch_dtype,
        )
    return t


def hardware_table() -> Table:
    t = Table(title="hardware/gpus (with the default cluster of each)", title_justify="left")
    for col in ("name", "bf16 TFLOPS", "fp8 TFLOPS", "fp4 TFLOPS", "memory GiB", "HBM GB/s", "GPU link GB/s",
                "host GB/s", "cluster", "GPUs/node", "network GB/s/GPU", "$/GPU-h", "efficiency profile"):
        t.add_column(col, justify="left" if col in ("name", "cluster") else "right")
    for name in gpu_names():
        g = load_gpu(name)
        s = load_system(name)
        pk = g.peak_tflops
        t.add_row(
            name, f"{pk.get('bf16', 0):,.0f}", f"{pk['fp8']:,.0f}" if "fp8" in pk else "-",
            f"{pk['fp4']:,.0f}" if "fp4" in pk else "-", f"{g.memory.capacity_gib:g}", f"{g.memory.bandwidth_gbps:,.0f}",
            f"{s.intra_link.bandwidth_gbps:,.0f} ({s.cluster.intra_node.fabric})", f"{g.links.host.bandwidth_gbps:g}",
            s.cluster.name, str(s.cluster.gpus_per_node), f"{s.inter_link.bandwidth_gbps:g}", f"{g.cost_per_hour_usd:.2f}",
            _profile(profile_info(g)),
        )
    return t


def _profile(info: dict) -> str:
    return info["name"] + (f" (borrowed, +/-{info['error_band']:.0%})" if info["borrowed"] else " (measured)")
