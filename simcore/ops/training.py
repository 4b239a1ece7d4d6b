"""Op lists of one training step, per (virtual) pipeline stage and micro-batch.

A TrainingStage is one model chunk: the layers of virtual stage v of pp x virtual_stages
(Megatron-LM's interleaved split; with one chunk per rank, the pipeline stage). Its forward is
the inference builder's prefill ops without the KV cache, with the LM head and loss over every
token; with sequence parallelism each TP all-reduce becomes a reduce-scatter and the next
GEMM's input an all-gather, and norms run on 1/tp of the tokens (Korthikanti et al. 2022).
Backward ops come from simcore.ops.backward. Per step, each chunk also has its data-parallel
gradient collectives (in buckets), its optimizer step over its parameter shard, and under ZeRO
the parameter all-gathers.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

from simcore.config.experiment import Run
from simcore.ops.backward import CP_MERGE, LOSS, RESIDUALS, backward
from simcore.ops.builder import StageBuilder
from simcore.ops.linears import Linear, layer_params, mlp_linears
from simcore.ops.op import COMM, COMPUTE, GEMM, MEMORY, Op, nbytes
from simcore.ops.passes import Batch, Group, stage_layers

OPTIMIZER = "optimizer"
F, B, OPT = "F", "B", "O"  # phases of a unit of training work (forward, backward, optimizer step)
# Bytes moved per parameter of the shard by one optimizer step (fused multi-tensor kernels):
# Adam(W) reads grad, master, m, v (4 x 4) and writes master, m, v (3 x 4) and the 16-bit weight (2);
# SGD with momentum reads grad, master, momentum and writes master, momentum and the weight.
OPTIMIZER_STEP_BYTES = {"adam": 30.0, "adamw": 30.0, "sgd": 22.0}
OPTIMIZER_STATE_BYTES = {"adam": 12.0, "adamw": 12.0, "sgd": 8.0}  # fp32 master + moments per parameter
# Megatron-LM's default gradient bucket: max(40M, 1M x dp) parameters
# (megatron/core/distributed/distributed_data_parallel.py, bucket_size when none is given).
BUCKET_PARAMS = 40_000_000
# Context parallelism's merge of the ring steps' partial attention outputs (Transformer Engine,
# AttnFuncWithCPAndKVP2P): each step after the first rescales the running 16-bit output by the softmax
# statistics and adds the step's output (read both, write one: 3 x 2 bytes per output element); its
# backward (ops/backward.py) accumulates the steps' dQ, dK, dV.
CP_MERGE_FWD_BYTES = 6.0
# The residual add closing each attention and MLP block: Megatron-core's bias-dropout-add
# (megatron/core/fusions/fused_bias_dropout.py, `residual + dropout(x + bias)`), its own kernel after the
# block's last GEMM (and its TP reduction). It reads the block output and the residual and writes the sum;
# with hidden_dropout > 0 it also writes the 1-byte keep mask (ATen's native_dropout returns a bool mask),
# which backward keeps. With p = 0 ATen's dropout returns its input, so only the add runs. Backward: the
# residual stream's gradient is added to the one coming back through the block's norm (autograd sums the
# two uses of the block input: read two, write one) and, with dropout, the block output's gradient is
# masked and scaled (read the gradient and the mask, write one).


class TrainingStage(StageBuilder):
    """Virtual stage `vstage` of `vstages` (= pp x virtual_stages), on pipeline rank vstage % pp."""

    def __init__(self, run: Run, vstage: int, vstages: int):
        super().__init__(run, vstage % run.par.pp)
        self.vstage, self.vstages = vstage, vstages
        self.layers = stage_layers(self.m.layers, vstages)[vstage]
        self.w = w = run.experiment.workload
        self.sp = w.sequence_parallel and run.par.tp > 1
        self.cp = w.context_parallel
        # each context-parallel rank holds 1/cp of every sequence's tokens
        self.batch = Batch((Group("prefill", w.micro_batch, w.sequence_length // self.cp, 0),), emitting=w.micro_batch)
        per_node = run.system.cluster.gpus_per_node
        # Megatron's rank order: tp, then cp, then dp, then pp; gradients are reduced over dp x cp
        self.cp_inter = run.par.tp * self.cp > per_node
        self.dp_group = run.par.dp * self.cp
        self.dp_inter = run.par.tp * self.dp_group > per_node
        # cp and dp x cp groups are strided by tp: a node holds per_node / tp of their ranks
        self.strided = max(1, per_node // run.par.tp)
        # pipeline neighbours are tp x cp x dp GPUs apart; the last rank's sends wrap round to rank 0
        # (the next chunk under interleaving), so they cross nodes whenever the job spans several
        span = run.par.tp * self.dp_group
        rank, nxt, prev = vstage % run.par.pp, (vstage + 1) % run.par.pp, (vstage - 1) % run.par.pp
        self.next_inter = (rank * span) // per_node != (nxt * span) // per_node
        self.prev_inter = (rank * span) // per_node != (prev * span) // per_node

    @property
    def first(self) -> bool:
        return self.vstage == 0

    @property
    def last(self) -> bool:
        return self.vstage == self.vstages - 1

    def compute_dtype(self, weight_dtype: str) -> str:
        return "fp8" if self.w.gemm_precision == "fp8" else self.act

    def input_quant(self, lin, tokens: int, layer: int) -> None:
        return None  # fp8 GEMM inputs are cast by fp8_casts (Transformer Engine's cast-transpose)

    def strided_collective(self, name: str, kind: str, layer: int, size: float, group: int, inter: bool) -> Op | None:
        """A cp or dp x cp collective: across nodes it has per_node / tp ranks on each (Megatron's rank
        order tp, cp, dp, pp), not a packed node's worth, so each rank's NIC carries more of it."""
        op = self.collective(name, kind, layer, size, group, inter)
        return replace(op, per_node=min(group, self.strided)) if op is not None and inter else op

    def kv_ops(self, layer: int, b: Batch) -> list[Op]:
        return []  # training keeps no KV cache: K and V are activations saved for backward

    def prologue(self, b: Batch) -> list[Op]:
        if not self.first:
            return []
        m, t = self.m, b.tokens
        out = [self.elementwise("embedding", -1, 2 * t * m.hidden * self.a),
               self.tp_all_reduce("embedding_all_reduce", -1, t)]
        return [op for op in out if op is not None]

    def epilogue(self, b: Batch) -> list[Op]:
        m, t, a, p = self.m, b.tokens, self.a, self.run.par
        if not self.last:
            size = t * m.hidden * a / (p.tp if self.sp else 1)
            send = self.collective("pp_send", "send_recv", self.layers[-1], size, 2, self.next_inter)
            return [send] if send else []
        vocab = m.vocab // p.tp
        out = [self.elementwise("final_norm", m.layers, 4 * t * m.hidden * a),
               self.head_gemm(t),
               self.cross_entropy(t * vocab),
               self.collective("loss_all_reduce", "all_reduce", m.layers, 3 * t * 4, p.tp, self.tp_inter)]
        return [op for op in out if op is not None]

    def layer_ops(self, layer: int, b: Batch) -> list[Op]:
        attn, mlp = RESIDUALS
        return (self.attention(layer, b) + [self.residual(attn, layer, b)]
                + self.mlp(layer, b) + [self.residual(mlp, layer, b)])

    def residual(self, name: str, layer: int, b: Batch) -> Op:
        """One block's residual add (with dropout when hidden_dropout > 0), as the note on Megatron-core's
        bias-dropout-add at the top of this module prices it; shape carries the bytes per element of its
        forward and of its backward."""
        a, drop = self.a, self.w.hidden_dropout > 0
        fwd = 3 * a + (1.0 if drop else 0.0)
        bwd = 3 * a + (2 * a + 1.0 if drop else 0.0)
        elements = b.tokens * self.m.hidden
        return Op(name, COMPUTE, MEMORY, layer, bytes=elements * fwd, dtype=self.act, shape=(fwd, bwd),
                  act_bytes=2.0 * elements if drop else 0.0)

    def cross_entropy(self, logits: int) -> Op:
        """Megatron-core's vocabulary-parallel cross-entropy over `logits` elements (this rank's vocabulary
        slice), per its source (megatron/core/tensor_parallel/cross_entropy.py, core_r0.8.0): unfused,
        forward runs .float() (read 2, write 4 bytes per element), max (read 4), an in-place subtract
        (read 4, write 4), exp (read 4, write 4), sum (read 4) and the in-place divide (read 4, write 4):
        38 bytes; backward multiplies the saved fp32 softmax by the loss gradient in place (read 4,
        write 4) and autograd casts it back to 16 bits (read 4, write 2): 14. With loss_fusion
        (megatron/core/fusions/fused_cross_entropy.py, each piece one torch.compile kernel): forward
        .float() with max (read 2, write 4), subtract-exp-sum (read 4, write 4), divide (read 4,
        write 4): 22; backward one pass (read 4, write 2): 6. The fp32 softmax is kept for backward."""
        fwd, bwd = (22.0, 6.0) if self.w.loss_fusion else (38.0, 14.0)
        return Op(LOSS, COMPUTE, MEMORY, self.m.layers, bytes=logits * fwd, dtype=self.act, shape=(fwd, bwd),
                  act_bytes=2 * 4.0 * logits)

    def head_gemm(self, tokens: int) -> Op:
        """The LM head GEMM; in 16-bit even with fp8 GEMMs: Megatron-core's output layer is a plain
        ColumnParallelLinear (megatron/core/models/gpt/gpt_model.py), outside Transformer Engine's
        fp8 autocast, which only reaches TE modules."""
        op = self.gemm(Linear("lm_head", self.m.hidden, self.m.vocab // self.run.par.tp, self.run.weight_dtype),
                       tokens, self.m.layers)
        return replace(op, dtype=self.act)

    # -- forward / backward of one micro-batch ------------------------------------------------
    @cached_property
    def forward(self) -> list[Op]:
        ops = self._build(self.batch)
        if self.w.attention == "materialized":
            ops = [new for op in ops for new in (self.materialized(op) if op.name == "attention" else [op])]
        if self.cp > 1:
            ops = [new for op in ops for new in (self.context_parallel(op) if op.name == "attention" else [op])]
        if self.w.attention == "flash2":
            # FlashAttention-2's kernels (Transformer Engine with NVTE_FUSED_ATTN=0, as NeMo-Framework-Launcher
            # 24.07's conf/config.yaml sets for every job): the flash curve at attention_prefill.flash2 of its
            # rate; the third shape field travels to the backward kernel
            rate = self.run.system.efficiency.attention_prefill.flash2
            ops = [replace(op, shape=(*op.shape[:2], rate)) if op.name == "attention" else op for op in ops]
        if self.w.gemm_precision == "fp8":
            ops = fp8_casts(ops)
        if not self.sp:
            return ops
        t, p = self.batch.tokens, self.run.par
        entry = None if self.first else self.collective("input_all_gather", "all_gather", self.layers[0],
                                                          t * self.m.hidden * self.a, p.tp, self.tp_inter)
        return sequence_parallel(ops, p.tp, entry)

    @cached_property
    def backward(self) -> list[Op]:
        """Backward of one micro-batch, ending with the gradient send to the previous stage."""
        t, p = self.batch.tokens, self.run.par
        head = None
        if self.last and p.tp > 1 and not self.sp:
            head = self.collective("lm_head_all_reduce.bwd", "all_reduce", self.m.layers, t * self.m.hidden * self.a,
                                   p.tp, self.tp_inter)
        ops = backward(self.forward, self.w.recompute, head, nbytes(self.w.grad_reduce_dtype))
        if self.w.zero_stage == 3:
            ops = self._gather_params(ops, "backward")
        if not self.first:
            size = t * self.m.hidden * self.a / (p.tp if self.sp else 1)
            send = self.collective("pp_send.bwd", "send_recv", self.layers[0], size, 2, self.prev_inter)
            if send:
                ops = ops + [send]
        return ops

    def context_parallel(self, op: Op) -> list[Op]:
        """Ring attention over cp ranks with the load-balanced causal split (each rank holds chunks i
        and 2cp-1-i): every rank computes 1/cp of the sequence's query-key pairs, after the K and V
        of the other ranks have come round the ring (an all-gather; backward sends dK, dV back:
        the generic backward turns it into a reduce-scatter).

        Transformer Engine runs it as cp attention kernels, one per ring step, each over the rank's
        s/cp query tokens against one step's keys (causal within the rank's own chunks at step 0, then
        half-blocks of s/cp x s/(2cp) or s/(2cp) x s/cp pairs): each kernel is priced on the efficiency
        curve at s/cp, not at s. The steps' partial outputs are merged with their softmax statistics
        (`cp_attn_merge`, below; AttnFuncWithCPAndKVP2P in transformer_engine/pytorch/attention.py)."""
        m, s, b, cp = self.m, self.w.sequence_length, self.w.micro_batch, self.cp
        tokens = b * s // cp
        pairs = b * s * (s + 1) / 2 / cp
        heads = m.heads // self.run.par.tp
        flops = 2.0 * heads * pairs * 2 * m.head_dim
        kv = tokens * 2 * max(1, m.kv_heads // self.run.par.tp) * m.head_dim * self.a
        ring = self.strided_collective("cp_kv_all_gather", "all_gather", op.layer, kv * cp, cp, self.cp_inter)
        tiles, _ = op.shape
        attn = replace(op, flops=flops, bytes=op.bytes + kv * (cp - 1), shape=(tiles, s / cp + 1))  # as a causal s/cp
        out = tokens * heads * m.head_dim  # elements of the rank's attention output (and of dQ)
        merge = Op(CP_MERGE, COMPUTE, MEMORY, op.layer, bytes=CP_MERGE_FWD_BYTES * (cp - 1) * out, dtype=self.act,
                   shape=(cp, out, kv / self.a), act_bytes=0.0)
        return [op for op in (ring, attn, merge) if op is not None]

    def materialized(self, op: Op) -> list[Op]:
        """Attention as kernels before FlashAttention: Q K^T into HBM, a fused scale-mask-softmax over
        the scores, dropout on the probabilities (when attention_dropout > 0), then P V; the batched
        GEMMs compute every score, masked or not. (Flash attention applies dropout in its kernel: no
        extra HBM traffic, so nothing is added there.)"""
        m, a = self.m, self.a
        b, s = self.w.micro_batch, self.w.sequence_length
        heads = m.heads // self.run.par.tp
        d = m.head_dim
        scores = b * heads * s * s * a
        qkv = b * s * heads * d * a
        ops = [
            Op("attn_scores", COMPUTE, GEMM, op.layer, flops=2.0 * b * heads * s * s * d, bytes=2 * qkv + scores,
               dtype=self.act, shape=(s, s, d), act_bytes=2 * qkv + scores),
            Op("attn_softmax", COMPUTE, MEMORY, op.layer, bytes=2 * scores, dtype=self.act, act_bytes=2 * scores),
            Op("attn_values", COMPUTE, GEMM, op.layer, flops=2.0 * b * heads * s * s * d, bytes=scores + 2 * qkv,
               dtype=self.act, shape=(s, d, s), act_bytes=scores + 2 * qkv),
        ]
        if self.w.attention_dropout > 0:
            # its own kernel (Megatron-LM's attention_dropout after the fused softmax): read the
            # probabilities, write the dropped ones and a one-byte mask per score; backward keeps the
            # mask (act_bytes / 2, as for every memory op; P V keeps the dropped probabilities)
            mask = scores / a
            ops.insert(2, Op("attn_dropout", COMPUTE, MEMORY, op.layer, bytes=2 * scores + mask, dtype=self.act,
                             act_bytes=2 * mask))
        return ops

    def forward_ops(self) -> list[Op]:
        return self._gather_params(self.forward, "forward") if self.w.zero_stage == 3 else self.forward

    def _gather_params(self, ops: list[Op], phase: str) -> list[Op]:
        """ZeRO-3: each layer's weights are all-gathered over DP before its first op (not prefetched)."""
        out: list[Op] = []
        seen: set[int] = set()
        for op in ops:
            if op.layer in self.layers and op.layer not in seen:
                seen.add(op.layer)
                g = self.strided_collective(f"dp_param_all_gather.{phase}", "all_gather", op.layer,
                                            self.layer_params(op.layer) * nbytes(self.run.weight_dtype),
                                            self.dp_group, self.dp_inter)
                if g:
                    out.append(g)
            out.append(op)
        return out

    # -- parameters, gradients and the optimizer --------------------------------------------------
    def layer_params(self, layer: int, replicated_only: bool = True) -> int:
        """Parameters of one layer on this GPU; replicated_only: those data parallelism replicates
        (routed experts are spread over the stage's GPUs, so their gradients need no DP reduction)."""
        total = layer_params(self.m, layer, self.shard)
        if replicated_only and self.m.moe_layers[layer]:
            total -= sum(l.params for l in mlp_linears(self.m, layer, self.shard, "bf16", "bf16") if l.routed)
        return total

    def edge_params(self) -> int:
        """Embedding (first chunk) and LM head + final norm (last chunk), split over TP."""
        m, tp = self.m, self.run.par.tp
        n = 0
        if self.first:
            n += m.vocab * m.hidden // tp
        if self.last:
            n += m.hidden
            if not (m.tie_embeddings and self.first):
                n += m.vocab * m.hidden // tp
        return n

    @cached_property
    def params(self) -> int:
        """Every parameter this chunk holds on one GPU (before any ZeRO sharding)."""
        return sum(self.layer_params(l, replicated_only=False) for l in self.layers) + self.edge_params()

    @cached_property
    def replicated_params(self) -> int:
        return sum(self.layer_params(l) for l in self.layers) + self.edge_params()

    def grad_buckets(self) -> list[Op]:
        """The DP gradient collectives of this chunk, in the order backward finishes them (last layer first).

        ZeRO 0: all-reduce; ZeRO >= 1: reduce-scatter (the optimizer owns a 1/dp shard)."""
        p, w, dp = self.run.par, self.w, self.dp_group
        if dp == 1:
            return []
        kind = "all_reduce" if w.zero_stage == 0 else "reduce_scatter"
        per = nbytes(w.grad_reduce_dtype)
        limit = max(BUCKET_PARAMS, 1_000_000 * dp)
        sizes: list[tuple[int, int]] = []  # (params, layer the bucket closes at)
        pending, extra = 0, self.edge_params() if self.last else 0
        pending += extra
        for layer in reversed(self.layers):
            pending += self.layer_params(layer)
            if pending >= limit:
                sizes.append((pending, layer))
                pending = 0
        if self.first:
            pending += self.m.vocab * self.m.hidden // p.tp
        if pending:
            sizes.append((pending, self.layers[0]))
        return [op for n, layer in sizes
                if (op := self.strided_collective("dp_grad_" + kind, kind, layer, n * per, dp, self.dp_inter))]

    def with_buckets(self, ops: list[Op]) -> list[Op]:
        """Backward ops with each gradient bucket issued right after the layer that completes it."""
        buckets = self.grad_buckets()
        out: list[Op] = []
        for i, op in enumerate(ops):
            out.append(op)
            nxt = ops[i + 1] if i + 1 < len(ops) else None
            closing = nxt is None or nxt.layer != op.layer or nxt.collective == "send_recv"
            while buckets and closing and op.kind != COMM and buckets[0].layer == op.layer:
                out.append(buckets.pop(0))
        out += buckets
        if ops and ops[-1].collective == "send_recv":  # the send stays last: the previous stage waits on it
            out.remove(ops[-1])
            out.append(ops[-1])
        return out

    def optimizer_ops(self) -> list[Op]:
        """The optimizer step over this GPU's shard, then (ZeRO 1/2) the all-gather of updated weights."""
        w, dp = self.w, self.dp_group
        shard = self.params if w.zero_stage == 0 else self.params - self.replicated_params + self.replicated_params / dp
        step = Op("optimizer_step", OPTIMIZER, MEMORY, self.m.layers, bytes=shard * OPTIMIZER_STEP_BYTES[w.optimizer])
        out: list[Op | None] = [step]
        if w.zero_stage in (1, 2):
            out.append(self.strided_collective("dp_param_all_gather", "all_gather", self.m.layers,
                                               self.replicated_params * nbytes(self.run.weight_dtype), dp,
                                               self.dp_inter))
        return [op for op in out if op is not None]

    # -- FLOPs ---------------------------------------------------------------------------------
    def flops(self, ops: list[Op]) -> float:
        return sum(op.flops for op in ops if op.kind != COMM)


def sequence_parallel(ops: list[Op], tp: int, entry: Op | None = None) -> list[Op]:
    """Megatron sequence parallelism: TP all-reduce -> reduce-scatter; the next GEMM's input is
    all-gathered; elementwise ops between them run on 1/tp of the tokens. entry: the all-gather of
    a stage whose input arrives sharded (every stage but the first)."""
    out: list[Op] = []
    gather: Op | None = entry
    sharded = entry is not None  # between a reduce-scatter and the next all-gather
    for op in ops:
        if op.kind == COMM and op.collective == "all_reduce" and op.group == tp and not op.name.startswith(("loss", "moe_")):
            out.append(replace(op, name=op.name.replace("all_reduce", "reduce_scatter"), collective="reduce_scatter"))
            gather = replace(op, name=op.name.replace("all_reduce", "all_gather"), collective="all_gather")
            sharded = True
            continue
        if op.family == GEMM and op.kind == COMPUTE and sharded:
            out.append(gather)
            sharded = False
        elif sharded and op.family == MEMORY:
            op = replace(op, bytes=op.bytes / tp, act_bytes=op.act_bytes / tp)
        out.append(op)
    return out


FP8_CAST = ".fp8_cast"


def fp8_casts(ops: list[Op]) -> list[Op]:
    """Each fp8 GEMM's input cast (Transformer Engine's cast-transpose) before it: read the 16-bit
    input, write it in fp8 and its fp8 transpose (the weight-gradient GEMM's operand), 4 bytes per
    element; where a norm or the activation function produces that input, TE fuses the cast into
    it and only the transpose is extra (read 1, write 1). Its backward (ops/backward.py) casts the
    output gradient. Under sequence parallelism the cast runs on the sharded input before the
    all-gather (TE gathers fp8)."""
    out: list[Op] = []
    producer: Op | None = None
    for op in ops:
        if op.kind == COMPUTE and op.family == GEMM and op.dtype == "fp8":
            rows = op.shape[0] * (op.shape[3] if len(op.shape) > 3 else 1)
            n, k = op.shape[1], op.shape[2]
            fused = producer is not None and (producer.name.endswith("norm") or producer.name == "act_fn")
            out.append(Op(f"{op.name}{FP8_CAST}", COMPUTE, MEMORY, op.layer, bytes=rows * k * (2.0 if fused else 4.0),
                          dtype="bf16", shape=(rows, n, k), act_bytes=0.0))
        if op.kind != COMM:
            producer = op
        out.append(op)
    return out
