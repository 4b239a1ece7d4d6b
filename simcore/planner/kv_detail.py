"""KVCacheDetail: a model's KV cache per token, per request and per batch, as the original
capacity planner's users know it. Every size comes from simcore/ops/kv.py; this module only
names and packages them. *_gb fields are GB = 10**9 bytes (docs/planner.md)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from simcore.config.experiment import KVDtype
from simcore.config.model import ModelSpec
from simcore.errors import SimcoreError
from simcore.ops.kv import cached_tokens, kv_bytes, kv_bytes_per_token, kv_layer_bytes
from simcore.ops.op import nbytes

GB = 1e9
KV_DTYPES = typing.get_args(KVDtype)  # auto, bf16, fp16, fp8


class AttentionType(StrEnum):
    MLA = "MLA"  # multi-head latent attention (DeepSeek): one compressed latent per token and layer
    MHA = "MHA"  # as many KV heads as query heads
    GQA = "GQA"  # 1 < KV heads < query heads
    MQA = "MQA"  # one KV head


def positive(name: str, value, allowed: str = "a whole number >= 1") -> int:
    """Check a size given by the user; one-line error naming it, its value and what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SimcoreError(f"{name} = {value!r}: must be {allowed}")
    return value


def kv_dtype_for(kv_dtype: str) -> str:
    """Resolve 'auto' as a run does: the activation dtype, which the planner keeps at bf16."""
    if kv_dtype not in KV_DTYPES:
        raise SimcoreError(f"kv_dtype = {kv_dtype!r}: allowed {', '.join(KV_DTYPES)}")
    return "bf16" if kv_dtype == "auto" else kv_dtype


def check_context(spec: ModelSpec, name: str, tokens: int) -> int:
    """A context length must be >= 1 and within max_position_embeddings (refused, not capped)."""
    positive(name, tokens)
    if spec.max_position and tokens > spec.max_position:
        raise SimcoreError(
            f"{name} = {tokens}: exceeds max_position_embeddings = {spec.max_position} of {spec.name}; "
            f"allowed: 1 to {spec.max_position}"
        )
    return tokens


@dataclass(frozen=True)
class LayerKV:
    """One layer's share of the cache (tp 1)."""

    layer: int
    kind: str  # full | sliding
    window: int | None
    bytes_per_token: int
    cached_tokens: int  # of context_len: capped at the window on sliding layers
    bytes_per_request: int


@dataclass(frozen=True)
class KVCacheDetail:
    model: str
    attention_type: AttentionType
    kv_data_type: str
    precision_in_bytes: int  # 2 for bf16/fp16, 1 for fp8
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dimension: int
    model_architecture: str
    num_attention_group: int  # query heads per KV head (1 for MHA and MLA)
    per_token_memory_bytes: int  # one token in every layer, no window cap
    per_request_kv_cache_bytes: int  # one request of context_len tokens (sliding layers capped)
    per_request_kv_cache_gb: float  # GB = 1e9 bytes
    kv_cache_size_gb: float  # batch_size requests, GB
    context_len: int
    batch_size: int
    sliding_window: int | None = None
    kv_lora_rank: int = 0  # MLA only
    qk_rope_head_dim: int = 0  # MLA only


def layer_breakdown(spec: ModelSpec, context_len: int, kv_dtype: str) -> list[LayerKV]:
    """Per-layer KV: which layers slide, what each holds per token and per request (tp 1)."""
    return [
        LayerKV(layer, spec.layer_kinds[layer], spec.window(layer), int(kv_layer_bytes(spec, layer, 1, 1, kv_dtype)),
                cached_tokens(spec, layer, context_len), int(kv_layer_bytes(spec, layer, 1, context_len, kv_dtype)))
        for layer in range(spec.layers)
    ]


@cache
def kv_cache_detail(spec: ModelSpec, context_length: int = 1, batch_size: int = 1,
                    kv_dtype: str = "auto") -> KVCacheDetail:
    """Memoized per (model, context, batch, dtype): building one is cheap, but sweeps ask often."""
    check_context(spec, "context_length", context_length)
    positive("batch_size", batch_size)
    dtype = kv_dtype_for(kv_dtype)
    per_request = int(kv_bytes(spec, 1, context_length, dtype))
    return KVCacheDetail(
        model=spec.name,
        attention_type=AttentionType(spec.attention_type),
        kv_data_type=dtype,
        precision_in_bytes=int(nbytes(dtype)),
        num_hidden_layers=spec.layers,
        hidden_size=spec.hidden,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        head_dimension=spec.head_dim,
        model_architecture=spec.architecture,
        num_attention_group=spec.heads // spec.kv_heads,
        per_token_memory_bytes=int(kv_bytes_per_token(spec, dtype)),
        per_request_kv_cache_bytes=per_request,
        per_request_kv_cache_gb=per_request / GB,
        kv_cache_size_gb=per_request * batch_size / GB,
        context_len=context_length,
        batch_size=batch_size,
        sliding_window=spec.sliding_window,
        kv_lora_rank=spec.kv_lora_rank,
        qk_rope_head_dim=spec.qk_rope_head_dim,
    )
