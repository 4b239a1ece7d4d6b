"""Backward ops derived from a forward op list, and the recompute ops a recomputation choice adds.

Each forward op maps to its gradient kernels, priced by the same roofline:
- GEMM Y = X W: data gradient dX = dY W^T and weight gradient dW = X^T dY, each with the
  forward's FLOPs; the weight gradient accumulates into the main-grad buffer (read + write one
  element per weight: fp32, or the 16-bit weight dtype when gradients are reduced in 16 bits, as
  Megatron-core's DDP allocates it: `grad_dtype = torch.float if grad_reduce_in_fp32 else param.dtype`).
- flash attention: 2.5x the forward FLOPs (the backward runs five matmuls to the forward's two:
  FlashAttention-2, Dao 2023, and flash-attention's benchmarks/benchmark_flash_attention.py,
  `flops(..., mode="bwd") = 2.5 * f`), reading Q, K, V, O, dO and writing dQ, dK, dV.
- fp8 cast of a GEMM input: the cast-transpose of that GEMM's output gradient (read 16-bit, write
  fp8 and its transpose: 4 bytes per element of rows x n).
- context parallelism's merge of the ring steps' outputs: each of the cp steps adds its dQ into an fp32
  accumulator and its dK, dV into the fp32 accumulators that travel the ring (Transformer Engine's
  AttnFuncWithCPAndKVP2P): read 4 + read 2 + write 4 bytes per element of Q, K and V per step.
- a block's residual add (ops/training.py): the residual gradient's sum with the one from the
  block's norm, and with hidden dropout the masked output gradient; the cross-entropy: its own
  backward bytes (ops/training.py).
- attention dropout (materialized attention): read the gradient and the saved mask, write one
  gradient: the forward's bytes.
- elementwise and norms: read the saved input and the incoming gradient, write one gradient:
  twice the forward's bytes.
- collectives: a tensor-parallel all-reduce after a row-parallel GEMM (identity in backward)
  becomes the all-reduce of the column-parallel GEMM's input gradient at the block's start
  (Megatron's f/g operators); with sequence parallelism reduce-scatter and all-gather swap.
  Expert all-to-alls repeat in reverse. Pipeline sends are added by the caller. A column-parallel
  GEMM's reduce-scatter of its data gradient (sequence parallelism) is issued between that GEMM's
  data- and weight-gradient GEMMs, as Transformer Engine's `_LayerNormLinear.backward` does
  (`reduce_scatter_along_first_dim(dgrad, ..., async_op=True)` before the wgrad GEMM; with
  userbuffers its bulk overlap with the wgrad GEMM), so an overlap policy can run it beside the wgrad.
"""

from __future__ import annotations

from dataclasses import replace

from simcore.ops.op import ATTN_PREFILL, COMM, GEMM, Op

BACKWARD, RECOMPUTE = "backward", "recompute"
ATTENTION_BWD_FLOPS = 2.5  # x forward FLOPs (flash-attention benchmarks; FlashAttention-2 paper)
WEIGHT_BYTES = 2.0  # training keeps 16-bit weights (fp8 GEMMs cast a copy)
MAIN_GRAD_BYTES = 4.0  # fp32 main-grad element (the default), read and written by each weight-gradient GEMM
_SWAP = {"reduce_scatter": "all_gather", "all_gather": "reduce_scatter"}
CP_MERGE = "cp_attn_merge"  # shape: (cp, elements of the rank's Q / output, elements of its K and V)
CP_MERGE_BWD_BYTES = 10.0
RESIDUALS = ("attn_residual", "mlp_residual")  # a block's residual add (ops/training.py prices it)
LOSS = "loss"  # the vocabulary-parallel cross-entropy (ops/training.py prices it)
# memory ops whose shape is (forward, backward) bytes per element: their backward is not twice the forward
PER_ELEMENT = (*RESIDUALS, LOSS)


def gemm_backward(op: Op, grad_bytes: float = MAIN_GRAD_BYTES) -> list[Op]:
    m, n, k, *experts = op.shape  # grouped expert GEMMs carry the active-expert count as a fourth field
    weights = op.weight_bytes
    grads = weights / WEIGHT_BYTES * 2 * grad_bytes
    dgrad = replace(op, name=f"{op.name}.dgrad", kind=BACKWARD, shape=(m, k, n, *experts))
    wgrad = replace(op, name=f"{op.name}.wgrad", kind=BACKWARD, shape=(k, n, m, *experts), bytes=op.act_bytes + grads,
                    weight_bytes=0.0)
    return [dgrad, wgrad]


def op_backward(op: Op, grad_bytes: float = MAIN_GRAD_BYTES) -> list[Op]:
    """The gradient kernels of one forward compute op (grad_bytes: one main-grad element)."""
    if op.family == GEMM:
        return gemm_backward(op, grad_bytes)
    if op.family == ATTN_PREFILL:
        return [replace(op, name=f"{op.name}.bwd", kind=BACKWARD, flops=ATTENTION_BWD_FLOPS * op.flops,
                        bytes=2 * op.bytes, act_bytes=2 * op.act_bytes)]
    if op.name.endswith(".fp8_cast"):  # cast-transpose of the output gradient (rows x n), 4 bytes each
        rows, n, _ = op.shape
        return [replace(op, name=f"{op.name}.bwd", kind=BACKWARD, bytes=rows * n * 4.0)]
    if op.name == CP_MERGE:
        cp, out, kv = op.shape
        return [replace(op, name=f"{op.name}.bwd", kind=BACKWARD, bytes=CP_MERGE_BWD_BYTES * cp * (out + kv))]
    if op.name in PER_ELEMENT:  # shape: bytes per element of the forward and of the backward
        fwd, bwd = op.shape
        return [replace(op, name=f"{op.name}.bwd", kind=BACKWARD, bytes=op.bytes * bwd / fwd, act_bytes=0.0)]
    if op.name == "attn_dropout":  # read the gradient and the mask, write one gradient: the forward's bytes
        return [replace(op, name=f"{op.name}.bwd", kind=BACKWARD)]
    return [replace(op, name=f"{op.name}.bwd", kind=BACKWARD, bytes=2 * op.bytes, act_bytes=2 * op.act_bytes)]


ATTENTION_CORE = ("attention", "attn_scores", "attn_softmax", "attn_dropout", "attn_values")  # what selective recompute redoes


def is_attention_core(op: Op) -> bool:
    return op.kind != COMM and op.name in ATTENTION_CORE


def is_block_start(op: Op) -> bool:
    """The op that opens a block whose column-parallel input gradient needs the TP all-reduce."""
    return op.name.endswith("norm") and op.kind != COMM


def backward(forward: list[Op], recompute: str = "none", head_grad: Op | None = None,
             grad_bytes: float = MAIN_GRAD_BYTES) -> list[Op]:
    """Backward of one stage's forward ops (without its pipeline send), in execution order.

    recompute 'full': each layer's forward runs again right before that layer's backward;
    'selective': only the attention core runs again (Korthikanti et al. 2022, 'Reducing
    activation recomputation in large transformer models'). head_grad: the collective that sums the
    LM head's input gradient over TP ranks (the head is column-parallel over the vocabulary).
    grad_bytes: one element of the main-grad buffer the weight gradients accumulate into."""
    out: list[Op] = []
    layers: list[list[Op]] = []
    for op in forward:
        if op.kind == COMM and op.collective == "send_recv":
            continue
        if layers and layers[-1][0].layer == op.layer:
            layers[-1].append(op)
        else:
            layers.append([op])
    for ops in reversed(layers):
        if recompute == "full" and any(is_attention_core(o) for o in ops):  # transformer layers, not the head
            out += [recomputed(o) for o in ops]
        held: list[Op] = []
        for op in reversed(ops):
            if op.kind == COMM:
                if op.collective == "all_reduce" and not op.name.startswith("moe_"):
                    held.append(replace(op, name=f"{op.name}.bwd"))
                else:
                    grad = replace(op, name=f"{op.name}.bwd", collective=_SWAP.get(op.collective, op.collective))
                    if is_tp_grad_scatter(grad) and out and out[-1].name.endswith(".wgrad"):
                        # the reduce-scatter of the GEMM's data gradient is issued between its data- and
                        # weight-gradient GEMMs and runs beside the latter (Transformer Engine's backward)
                        out.insert(len(out) - 1, grad)
                    else:
                        out.append(grad)
                continue
            if is_block_start(op) or op.name == "embedding":
                out += held
                held = []
            if recompute == "selective" and is_attention_core(op):
                out.append(recomputed(op))
            out += op_backward(op, grad_bytes)
            if op.name == "lm_head" and head_grad is not None:
                out.append(head_grad)
        out += held
    return out


def is_tp_grad_scatter(op: Op) -> bool:
    """The backward reduce-scatter of a column-parallel GEMM's input gradient under sequence parallelism
    (the forward's all-gather of that GEMM's input, swapped): not a data-, context- or expert-parallel one."""
    return (op.kind == COMM and op.collective == "reduce_scatter" and op.name.endswith(".bwd")
            and not op.name.startswith(("dp_", "cp_", "moe_")))


def recomputed(op: Op) -> Op:
    return op if op.kind == COMM else replace(op, name=f"{op.name}.recompute", kind=RECOMPUTE)
