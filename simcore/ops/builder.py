"""Per-rank operator lists for prefill and decode passes.

One pipeline stage's ops are the same on every GPU of its TP group, so a stage's list is
the list of each of its ranks. Dense/GQA/MQA/MHA, MLA (DeepSeek), sliding-window and MoE
layers are built here from the Linear specs in simcore.ops.linears.
"""

from __future__ import annotations

from dataclasses import replace

import math

from simcore.config.experiment import Run
from simcore.config.model import ModelSpec
from simcore.ops import linear_attention, sparse_attention
from simcore.ops.kv_retention import get_retention
from simcore.ops.kv import attended_tokens, cached_tokens, index_bytes_per_token, kv_elements_per_token, kv_heads_per_gpu
from simcore.ops.linears import Linear, Sharding, attention_linears, mlp_linears
from simcore.ops.op import (
    ATTN_DECODE,
    ATTN_PREFILL,
    COLLECTIVE,
    COMM,
    COMPUTE,
    GEMM,
    KV_FETCH,
    KV_STORE,
    MEMORY,
    ROUTING,
    Op,
    nbytes,
)
from simcore.ops.routing import busiest_rank_factor, hit_fraction
from simcore.ops.weight_format import int4_bytes_per_weight, marlin_moe
from simcore.ops.passes import Batch, Group, Pass, as_batch, crosses_node, stage_layers

FLASH_TILE = 128  # query rows per FlashAttention thread block


def attended_pairs(past: int, new: int, window: int | None) -> int:
    """Sum over the new tokens of how many keys each attends to (causal, optionally windowed)."""
    first, last = past + 1, past + new  # keys visible to the first and last new token
    if not window or last <= window:
        return (first + last) * new // 2
    if first >= window:
        return window * new
    below = window - first  # tokens before the window saturates
    return (first + window - 1) * below // 2 + window * (new - below)


class StageBuilder:
    """Builds the op list of one pipeline stage for a pass."""

    def __init__(self, run: Run, stage: int):
        self.run = run
        self.m: ModelSpec = run.model
        p = run.par
        self.stage = stage
        self.layers = stage_layers(self.m.layers, p.pp)[stage]
        self.shard = Sharding.of(p)
        self.adp = p.attention_dp
        # W8A8 quantizes GEMM inputs only: the residual stream, norms, attention, the GEMMs' outputs and the
        # TP collectives stay in 16 bits (vLLM's and TensorRT-LLM's fp8 linear layers return bf16), so
        # activation bytes are 16-bit ones; compute_dtype still runs the GEMM math in fp8
        self.act = run.act_dtype if nbytes(run.act_dtype) >= 2 else "bf16"
        self.a = nbytes(self.act)
        self.kv = nbytes(run.kv_dtype)
        per_node = self.per_node = run.system.cluster.gpus_per_node
        first_gpu = stage * p.tp * p.attention_dp
        self.tp_inter = crosses_node(run, first_gpu, p.tp)
        self.moe_group = p.tp * p.dp * p.attention_dp  # GPUs of one stage that share the experts (with ep > 1)
        self.ep_inter = self.moe_group > per_node
        self.next_inter = stage + 1 < p.pp and crosses_node(run, first_gpu + p.tp - 1, 2)
        e = run.experiment
        self.moe_all_rows = (e.engine.moe_ep_rows or ("all" if e.serving.engine == "vllm" else "local")) == "all"
        self.marlin = marlin_moe(run, e.serving.engine)  # MXFP4 experts in the Marlin MoE kernel's padded layout
        # TensorRT-LLM runs a per-tensor-scaled fp8 linear (QuantAlgo.FP8: a checkpoint without fp8 weight blocks)
        # as torch.ops.trtllm.cublas_scaled_mm on Hopper (_torch/modules/linear.py FP8QDQLinearMethod.apply; its
        # cuda_scaled_mm branch is for SM 89 / 120 only); block-scaled fp8 runs another kernel
        q = self.m.quantization
        self.scaled_mm = e.serving.engine == "trtllm" and not (q is not None and q.block is not None)
        self.kv_tier = run.experiment.inference.kvcache_type
        self.retention = get_retention(run.experiment.inference.kv_retention.policy)  # its bookkeeping ops
        self.kv_split: dict | None = None  # layer -> ((tier, fraction, bytes/s), ...): inference.kv_placement
        self.kv_parallel = False  # a layer's tiers are read at once (engine_parts sets both)
        self._memo: dict[Pass, list[Op]] = {}

    # -- primitives -------------------------------------------------------------------
    def compute_dtype(self, weight_dtype: str) -> str:
        gpu = self.run.system.gpu
        native = {"fp8": "fp8", "int8": "int8", "mxfp4": "fp4", "nvfp4": "fp4", "fp32": "fp32"}.get(weight_dtype)
        return native if native and gpu.supports(native) else self.act

    def stream_bytes(self, weight_dtype: str) -> float:
        """Bytes a GEMM reads per weight: int4 values come with their group scales (ops/weight_format.py);
        weight-only int4 runs as a 16-bit GEMM that dequantizes in the kernel (vLLM's Marlin / Machete paths)."""
        if weight_dtype != "int4":
            return nbytes(weight_dtype)
        q = self.m.quantization
        if q is not None and q.weight_dtype == "int4":
            return int4_bytes_per_weight(q.group, q.zero_point)
        return int4_bytes_per_weight()

    def gemm(self, lin: Linear, tokens: int, layer: int, routed_tokens: int = 0) -> Op:
        """`tokens` rows through `lin`; for routed experts, `routed_tokens` of the whole group."""
        wb = nbytes(lin.dtype)
        if lin.routed:
            rows, active = self.routed(lin, routed_tokens)
            per_expert = max(1.0, rows / max(active, 1e-9))
            shape = (per_expert, lin.n, lin.k, active)  # grouped GEMM: M x N x K per active expert
        else:
            rows, active, per_expert = tokens, 1.0, tokens
            shape = (per_expert, lin.n, lin.k)
        weights = active * lin.k * lin.n * self.stream_bytes(lin.dtype)
        dtype = self.compute_dtype(lin.dtype)
        acts = rows * (lin.k + lin.n) * (4 if dtype == "fp32" else self.a)  # an fp32 linear reads and writes fp32
        return Op(
            lin.name, COMPUTE, GEMM, layer,
            flops=2.0 * rows * lin.k * lin.n,
            bytes=weights + acts,
            dtype=dtype,
            upcast=wb < nbytes(dtype),  # e.g. MXFP4 weights in a bf16 GEMM on Hopper
            scaled_mm=self.scaled_mm and dtype == "fp8" and lin.dtype == "fp8" and not lin.routed,
            shape=shape,
            weight_bytes=weights,
            act_bytes=acts,
        )

    def linear(self, lin: Linear, tokens: int, layer: int) -> list[Op]:
        """A dense linear layer: its input quantization (if any), then its GEMM."""
        quant = self.input_quant(lin, tokens, layer)
        return [quant, self.gemm(lin, tokens, layer)] if quant else [self.gemm(lin, tokens, layer)]

    def input_quant(self, lin: Linear, tokens: int, layer: int) -> Op | None:
        """A W8A8 linear (fp8 / int8 math) quantizes its 16-bit input in a kernel of its own before the
        GEMM: reads the rows in 16 bits, writes them in 8 (per-tensor or per-1x128-block scales are a
        few bytes). TensorRT-LLM _torch/modules/linear.py (FP8QDQLinearMethod.apply:
        static_quantize_e4m3_per_tensor; fp8 block scales on Hopper: fp8_quantize_1x128 before
        fp8_block_scaling_gemm), vLLM Fp8LinearOp (scaled_fp8_quant). Routed experts quantize in
        moe_permute instead; weight-only formats (upcast) compute in 16 bits and need none."""
        q = nbytes(self.compute_dtype(lin.dtype))
        if lin.routed or q >= self.a or tokens <= 0:
            return None
        return self.elementwise(f"{lin.name}_input_quant", layer, tokens * lin.k * (self.a + q))

    def routed(self, lin: Linear, tokens: int) -> tuple[float, float]:
        """(rows, experts that get any) on the busiest expert-parallel rank when `tokens` are routed
        top-k over the group: it behaves like an average rank of a busier step, tokens x imbalance."""
        k, ep = self.m.experts_per_token, self.shard.ep
        busy = busiest_rank_factor(tokens, k, ep)
        rows = tokens * k / ep * busy
        sigma = self.run.experiment.inference.expert_popularity_sigma  # None: the fitted spread
        active = lin.experts * hit_fraction(tokens * busy, k, self.m.num_experts, sigma)
        return rows, min(active, rows)

    def elementwise(self, name: str, layer: int, nbytes_: float, kind: str = COMPUTE) -> Op:
        return Op(name, kind, MEMORY, layer, bytes=nbytes_, dtype=self.act, act_bytes=nbytes_)

    def collective(self, name: str, kind: str, layer: int, size: float, group: int, inter: bool) -> Op | None:
        if group <= 1 or size <= 0:
            return None
        return Op(name, COMM, COLLECTIVE, layer, bytes=size, collective=kind, group=group, inter_node=inter)

    def tp_all_reduce(self, name: str, layer: int, tokens: int) -> Op | None:
        return self.collective(name, "all_reduce", layer, tokens * self.m.hidden * self.a, self.run.par.tp, self.tp_inter)

    # -- attention ----------------------------------------------------------------------
    def kv_ops(self, layer: int, b: Batch) -> list[Op]:
        """Store this pass's new K/V; fetch what attention must read back from the cache."""
        elems = kv_elements_per_token(self.m, layer, self.run.par.tp) * self.kv
        stored = sum(g.seqs * cached_tokens(self.m, layer, g.new) for g in b.groups) * elems
        # A prompt's own K/V come straight from the projection; earlier tokens come from the cache,
        # and a decode reads the whole cache including the token it just stored.
        def read(g: Group) -> int:
            return g.past + g.new if g.phase == "decode" else g.past

        fetched = elems * sum(g.seqs * cached_tokens(self.m, layer, read(g)) for g in b.groups)
        if self.m.sparse_attention is not None:
            # DSA: the indexer reads every cached token's index key, attention only the top-k latent rows
            index = index_bytes_per_token(self.m, layer)
            stored += index * sum(g.seqs * g.new for g in b.groups)
            fetched = sum(g.seqs * (elems * attended_tokens(self.m, layer, read(g))
                                    + index * cached_tokens(self.m, layer, read(g))) for g in b.groups)
        ops = [Op("kv_cache_store", KV_STORE, MEMORY, layer, bytes=stored, kv_bytes=stored, tier=self.kv_tier)]
        if fetched:
            ops.append(
                # The fetch is the attention kernel's read stream: it pays no launch floor of its own.
                Op("kv_cache_fetch", KV_FETCH, MEMORY, layer, bytes=fetched, kv_bytes=fetched,
                   kernel=False, tier=self.kv_tier)
            )
        if self.kv_split is not None:
            ops = [p for op in ops for p in self.placed(op, layer)]
        return ops + self.retention.bookkeeping(self, layer, b)

    def placed(self, op: Op, layer: int) -> list[Op]:
        """A kv_cache op over the tiers its layer's KV lives in: one op per tier (a layer in one tier, or
        split where a tier filled up), or one op at the tiers' combined speed when they are read at once."""
        split = self.kv_split[layer]
        if len(split) == 1 and split[0][0] == "hbm":
            return [op]
        if self.kv_parallel:
            slowest = max(split, key=lambda x: x[1] / x[2])
            return [replace(op, tier=slowest[0], tier_bw=slowest[2] / slowest[1])]
        return [replace(op, bytes=op.bytes * f, kv_bytes=op.kv_bytes * f,
                        **({} if tier == "hbm" else {"tier": tier, "tier_bw": bw})) for tier, f, bw in split]

    def attention_core(self, layer: int, groups: tuple[Group, ...], dk: int, dv: int, q_heads: int) -> Op:
        """One attention kernel over every group of one phase (varlen, as FlashAttention runs a batch)."""
        sparse = self.m.sparse_attention
        window = sparse.topk if sparse is not None else self.m.window(layer)  # top-k keys count as a window does
        pairs = sum(g.seqs * attended_pairs(g.past, g.new, window) for g in groups)
        tokens = sum(g.tokens for g in groups)
        flops = 2.0 * q_heads * pairs * (dk + dv)
        qo = tokens * q_heads * (dk + dv) * self.a
        if groups[0].phase == "decode":
            seqs = sum(g.seqs for g in groups)
            span = sum(g.seqs * attended_tokens(self.m, layer, g.past + g.new) for g in groups) / seqs
            return Op("attention", COMPUTE, ATTN_DECODE, layer, flops=flops, bytes=qo, dtype=self.act,
                      shape=(seqs, q_heads, span), act_bytes=qo)
        kv_heads = q_heads if self.m.is_mla else kv_heads_per_gpu(self.m, self.run.par.tp)
        kv_in = tokens * kv_heads * (dk + dv) * self.a
        tiles = sum(g.seqs * q_heads * math.ceil(g.new / FLASH_TILE) for g in groups)
        seq = 2 * pairs / tokens  # mean keys per query, doubled: S for a fresh causal prompt
        return Op("attention", COMPUTE, ATTN_PREFILL, layer, flops=flops, bytes=qo + kv_in, dtype=self.act,
                  shape=(tiles, seq), act_bytes=qo + kv_in)

    def attention(self, layer: int, b: Batch) -> list[Op]:
        m, t, a = self.m, b.tokens, self.a
        if m.layer_kinds[layer] == "linear":
            return linear_attention.layer_ops(self, layer, b)
        lins = {l.name: l for l in attention_linears(m, self.shard, self.run.weight_dtype)}
        heads = m.heads // self.run.par.tp
        decodes, prefills = b.of("decode"), b.of("prefill")
        ops: list[Op | None] = [self.elementwise("input_norm", layer, 4 * t * m.hidden * a)]
        if m.is_mla:
            ops += self.linear(lins["qkv_a_proj"], t, layer)
            ops.append(self.elementwise("latent_norm", layer, 2 * t * (m.q_lora_rank + m.kv_lora_rank) * a))
            ops += self.linear(lins["q_b_proj"], t, layer)
            ops.append(self.elementwise("rope", layer, 2 * t * (heads + 1) * m.qk_rope_head_dim * a))
            if m.sparse_attention is not None:
                ops += sparse_attention.indexer_ops(self, layer, b)
            ops += self.kv_ops(layer, b)
            kv_b = lins["kv_b_proj"]
            if decodes:
                # Weight absorption: queries move into the latent space, attention runs there (MQA-like).
                td = sum(g.tokens for g in decodes)
                k_part = Linear("q_absorb", m.qk_nope_head_dim, m.kv_lora_rank, kv_b.dtype, experts=heads)
                v_part = Linear("v_absorb", m.kv_lora_rank, m.v_head_dim, kv_b.dtype, experts=heads)
                ops.append(self.batched(k_part, td, layer))
                ops.append(self.attention_core(layer, decodes, m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank, heads))
                ops.append(self.batched(v_part, td, layer))
            if prefills:
                expanded = sum(g.seqs * (g.past + g.new) for g in prefills)
                ops += self.linear(kv_b, expanded, layer)  # expand latent to per-head K, V
                ops.append(self.attention_core(layer, prefills, m.qk_nope_head_dim + m.qk_rope_head_dim, m.v_head_dim, heads))
        else:
            ops += self.linear(lins["qkv_proj"], t, layer)
            qk_width = (heads + kv_heads_per_gpu(m, self.run.par.tp)) * m.head_dim
            if m.qk_norm:
                ops.append(self.elementwise("qk_norm", layer, 2 * t * qk_width * a))
                if m.qk_norm_per_layer:  # each token's fp32 mean square of q and of k, summed over the TP shards
                    ops.append(self.collective("qk_norm_all_reduce", "all_reduce", layer, t * 2 * 4,
                                               self.run.par.tp, self.tp_inter))
            ops.append(self.elementwise("rope", layer, 2 * t * qk_width * a))
            ops += self.kv_ops(layer, b)
            for groups in (prefills, decodes):
                if groups:
                    ops.append(self.attention_core(layer, groups, m.head_dim, m.head_dim, heads))
            if m.attn_output_gate:  # o x sigmoid(gate): read both, write o
                ops.append(self.elementwise("attn_gate", layer, 3 * t * heads * m.head_dim * a))
        ops += self.linear(lins["o_proj"], t, layer)
        ops.append(self.tp_all_reduce("attn_all_reduce", layer, t))
        return [op for op in ops if op is not None]

    def batched(self, lin: Linear, tokens: int, layer: int) -> Op:
        """Per-head batched matmul (one small GEMM per head, all weights read)."""
        weights = lin.experts * lin.k * lin.n * nbytes(lin.dtype)
        acts = tokens * lin.experts * (lin.k + lin.n) * self.a
        return Op(lin.name, COMPUTE, GEMM, layer, flops=2.0 * tokens * lin.experts * lin.k * lin.n,
                  bytes=weights + acts, dtype=self.act, shape=(tokens, lin.n, lin.k),
                  weight_bytes=weights, act_bytes=acts)

    # -- MLP / MoE ---------------------------------------------------------------------
    def mlp(self, layer: int, b: Batch, whole: Batch | None = None) -> list[Op]:
        """`b`: this attention rank's sequences; `whole`: the replica's (differs with attention_dp)."""
        m, t, a = self.m, b.tokens, self.a
        p = self.run.par
        whole = whole or b
        lins = mlp_linears(m, layer, self.shard, self.run.weight_dtype, self.run.expert_dtype, self.marlin)
        by = {l.name: l for l in lins}
        ops: list[Op | None] = [self.elementwise("post_attn_norm", layer, 4 * t * m.hidden * a)]
        if not m.moe_layers[layer]:
            up, down = by["gate_up_proj"], by["down_proj"]
            ops += [*self.linear(up, t, layer), self.elementwise("act_fn", layer, 3 * t * down.k * a),
                    *self.linear(down, t, layer), self.tp_all_reduce("mlp_all_reduce", layer, t)]
            return [op for op in ops if op is not None]
        # tokens routed to this GPU's expert set: with ep > 1 every replica's (and attention rank's) tokens
        group_tokens = whole.tokens * p.dp if p.ep > 1 else whole.tokens
        routed = t * m.experts_per_token * m.hidden * a
        ops.append(self.gemm(by["router"], t, layer))
        ops.append(self.elementwise("topk", layer, t * m.num_experts * 4))
        spread = p.ep > 1 and p.dp * self.adp > 1  # experts on ranks that do not hold these tokens
        a2a = spread and self.run.experiment.engine.moe_dispatch == "all_to_all"
        # attention DP with experts sliced over all of the replica's GPUs (no EP), or vLLM's
        # allgather_reducescatter EP backend: every GPU gathers the other ranks' tokens, runs its
        # experts (or expert slices) on them, and reduce-scatters the outputs
        gathered = not a2a and (self.adp > 1 or spread)
        # the gather runs among the ranks holding different tokens: every GPU of the replica for
        # sliced experts, the DP group (one GPU per attention / DP rank) for vLLM's EP backend
        group = p.dp * self.adp if spread else p.tp * self.adp
        span = self.moe_group if spread else group  # GPUs the gather's ranks are spread over
        if a2a:
            ops.append(self.collective("moe_dispatch", "all_to_all", layer, routed / p.tp, self.moe_group, self.ep_inter))
        if gathered:
            size = whole.tokens * (p.dp if spread else 1) * m.hidden * a
            ops.append(self.collective("moe_all_gather", "all_gather", layer, size, group, span > self.per_node))
        up, down = by["experts_gate_up"], by["experts_down"]
        rows, _ = self.routed(down, group_tokens)
        # vLLM's fused_moe with an expert_map sizes its intermediate buffers for every held token's top-k
        # rows: the grouped GEMMs write zeros for the rows of other ranks' experts, and the activation, its
        # quantization and the top-k sum run over all of them (docs/cost-model.md, "MoE under EP")
        every = group_tokens * m.experts_per_token if self.moe_all_rows and p.ep > 1 and not a2a else rows
        zeros = max(every - rows, 0.0) * (up.n + down.n) * a
        # the expert GEMMs gather their rows by index (fused MoE kernels), so what moves here is the
        # activation quantization when the experts compute in fp8/int8 (the layer's tokens, and the
        # intermediate rows) and the weighted sum of each token's top-k output rows; one chain of
        # small kernels per layer (moe_layer_us)
        quant = nbytes(self.compute_dtype(up.dtype)) if self.compute_dtype(up.dtype) != self.act else 0.0
        quantized = (t * m.hidden + every * down.k) * (a + quant) if quant else 0.0
        moved = quantized + (every + t) * m.hidden * a + zeros
        ops.append(Op("moe_permute", COMPUTE, ROUTING, layer, bytes=moved, dtype=self.act, act_bytes=moved))
        ops.append(self.gemm(up, t, layer, routed_tokens=group_tokens))
        ops.append(self.elementwise("experts_act_fn", layer, 3 * every * down.k * a))
        ops.append(self.gemm(down, t, layer, routed_tokens=group_tokens))
        if a2a:
            ops.append(self.collective("moe_combine", "all_to_all", layer, routed / p.tp, self.moe_group, self.ep_inter))
        if gathered:
            size = whole.tokens * (p.dp if spread else 1) * m.hidden * a
            ops.append(self.collective("moe_reduce_scatter", "reduce_scatter", layer, size, group, span > self.per_node))
        if "shared_gate_up" in by:
            sup, sdown = by["shared_gate_up"], by["shared_down"]
            ops += [*self.linear(sup, t, layer), self.elementwise("shared_act_fn", layer, 3 * t * sdown.k * a),
                    *self.linear(sdown, t, layer)]
        if (p.tp > 1 and spread) or not (a2a or gathered):  # sum the TP peers' experts' outputs
            ops.append(self.tp_all_reduce("moe_all_reduce", layer, t))
        return [op for op in ops if op is not None]

    # -- whole stage -------------------------------------------------------------------
    def ops(self, ps: Pass | Batch) -> list[Op]:
        """The stage's ops for a pass (memoized: micro-batches and repeated steps share lists; do not mutate)."""
        found = self._memo.get(ps)
        if found is None:
            found = self._memo[ps] = self._build(as_batch(ps))
        return found

    def _build(self, b: Batch) -> list[Op]:
        out = self.prologue(b)
        for layer in self.layers:
            out += self.layer_ops(layer, b)
        return out + self.epilogue(b)

    def local(self, b: Batch) -> Batch:
        """The busiest attention-DP rank's share of the replica's batch: sequences are dealt round
        robin over the ranks (as SGLang's and vLLM's DP dispatchers balance them), so rank 0 gets
        every adp-th one. All ranks step together, so the step lasts as long as this rank's."""
        if self.adp == 1:
            return b
        return split_batch(b, self.adp)

    def layer_ops(self, layer: int, b: Batch) -> list[Op]:
        mine = self.local(b)
        return self.attention(layer, mine) + self.mlp(layer, mine, b)

    def layer_classes(self) -> list[tuple[int, int]]:
        """(first layer, count) per class of this stage's layers whose ops are identical but for the
        index: one attention kind (full or sliding) and one MLP kind (dense or MoE)."""
        first: dict[tuple, list[int]] = {}
        for layer in self.layers:
            split = self.kv_split.get(layer) if self.kv_split else None
            entry = first.setdefault((self.m.layer_kinds[layer], self.m.moe_layers[layer], split), [layer, 0])
            entry[1] += 1
        return [(layer, count) for layer, count in first.values()]

    def prologue(self, b: Batch) -> list[Op]:
        b = self.local(b)
        m, t, a = self.m, b.tokens, self.a
        if self.stage != 0:
            return []
        out = [self.elementwise("embedding", -1, 2 * t * m.hidden * a),
               self.tp_all_reduce("embedding_all_reduce", -1, t)]
        if self.adp > 1:
            # attention-DP ranks agree on each step's token counts before the MoE collectives
            # (vLLM's DPMetadata all-reduce, SGLang's DP-attention gather of batch sizes)
            out.append(self.collective("dp_sync", "all_reduce", -1, 8 * self.adp, self.adp,
                                       self.run.par.tp * self.adp > self.per_node))
        return [op for op in out if op is not None]

    def epilogue(self, b: Batch) -> list[Op]:
        b = self.local(b)
        m, t, a = self.m, b.tokens, self.a
        p = self.run.par
        out: list[Op | None] = []
        if self.stage == p.pp - 1:
            out.append(self.elementwise("final_norm", m.layers, 2 * b.emitting * m.hidden * a))
            head = Linear("lm_head", m.hidden, m.vocab // p.tp, self.act)  # checkpoints keep the head unquantized
            out.append(self.gemm(head, b.emitting, m.layers))  # logits for the last token of each sequence
            out.append(self.collective("logits_gather", "all_gather", m.layers, b.emitting * m.vocab // p.tp * 4,
                                       p.tp, self.tp_inter))
            out.append(self.elementwise("sampling", m.layers, b.emitting * m.vocab * 4))
        else:
            out.append(self.collective("pp_send", "send_recv", self.layers[-1], t * m.hidden * a, 2, self.next_inter))
        return [op for op in out if op is not None]


def split_batch(b: Batch, ranks: int) -> Batch:
    """Rank 0's share when the batch's sequences, in order, are dealt round robin over `ranks`."""
    groups, start = [], 0
    for g in b.groups:
        mine = (start + g.seqs + ranks - 1) // ranks - (start + ranks - 1) // ranks  # i in [start, start+seqs), i % ranks == 0
        if mine:
            groups.append(Group(g.phase, mine, g.new, g.past))
        start += g.seqs
    return Batch(tuple(groups), emitting=-(-b.emitting // ranks))


def stage_ops(run: Run, stage: int, ps: Pass | Batch) -> list[Op]:
    return StageBuilder(run, stage).ops(ps)
