"""ModelSpec: the architecture facts simcore needs, read from a Hugging Face config.json.

Reads the fields under their several HF names (text_config nesting, head_dim fallback,
MoE keys per family, MLA keys, sliding_window + layer_types, quantization_config).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from simcore.config.catalog import entries, resolve
from simcore.config.hf import cache_label, resolve_hf
from simcore.config.validation import clip, read_text
from simcore.errors import SimcoreError

MLA_FIELDS = ("kv_lora_rank", "qk_rope_head_dim")
# Upper bounds on config.json sizes (docs/experiments.md, "Bounds"): past them no real model exists
# and a simulation would not finish.
BOUNDS = {"hidden_size": 2**17, "num_hidden_layers": 1024, "num_attention_heads": 1024, "num_key_value_heads": 1024,
          "head_dim": 4096, "intermediate_size": 2**20, "vocab_size": 2**24, "max_position_embeddings": 2**31 - 1,
          "num_local_experts": 4096, "num_experts_per_tok": 4096, "moe_intermediate_size": 2**20,
          "n_shared_experts": 64, "sliding_window": 2**31 - 1, "kv_lora_rank": 2**16, "q_lora_rank": 2**16,
          "qk_nope_head_dim": 4096, "qk_rope_head_dim": 4096, "v_head_dim": 4096}
BOOLS = ("tie_word_embeddings", "attention_bias", "use_sliding_window")


@dataclass(frozen=True)
class Quantization:
    """Weight quantization from quantization_config; None fields mean 'not quantized'."""

    method: str  # fp8 | mxfp4 | awq | gptq | compressed-tensors | modelopt
    weight_dtype: str  # dtype name of quantized weights: fp8 | mxfp4 | int4 | nvfp4
    experts_only: bool  # only the MLP / expert weights (gpt-oss mxfp4; attention left in 16 bits by the ignore list)
    block: tuple[int, int] | None = None  # fp8 weight_block_size (one fp32 scale per block); None: per channel
    group: int = 128  # int4: inputs per scale group (AWQ / GPTQ 128; compressed-tensors group_size)
    zero_point: bool = True  # int4: asymmetric groups carry a 4-bit zero point (AWQ / GPTQ); symmetric do not
    mlp_quantized: bool = False  # experts_only, but shared experts and dense MLPs are quantized too (attention is not)


@dataclass(frozen=True)
class LinearAttention:
    """Gated DeltaNet layers (Qwen3-Next, Qwen3.5: layer_types 'linear_attention'): a fixed-size recurrent
    state per sequence instead of a growing KV cache. docs/models.md."""

    key_heads: int  # linear_num_key_heads (q and k heads; value heads share them in groups)
    value_heads: int  # linear_num_value_heads: one key_dim x value_dim state matrix each
    key_dim: int  # linear_key_head_dim
    value_dim: int  # linear_value_head_dim
    conv_kernel: int  # linear_conv_kernel_dim: causal depthwise conv over q, k, v (kernel - 1 tokens kept)
    state_dtype: str  # mamba_ssm_dtype of the recurrent state (float32 in Qwen3.5)


@dataclass(frozen=True)
class SparseAttention:
    """DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): a lightning indexer scores every cached token
    with index_heads x index_dim queries against one index_dim key per token, and attention reads only
    the top-k scoring tokens. docs/models.md."""

    index_heads: int  # index_n_heads
    index_dim: int  # index_head_dim
    topk: int  # index_topk


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    architecture: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_position: int
    tie_embeddings: bool
    torch_dtype: str
    attention_bias: bool  # q/k/v (and o) projections carry a bias
    qk_norm: bool  # RMSNorm on q and k (Qwen3; config use_qk_norm)
    # Sliding window: per-layer kinds ('full' | 'sliding') and the window in tokens.
    layer_kinds: tuple[str, ...]
    sliding_window: int | None
    # MLA (DeepSeek): latent KV; zero when the model has no MLA.
    kv_lora_rank: int
    q_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    # MoE: per-layer flags; zero experts means dense.
    moe_layers: tuple[bool, ...]
    num_experts: int
    experts_per_token: int
    moe_intermediate: int
    shared_experts: int
    quantization: Quantization | None
    # qk_norm_type "per_layer" (MiniMax-M2): one RMS over all heads' q (and k) elements, so a TP-sharded
    # projection all-reduces the per-token statistics; otherwise one RMS per head (Qwen3)
    qk_norm_per_layer: bool = False
    shared_intermediate: int = 0  # width of the shared expert(s) when given apart (Qwen: shared_expert_intermediate_size)
    attn_output_gate: bool = False  # full attention's output is gated by a sigmoid of a second q-sized projection
    linear_attention: LinearAttention | None = None  # the 'linear' layers of layer_kinds
    sparse_attention: SparseAttention | None = None

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def attention_type(self) -> str:
        if self.is_mla:
            return "MLA"
        if self.kv_heads == 1:
            return "MQA"
        return "MHA" if self.kv_heads == self.heads else "GQA"

    @property
    def is_hybrid_linear(self) -> bool:
        return self.linear_attention is not None

    def window(self, layer: int) -> int | None:
        return self.sliding_window if self.layer_kinds[layer] == "sliding" else None


def _text_config(raw: dict, source: str) -> dict:
    inner = raw.get("text_config")
    if inner is not None and not isinstance(inner, dict):
        raise SimcoreError(f"{source}: field 'text_config' = {clip(repr(inner))}: must be a JSON object")
    if isinstance(inner, dict):
        merged = {**raw, **inner}
        merged.pop("text_config", None)
        return merged
    return raw


def _first(cfg: dict, *names: str, default=None):
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    return default


def _quantization(cfg: dict, source: str) -> Quantization | None:
    q = cfg.get("quantization_config")
    if not q:
        return None
    if not isinstance(q, dict):
        raise SimcoreError(f"{source}: field 'quantization_config' = {q!r}: must be a JSON object")
    method = str(q.get("quant_method", "")).lower()
    if method == "fp8":
        block = q.get("weight_block_size")
        ok = isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)
        return Quantization("fp8", "fp8", experts_only=False, block=tuple(block) if ok else None)
    if method == "mxfp4":
        return Quantization("mxfp4", "mxfp4", experts_only=True)
    if method in ("awq", "gptq"):
        bits = q.get("bits", q.get("w_bit", 4))
        if bits != 4:
            raise SimcoreError(f"{source}: quantization_config.bits = {bits!r}: only 4-bit {method} is modeled")
        group = q.get("group_size", q.get("q_group_size", 128))
        group = _whole(group, "quantization_config.group_size", source, 1, 2**20) if group != -1 else 2**20
        return Quantization(method, "int4", experts_only=False, group=group)
    if method == "compressed-tensors":
        return _compressed_tensors(q, source)
    if method == "modelopt":  # NVIDIA ModelOpt checkpoints (nvidia/*-NVFP4, *-FP8): quant_algo names the format
        algo = str(q.get("quant_algo", "")).upper()
        dtype = {"NVFP4": "nvfp4", "FP8": "fp8"}.get(algo)
        if dtype is None:
            raise SimcoreError(f"{source}: quantization_config.quant_algo = {algo!r}: allowed NVFP4, FP8 for modelopt")
        ignore = q.get("ignore") or q.get("exclude_modules") or []
        ignore = [str(x) for x in ignore] if isinstance(ignore, list) else []
        experts_only = any("self_attn" in x for x in ignore)
        mlp_kept = any("shared_expert" in x or "mlp" in x for x in ignore)
        return Quantization("modelopt", dtype, experts_only=experts_only, mlp_quantized=experts_only and not mlp_kept)
    raise SimcoreError(
        f"{source}: quantization_config.quant_method = {method!r}: allowed fp8, mxfp4, awq, gptq, compressed-tensors, "
        f"modelopt"
    )


def _compressed_tensors(q: dict, source: str) -> Quantization:
    """compressed-tensors (llm-compressor): fp8 W8A8 schemes, or weight-only int4 groups ("pack-quantized",
    Kimi-K2.5: num_bits 4, type int, strategy group, group_size 32, symmetric; attention, shared experts and
    dense MLPs in its `ignore` list stay 16-bit, so only the routed experts are int4)."""
    groups = q.get("config_groups") or {}
    weights = [g.get("weights") for g in groups.values() if isinstance(g, dict)] if isinstance(groups, dict) else []
    int4 = next((w for w in weights if isinstance(w, dict) and w.get("num_bits") == 4 and w.get("type") == "int"),
                None)
    if int4 is None:
        return Quantization("fp8", "fp8", experts_only=False)
    if int4.get("strategy") == "channel":  # one scale per output channel: a group as wide as any input
        group = 2**20
    else:
        group = _whole(int4.get("group_size") or 128, "quantization_config.group_size", source, 1, 2**20)
    ignore = q.get("ignore") or []
    experts_only = isinstance(ignore, list) and any("self_attn" in str(x) for x in ignore)
    return Quantization("compressed-tensors", "int4", experts_only=experts_only, group=group,
                        zero_point=not int4.get("symmetric", True))


def _whole(value, key: str, source: str, minimum: int, maximum: int) -> int:
    """A config.json integer (a float with no fraction is taken) in [minimum, maximum], or a one-line error."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise SimcoreError(f"{source}: field '{key}' = {clip(repr(value))}: must be an integer >= {minimum} "
                           f"and <= {maximum}")
    return value


def _check_types(cfg: dict, source: str) -> None:
    """Booleans are JSON true/false (a string "no" is not false); strings and lists are what they say."""
    for key in BOOLS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            raise SimcoreError(f"{source}: field '{key}' = {clip(repr(cfg[key]))}: must be true or false")
    for key in ("model_type", "torch_dtype", "dtype"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise SimcoreError(f"{source}: field '{key}' = {clip(repr(cfg[key]))}: must be a string")
    for key in ("architectures", "layer_types"):
        v = cfg.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise SimcoreError(f"{source}: field '{key}' = {clip(repr(v))}: must be a list of strings")


def _layer_kinds(cfg: dict, layers: int, source: str) -> tuple[tuple[str, ...], int | None]:
    window = cfg.get("sliding_window")
    if window is not None:
        window = _whole(window, "sliding_window", source, 1, BOUNDS["sliding_window"])
    types = cfg.get("layer_types")
    if types:
        if len(types) != layers:
            raise SimcoreError(f"{source}: field 'layer_types' has {len(types)} entries; num_hidden_layers = "
                               f"{layers} needs one per layer")
        kinds = tuple("linear" if "linear" in t else "sliding" if "sliding" in t else "full" for t in types)
        if "sliding" in kinds and window is None:
            raise SimcoreError(f"{source}: field 'layer_types' names sliding layers but sliding_window is not set")
        return kinds, (window if "sliding" in kinds else None)
    use = cfg.get("use_sliding_window", True)
    if window and use:
        max_window_layers = cfg.get("max_window_layers")
        if max_window_layers is not None:
            max_window_layers = _whole(max_window_layers, "max_window_layers", source, 0, 2**31 - 1)
        if (cfg.get("model_type") or "").startswith("qwen") and max_window_layers is not None:
            kinds = tuple("sliding" if i >= max_window_layers else "full" for i in range(layers))
        else:
            kinds = ("sliding",) * layers
        return kinds, window
    return ("full",) * layers, None


def _moe_layers(cfg: dict, layers: int, experts: int, source: str) -> tuple[bool, ...]:
    if not experts:
        return (False,) * layers
    first_dense = _whole(cfg.get("first_k_dense_replace", 0) or 0, "first_k_dense_replace", source, 0, layers)
    freq = _whole(_first(cfg, "moe_layer_freq", "decoder_sparse_step", default=1) or 1, "moe_layer_freq", source,
                  1, max(layers, 1))
    skip = cfg.get("mlp_only_layers") or []
    if not isinstance(skip, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in skip):
        raise SimcoreError(f"{source}: field 'mlp_only_layers' = {clip(repr(skip))}: must be a list of layer indices")
    sparse_skip = set(skip)
    return tuple(i >= first_dense and i % freq == 0 and i not in sparse_skip for i in range(layers))


def parse_config(raw: dict, name: str, source: str) -> ModelSpec:
    cfg = _text_config(raw, source)
    _check_types(cfg, source)

    def need(*keys: str) -> int:
        value = _first(cfg, *keys)
        if value is None:
            raise SimcoreError(f"{source}: missing field '{keys[0]}' in config.json")
        top = BOUNDS.get(keys[0], 2**31 - 1)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= top:
            raise SimcoreError(f"{source}: field '{keys[0]}' = {clip(repr(value))}: must be a positive integer "
                               f"(at most {top})")
        return value

    def opt(*keys: str, default: int, minimum: int = 1) -> int:
        value = _first(cfg, *keys, default=default)
        return _whole(value, keys[0], source, minimum, BOUNDS.get(keys[0], 2**31 - 1))

    hidden = need("hidden_size", "d_model", "n_embd")
    layers = need("num_hidden_layers", "n_layer", "num_layers")
    heads = need("num_attention_heads", "n_head")
    kv_heads = opt("num_key_value_heads", "num_kv_heads", default=heads)
    if heads % kv_heads:
        raise SimcoreError(f"{source}: num_key_value_heads = {kv_heads} must divide num_attention_heads = {heads}")
    if _first(cfg, "head_dim") is None and hidden % heads:
        raise SimcoreError(f"{source}: hidden_size = {hidden} is not a multiple of num_attention_heads = {heads} "
                           f"and head_dim is not given; give head_dim")
    head_dim = opt("head_dim", default=max(hidden // heads, 1))
    experts = opt("num_local_experts", "n_routed_experts", "num_experts", default=0, minimum=0)
    top_k = opt("num_experts_per_tok", "experts_per_token", "moe_topk", default=0, minimum=0)
    if experts and not 0 < top_k <= experts:
        raise SimcoreError(f"{source}: num_experts_per_tok = {top_k!r} must be in 1..{experts}")
    intermediate = opt("intermediate_size", "ffn_dim", default=4 * hidden)
    kinds, window = _layer_kinds(cfg, layers, source)
    arch = (cfg.get("architectures") or [cfg.get("model_type") or "unknown"])[0]
    model_type = str(cfg.get("model_type") or "")
    mla = all(cfg.get(f) for f in MLA_FIELDS)
    mla_dims = {f: opt(f, default=0, minimum=0) for f in ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim",
                                                          "qk_rope_head_dim")} if mla else {}
    if mla:
        mla_dims["v_head_dim"] = opt("v_head_dim", default=head_dim)
    shared_width = opt("shared_expert_intermediate_size", default=0, minimum=0) if experts else 0
    return ModelSpec(
        name=name,
        path=source,
        architecture=arch,
        model_type=model_type,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=need("vocab_size"),
        max_position=opt("max_position_embeddings", "n_positions", "seq_length", default=0, minimum=0),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        torch_dtype=str(_first(cfg, "torch_dtype", "dtype", default="bfloat16")),
        attention_bias=bool(cfg.get("attention_bias", False)) or arch.startswith("Qwen2"),
        qk_norm=model_type.startswith("qwen3") or cfg.get("use_qk_norm") is True,
        layer_kinds=kinds,
        sliding_window=window,
        kv_lora_rank=mla_dims.get("kv_lora_rank", 0),
        q_lora_rank=mla_dims.get("q_lora_rank", 0),
        qk_nope_head_dim=mla_dims.get("qk_nope_head_dim", 0),
        qk_rope_head_dim=mla_dims.get("qk_rope_head_dim", 0),
        v_head_dim=mla_dims.get("v_head_dim", 0),
        moe_layers=_moe_layers(cfg, layers, experts, source),
        num_experts=experts,
        experts_per_token=top_k,
        moe_intermediate=opt("moe_intermediate_size", default=intermediate) if experts else 0,
        shared_experts=(opt("n_shared_experts", "num_shared_experts", default=0, minimum=0) or (1 if shared_width else 0))
        if experts else 0,
        quantization=_quantization(cfg, source),
        qk_norm_per_layer=cfg.get("qk_norm_type") == "per_layer",
        shared_intermediate=shared_width,
        attn_output_gate=cfg.get("attn_output_gate") is True,
        linear_attention=_linear_attention(cfg, kinds, source),
        sparse_attention=_sparse_attention(cfg, source),
    )


def _linear_attention(cfg: dict, kinds: tuple[str, ...], source: str) -> LinearAttention | None:
    if "linear" not in kinds:
        return None
    dims = {}
    for key in ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim"):
        if cfg.get(key) is None:
            raise SimcoreError(f"{source}: layer_types names linear_attention layers but '{key}' is missing "
                               f"(Gated DeltaNet fields of Qwen3-Next / Qwen3.5 configs)")
        dims[key] = _whole(cfg[key], key, source, 1, 4096)
    if dims["linear_num_value_heads"] % dims["linear_num_key_heads"]:
        raise SimcoreError(f"{source}: linear_num_key_heads = {dims['linear_num_key_heads']} must divide "
                           f"linear_num_value_heads = {dims['linear_num_value_heads']}")
    state = str(cfg.get("mamba_ssm_dtype") or "float32")
    state_dtype = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(state)
    if state_dtype is None:
        raise SimcoreError(f"{source}: field 'mamba_ssm_dtype' = {clip(repr(state))}: allowed float32, bfloat16, "
                           f"float16")
    return LinearAttention(dims["linear_num_key_heads"], dims["linear_num_value_heads"], dims["linear_key_head_dim"],
                           dims["linear_value_head_dim"],
                           _whole(cfg.get("linear_conv_kernel_dim", 4), "linear_conv_kernel_dim", source, 1, 64),
                           state_dtype)


def _sparse_attention(cfg: dict, source: str) -> SparseAttention | None:
    if cfg.get("index_topk") is None:
        return None
    if not all(cfg.get(f) for f in MLA_FIELDS):
        raise SimcoreError(f"{source}: field 'index_topk' (DeepSeek Sparse Attention) needs MLA attention "
                           f"(kv_lora_rank, qk_rope_head_dim)")
    return SparseAttention(_whole(cfg.get("index_n_heads"), "index_n_heads", source, 1, 1024),
                           _whole(cfg.get("index_head_dim"), "index_head_dim", source, 1, 4096),
                           _whole(cfg.get("index_topk"), "index_topk", source, 1, 2**31 - 1))


@cache
def load_model(name: str) -> ModelSpec:
    """A catalog name (models/<name>.json), a path to any config.json, or a Hugging Face id
    (simcore/config/hf.py: the catalog's ids, the local HF cache, or a download of config.json)."""
    local = Path(name).expanduser()
    hf = None if os.path.exists(local) or os.path.isdir(local.parent) or name.endswith(".json") else resolve_hf(name)
    path = hf[0] if hf else resolve("model", "models", ".json", name)
    text = read_text(Path(path), "config.json")
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SimcoreError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise SimcoreError(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:  # NaN / Infinity
        raise SimcoreError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise SimcoreError(f"{path}: expected a JSON object of config fields, got a JSON {_json_kind(raw)}")
    label = hf[1] if hf else cache_label(path) or (path.parent.name if path.stem == "config" else path.stem)
    try:
        return parse_config(raw, label, str(path))
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError) as exc:
        # A config.json is user input: a field of the wrong shape must not end in a traceback.
        raise SimcoreError(f"{path}: unsupported value in config.json ({type(exc).__name__}: {exc})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a config.json may hold")


def _json_kind(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def model_names() -> list[str]:
    return list(entries("models", ".json"))
