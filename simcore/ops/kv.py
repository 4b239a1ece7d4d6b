"""The one home of KV cache sizing. Prefill, decode and the capacity planner all call it."""

from __future__ import annotations

from simcore.config.model import ModelSpec
from simcore.ops.op import nbytes


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads each TP rank stores: sharded while tp <= kv heads, replicated beyond (as vLLM)."""
    return max(1, model.kv_heads // tp)


def kv_elements_per_token(model: ModelSpec, layer: int, tp: int = 1) -> int:
    """Cached elements per token of one layer on one GPU (keys + values, or MLA latent + rope key);
    none on a linear-attention layer, which keeps a fixed-size state instead (state_bytes_per_seq)."""
    if model.layer_kinds[layer] == "linear":
        return 0
    if model.is_mla:
        return model.kv_lora_rank + model.qk_rope_head_dim  # the latent is not sharded by tp
    return 2 * kv_heads_per_gpu(model, tp) * model.head_dim


# DeepSeek Sparse Attention's indexer keeps one fp8 key of index_head_dim per token and layer with one fp32
# scale per 128 values, whatever the KV cache dtype: 128 + 4 = 132 bytes for index_head_dim 128 (SGLang
# NSATokenToKVPool index_k_with_scale_buffer; TensorRT-LLM's DSA cache manager; vLLM's indexer cache)
INDEX_QUANT_BLOCK = 128


def index_bytes_per_token(model: ModelSpec, layer: int) -> float:
    """Indexer key bytes one token adds to `layer` (0 without sparse attention; not split by tp)."""
    sa = model.sparse_attention
    if sa is None or model.layer_kinds[layer] == "linear":
        return 0.0
    return sa.index_dim + -(-sa.index_dim // INDEX_QUANT_BLOCK) * 4


def token_bytes(model: ModelSpec, layer: int, dtype: str, tp: int = 1) -> float:
    """Cache bytes one token adds to one layer on one GPU: keys + values (or latent) and any indexer key."""
    return kv_elements_per_token(model, layer, tp) * nbytes(dtype) + index_bytes_per_token(model, layer)


def attended_tokens(model: ModelSpec, layer: int, tokens: int) -> int:
    """Cached tokens one query's attention reads: the window, DSA's top-k, or all of them."""
    sa = model.sparse_attention
    kept = cached_tokens(model, layer, tokens)
    return min(kept, sa.topk) if sa is not None else kept


def cached_tokens(model: ModelSpec, layer: int, tokens: int) -> int:
    """Tokens a layer keeps: all of them, or at most the window on sliding-window layers."""
    window = model.window(layer)
    return min(tokens, window) if window else tokens


def kv_layer_bytes(model: ModelSpec, layer: int, batch: int, tokens: int, dtype: str, tp: int = 1) -> float:
    """Bytes of keys + values held by one layer for `batch` sequences of `tokens` tokens each."""
    return batch * cached_tokens(model, layer, tokens) * token_bytes(model, layer, dtype, tp)


def kv_bytes(model: ModelSpec, batch: int, tokens: int, dtype: str, tp: int = 1, layers=None) -> float:
    """KV cache bytes over `layers` (default all) on one GPU of a TP group."""
    span = range(model.layers) if layers is None else layers
    return sum(kv_layer_bytes(model, layer, batch, tokens, dtype, tp) for layer in span)


def kv_bytes_per_token(model: ModelSpec, dtype: str, tp: int = 1) -> float:
    """Per-token KV bytes with no window cap (a token's footprint while it is inside every window)."""
    return sum(token_bytes(model, layer, dtype, tp) for layer in range(model.layers))


# -- linear attention (Gated DeltaNet): a fixed-size state per sequence, not per token ----------------
CONV_STATE_DTYPE = "bf16"  # the conv1d's last (kernel - 1) inputs are kept in the model dtype


def linear_heads_per_gpu(model: ModelSpec, tp: int) -> tuple[int, int]:
    """(key heads, value heads) of a linear-attention layer on one TP rank (replicated past tp = heads)."""
    la = model.linear_attention
    return max(1, la.key_heads // tp), max(1, la.value_heads // tp)


def conv_channels(model: ModelSpec, tp: int = 1) -> int:
    """Channels of the causal conv1d on one GPU: q, k (key heads x key_dim each) and v (value heads x value_dim)."""
    la = model.linear_attention
    hk, hv = linear_heads_per_gpu(model, tp)
    return 2 * hk * la.key_dim + hv * la.value_dim


def recurrent_state_bytes(model: ModelSpec, tp: int = 1) -> float:
    """One sequence's recurrent state in one linear layer on one GPU: a key_dim x value_dim matrix per value head."""
    la = model.linear_attention
    return linear_heads_per_gpu(model, tp)[1] * la.key_dim * la.value_dim * nbytes(la.state_dtype)


def state_bytes_per_seq(model: ModelSpec, layer: int, tp: int = 1) -> float:
    """Bytes one sequence keeps in `layer` whatever its length: recurrent state + conv window (0 off linear layers)."""
    if model.linear_attention is None or model.layer_kinds[layer] != "linear":
        return 0.0
    conv = (model.linear_attention.conv_kernel - 1) * conv_channels(model, tp) * nbytes(CONV_STATE_DTYPE)
    return recurrent_state_bytes(model, tp) + conv


def state_bytes(model: ModelSpec, tp: int = 1, layers=None) -> float:
    """Per-sequence state bytes over `layers` (default all) on one GPU of a TP group."""
    span = range(model.layers) if layers is None else layers
    return sum(state_bytes_per_seq(model, layer, tp) for layer in span)
