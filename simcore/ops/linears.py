"""Weight matrices of a layer as one GPU holds them. Op lists and parameter counts share this."""

from __future__ import annotations

from dataclasses import dataclass

from simcore.config.model import ModelSpec
from simcore.ops.kv import conv_channels, kv_heads_per_gpu, linear_heads_per_gpu
from simcore.ops.weight_format import marlin_expert_dims


@dataclass(frozen=True)
class Sharding:
    """How a pipeline stage's GPUs split one layer: tp for attention and dense MLPs, ep x moe_tp for experts.

    adp: attention data-parallel ranks of one replica; its tp x adp GPUs share the experts.
    """

    tp: int = 1
    ep: int = 1
    dp: int = 1
    adp: int = 1

    @staticmethod
    def of(par) -> "Sharding":
        return Sharding(tp=par.tp, ep=par.ep, dp=par.dp, adp=par.attention_dp)

    @property
    def moe_tp(self) -> int:
        return self.tp * self.dp * self.adp // self.ep if self.ep > 1 else self.tp * self.adp


@dataclass(frozen=True)
class Linear:
    name: str
    k: int  # input features on this GPU
    n: int  # output features on this GPU
    dtype: str
    experts: int = 1  # copies held on this GPU (local experts)
    bias: bool = False
    routed: bool = False  # a routed expert: only the experts that get tokens are read

    @property
    def params(self) -> int:
        return self.experts * (self.k * self.n + (self.n if self.bias else 0))


def attention_linears(m: ModelSpec, s: Sharding, dense_dtype: str, layer: int | None = None) -> list[Linear]:
    """The token mixer's linears of `layer` (None: a full-attention layer)."""
    tp = s.tp
    if layer is not None and m.layer_kinds[layer] == "linear":
        return linear_attention_linears(m, tp, dense_dtype)
    if m.is_mla:
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        heads = m.heads // tp
        q_in = m.q_lora_rank or m.hidden
        out = [
            # q_a and kv_a run as one replicated GEMM (every TP rank computes the whole latent).
            Linear("qkv_a_proj", m.hidden, (m.q_lora_rank or 0) + m.kv_lora_rank + m.qk_rope_head_dim, dense_dtype),
            Linear("q_b_proj", q_in, heads * qk, dense_dtype),
            Linear("kv_b_proj", m.kv_lora_rank, heads * (m.qk_nope_head_dim + m.v_head_dim), dense_dtype),
            Linear("o_proj", heads * m.v_head_dim, m.hidden, dense_dtype),
        ]
        if m.sparse_attention is not None:  # DSA's indexer: replicated on every rank (ops/sparse_attention.py)
            sa = m.sparse_attention
            out += [Linear("indexer_q", m.q_lora_rank or m.hidden, sa.index_heads * sa.index_dim, dense_dtype),
                    Linear("indexer_k", m.hidden, sa.index_dim + sa.index_heads, dense_dtype)]
        return out
    q = m.heads // tp * m.head_dim
    kv = kv_heads_per_gpu(m, tp) * m.head_dim
    gate = q if m.attn_output_gate else 0  # Qwen3-Next / Qwen3.5: q_proj also emits the output gate
    return [
        Linear("qkv_proj", m.hidden, q + gate + 2 * kv, dense_dtype, bias=m.attention_bias),
        Linear("o_proj", q, m.hidden, dense_dtype, bias=m.attention_bias and m.model_type == "gpt_oss"),
    ]


def linear_attention_linears(m: ModelSpec, tp: int, dtype: str) -> list[Linear]:
    """Gated DeltaNet (vLLM model_executor/models/qwen3_next.py Qwen3NextGatedDeltaNet): in_proj_qkvz and
    in_proj_ba as one input projection (q, k per key head; v, z per value head; beta, a per value head),
    the depthwise conv1d (kernel x channels, not a GEMM), out_proj from the value heads."""
    la = m.linear_attention
    hk, hv = linear_heads_per_gpu(m, tp)
    width = 2 * hk * la.key_dim + 2 * hv * la.value_dim + 2 * hv
    return [
        Linear("in_proj", m.hidden, width, dtype),
        Linear("conv1d", la.conv_kernel, conv_channels(m, tp), "bf16"),
        Linear("out_proj", hv * la.value_dim, m.hidden, dtype),
    ]


# Architectures whose router is a full-precision linear: vLLM's MiniMax-M2 gate is a ReplicatedLinear with
# params_dtype float32 fed hidden_states.to(float32) (vllm/model_executor/models/minimax_m2.py, MiniMaxM2MoE), run
# at vLLM's default VLLM_FLOAT32_MATMUL_PRECISION "highest" (torch.set_float32_matmul_precision in gpu_worker.py):
# IEEE fp32 on the CUDA cores, not TF32 tensor cores
FP32_ROUTERS = ("minimax_m2",)


def mlp_linears(m: ModelSpec, layer: int, s: Sharding, dense_dtype: str, expert_dtype: str,
                marlin: bool = False) -> list[Linear]:
    """marlin: MXFP4 experts in vLLM's Marlin MoE layout (padded: ops/weight_format.py marlin_expert_dims)."""
    q = m.quantization
    if q is not None and q.mlp_quantized and expert_dtype == q.weight_dtype:  # the checkpoint, run as published
        dense_dtype = expert_dtype  # its dense MLPs and shared experts are quantized like the experts
    if not m.moe_layers[layer]:
        inter = m.intermediate // s.tp
        return [
            Linear("gate_up_proj", m.hidden, 2 * inter, dense_dtype),
            Linear("down_proj", inter, m.hidden, dense_dtype),
        ]
    local = m.num_experts // s.ep
    inter = m.moe_intermediate // s.moe_tp
    hidden = m.hidden
    if marlin and expert_dtype == "mxfp4":
        hidden, inter = marlin_expert_dims(hidden, inter)
    bias = m.model_type == "gpt_oss"
    out = [
        Linear("router", m.hidden, m.num_experts, "fp32" if m.model_type in FP32_ROUTERS else "bf16", bias=bias),
        Linear("experts_gate_up", hidden, 2 * inter, expert_dtype, experts=local, bias=bias, routed=True),
        Linear("experts_down", inter, hidden, expert_dtype, experts=local, bias=bias, routed=True),
    ]
    if m.shared_experts:
        shared = (m.shared_intermediate or m.shared_experts * m.moe_intermediate) // s.tp
        out += [
            Linear("shared_gate_up", m.hidden, 2 * shared, dense_dtype),
            Linear("shared_down", shared, m.hidden, dense_dtype),
        ]
    return out


def norm_params(m: ModelSpec) -> int:
    """Per-layer norm weights (two RMSNorms; MLA's latent norms; Qwen3's per-head q/k norms; gpt-oss sinks)."""
    n = 2 * m.hidden
    if m.is_mla:
        n += (m.q_lora_rank or 0) + m.kv_lora_rank
    if m.qk_norm:  # per head: one weight per head dimension; per layer: one per q and k element
        n += (m.heads + m.kv_heads) * m.head_dim if m.qk_norm_per_layer else 2 * m.head_dim
    if m.model_type == "gpt_oss":
        n += m.heads  # one learned attention-sink logit per head
    return n


def layer_params(m: ModelSpec, layer: int, s: Sharding, dense_dtype="bf16", expert_dtype="bf16") -> int:
    linears = attention_linears(m, s, dense_dtype, layer) + mlp_linears(m, layer, s, dense_dtype, expert_dtype)
    return sum(l.params for l in linears) + norm_params(m)


def total_params(m: ModelSpec) -> int:
    """Parameters of the checkpoint's main model (embedding, layers, final norm, untied lm head)."""
    s = Sharding()
    body = sum(layer_params(m, layer, s) for layer in range(m.layers))
    embed = m.vocab * m.hidden
    return body + embed + m.hidden + (0 if m.tie_embeddings else embed)


def active_params(m: ModelSpec) -> int:
    """Parameters one token touches: routed experts count top-k of E."""
    if not m.is_moe:
        return total_params(m)
    inactive = 0
    for layer in range(m.layers):
        for lin in mlp_linears(m, layer, Sharding(), "bf16", "bf16"):
            if lin.routed:
                inactive += lin.params * (m.num_experts - m.experts_per_token) // m.num_experts
    return total_params(m) - inactive
