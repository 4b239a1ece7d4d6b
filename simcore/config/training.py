"""The training workload: one optimizer step of a model under a parallel layout (docs/training.md).

Only plain fields here; cross-field checks against the model, GPU and parallelism live in
`training_problem`, called by `resolve`, so each error names the field and what is allowed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from simcore.config.validation import Strict


class TrainingWorkload(Strict):
    kind: Literal["training"]
    global_batch: int = Field(gt=0, le=2**24)  # sequences per optimizer step, over all data-parallel replicas
    micro_batch: int = Field(default=1, gt=0, le=2**20)  # sequences per micro-batch on one replica
    sequence_length: int = Field(default=2048, gt=0, le=2**24)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    recompute: Literal["none", "selective", "full"] = "none"
    zero_stage: int = Field(default=1, ge=0, le=3)  # 0: plain DDP; 1 optimizer state; 2 + grads; 3 + weights
    context_parallel: int = Field(default=1, gt=0, le=1024)  # ranks splitting each sequence (ring attention); multiplies the GPUs
    sequence_parallel: bool = False  # with tp > 1: norms and dropout on 1/tp of the tokens (RS + AG for AR)
    schedule: Literal["gpipe", "1f1b", "interleaved"] = "1f1b"
    virtual_stages: int = Field(default=1, gt=0, le=1024)  # model chunks per pipeline rank (interleaved only)
    # flash2: FlashAttention-2's kernels (Transformer Engine with NVTE_FUSED_ATTN=0) at attention_prefill.flash2
    # of the flash rate; materialized: scores in HBM (pre-2022 kernels)
    attention: Literal["flash", "flash2", "materialized"] = "flash"
    attention_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # > 0: dropout on the attention probabilities
    hidden_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # > 0: dropout on each block's output before the residual add
    loss_fusion: bool = False  # Megatron-core's cross_entropy_loss_fusion (compiled cross-entropy pieces)
    gemm_precision: Literal["bf16", "fp8"] = "bf16"  # fp8: GEMMs in fp8 where the GPU has it
    grad_reduce_dtype: Literal["fp32", "bf16"] = "fp32"  # Megatron-LM reduces its fp32 main grads by default
    train_tokens: float = Field(default=1e12, gt=0)  # for time_to_train_s


def micro_batches(w: TrainingWorkload, dp: int) -> int:
    """Micro-batches per replica per step (gradient accumulation steps)."""
    return w.global_batch // (w.micro_batch * dp)


def training_problem(w: TrainingWorkload, dp: int, pp: int, tp: int, layers: int, max_position: int | None,
                     fp8_ok: bool) -> str | None:
    """The first inconsistency between the training fields and the job, as one error line, or None."""
    per_step = w.micro_batch * dp
    if w.global_batch % per_step:
        ok = w.global_batch // per_step * per_step
        return (f"field 'workload.global_batch' = {w.global_batch}: must be a multiple of micro_batch x dp = "
                f"{w.micro_batch} x {dp} = {per_step}; allowed: e.g. {ok or per_step} or {ok + per_step}")
    if max_position and w.sequence_length > max_position:
        return (f"field 'workload.sequence_length' = {w.sequence_length}: exceeds max_position_embeddings = "
                f"{max_position}; allowed: 1 to {max_position}")
    if w.virtual_stages > 1 and w.schedule != "interleaved":
        return (f"field 'workload.virtual_stages' = {w.virtual_stages}: only the interleaved schedule has virtual "
                f"stages; allowed with schedule {w.schedule!r}: 1")
    if w.schedule == "interleaved":
        if pp == 1:
            return "field 'workload.schedule' = 'interleaved': needs parallelism.pp > 1; allowed with pp 1: gpipe, 1f1b"
        m = micro_batches(w, dp)
        if m % pp:
            return (f"field 'workload.schedule' = 'interleaved': the {m} micro-batches per replica must be a multiple "
                    f"of pp = {pp} (as in Megatron-LM); allowed: gpipe, 1f1b, or a global_batch giving a multiple")
        if pp * w.virtual_stages > layers:
            return (f"field 'workload.virtual_stages' = {w.virtual_stages}: pp x virtual_stages = "
                    f"{pp * w.virtual_stages} exceeds the {layers} layers; allowed: 1 to {layers // pp}")
    cp = w.context_parallel
    if cp > 1 and w.sequence_length % (2 * cp):
        return (f"field 'workload.context_parallel' = {cp}: the sequence of {w.sequence_length} tokens must split into "
                f"2 x cp = {2 * cp} equal chunks (load-balanced causal split); allowed: a cp with sequence_length "
                f"divisible by 2 x cp")
    if w.sequence_parallel and tp == 1:
        return "field 'workload.sequence_parallel' = true: needs parallelism.tp > 1; allowed with tp 1: false"
    if w.gemm_precision == "fp8" and not fp8_ok:
        return "field 'workload.gemm_precision' = 'fp8': this GPU has no fp8 tensor cores; allowed: bf16"
    return None
