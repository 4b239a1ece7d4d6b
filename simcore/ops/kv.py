"""The one home of KV cache sizing. Prefill, decode and the capacity planner all call it."""

from __future__ import annotations

from simcore.config.model import ModelSpec
from simcore.ops.op import nbytes


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads each TP rank stores: sharded while tp <= kv heads, replicated beyond (as vLLM)."""
    return max(1, model.kv_heads // tp)


def kv_elements_per_token(model: ModelSpec, layer: int, tp: int = 1) -> int:
    """Cached elements per token of one layer on one GPU (keys + values, or MLA latent + rope key)."""
    if model.is_mla:
        return model.kv_lora_rank + model.qk_rope_head_dim  # the latent is not sharded by tp
    return 2 * kv_heads_per_gpu(model, tp) * model.head_dim


def cached_tokens(model: ModelSpec, layer: int, tokens: int) -> int:
    """Tokens a layer keeps: all of them, or at most the window on sliding-window layers."""
    window = model.window(layer)
    return min(tokens, window) if window else tokens


def kv_layer_bytes(model: ModelSpec, layer: int, batch: int, tokens: int, dtype: str, tp: int = 1) -> float:
    """Bytes of keys + values held by one layer for `batch` sequences of `tokens` tokens each."""
    return batch * cached_tokens(model, layer, tokens) * kv_elements_per_token(model, layer, tp) * nbytes(dtype)


def kv_bytes(model: ModelSpec, batch: int, tokens: int, dtype: str, tp: int = 1, layers=None) -> float:
    """KV cache bytes over `layers` (default all) on one GPU of a TP group."""
    span = range(model.layers) if layers is None else layers
    return sum(kv_layer_bytes(model, layer, batch, tokens, dtype, tp) for layer in span)


def kv_bytes_per_token(model: ModelSpec, dtype: str, tp: int = 1) -> float:
    """Per-token KV bytes with no window cap (a token's footprint while it is inside every window)."""
    return sum(kv_elements_per_token(model, layer, tp) for layer in range(model.layers)) * nbytes(dtype)
