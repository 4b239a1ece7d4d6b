"""Activation peaks as live sets of tensors: a forward pass from simcore's own op list, and the
sampler's warm-up over full-vocabulary logits.

A peak is the largest set of tensors alive at once, not a constant: the forward pass keeps the
residual stream plus the inputs and outputs of the op running now; the sampler keeps the logits
(as the LM head wrote them and as fp32) plus whatever the step running now allocates. The
sampler steps follow vLLM v0.11's v1 sampler on its profile batch (temperature, top-k and top-p
all on, so the sort path runs) and PyTorch's CUDA sort for many long rows. docs/memory.md
walks through them.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcore.config.experiment import Run
from simcore.ops.builder import stage_ops
from simcore.ops.op import nbytes
from simcore.ops.passes import Pass

# cuBLAS takes its workspace from the PyTorch allocator on the first GEMM (4096 KiB x 8 chunks on
# Hopper, PyTorch's CUBLAS_WORKSPACE_CONFIG default), so it shows in the profiled peak.
CUBLAS_WORKSPACE = 32 * 2**20


@dataclass(frozen=True)
class SamplerStep:
    """One step of the sampler: bytes per logits element it adds, and frees when it ends."""

    name: str
    adds: float
    frees: float = 0.0


def sampler_steps(tp: int = 1) -> tuple[SamplerStep, ...]:
    """vLLM v1 sampler (v0.11) on the profile batch, per element of the [seqs, vocab] logits.

    With tp > 1 the LM head writes a vocab/tp shard that is all-gathered into full logits on
    every rank before sampling (so the sampler's peak does not shrink with tp)."""
    steps = [SamplerStep("lm_head logits (bf16)", 2 / tp if tp > 1 else 2.0)]
    if tp > 1:
        steps.append(SamplerStep("all-gather logits (bf16)", 2.0, frees=2 / tp))
    return tuple(steps) + (
        SamplerStep("logits.to(fp32)", 4.0),
        # torch.sort of >= 128 rows: int64 iota of source indices, CUB's alternate key (fp32) and
        # value (int64) buffers, and the sorted values (fp32) and indices (int64) it returns.
        SamplerStep("sort (values, indices, iota, CUB buffers)", 4 + 8 + 8 + 12, frees=8 + 12),
        SamplerStep("top-k mask (bool)", 1.0),
        SamplerStep("top-p softmax of sorted logits (fp32)", 4.0),
        SamplerStep("top-p mask (bool)", 1.0),
        SamplerStep("scatter back to vocab order (fp32)", 4.0, frees=4 + 8 + 1 + 4 + 1),
        SamplerStep("softmax probabilities (fp32)", 4.0),
        SamplerStep("exponential noise for sampling (fp32)", 4.0),
    )


def sampler_peak(seqs: int, vocab: int, tp: int = 1) -> tuple[float, str]:
    """(peak bytes, the step where it happens) of sampling `seqs` rows of `vocab` logits."""
    live = peak = 0.0
    where = ""
    for step in sampler_steps(tp):
        live += step.adds
        if live > peak:
            peak, where = live, step.name
        live -= step.frees
    return peak * seqs * vocab, where


def forward_peak(run: Run, stage: int, tokens: int) -> float:
    """Largest live set of a forward pass of `tokens` tokens on one stage: the residual stream plus
    the inputs and outputs of the largest op (simcore's op list, so MoE, MLA and tp shapes count).
    The same on every GPU, so the planner's search over GPUs builds each shape's op list once."""
    key = (run.model, run.par, run.act_dtype, run.weight_dtype, run.expert_dtype, stage, tokens)
    if key not in _FORWARD:
        ops = stage_ops(run, stage, Pass("prefill", 1, tokens))
        largest = max((op.act_bytes for op in ops), default=0.0)
        _FORWARD[key] = largest + tokens * run.model.hidden * nbytes(run.act_dtype)
    return _FORWARD[key]


_FORWARD: dict[tuple, float] = {}


@dataclass(frozen=True)
class ProfilePeak:
    """The activation peak of an engine's profile run on one stage, and what set it."""

    bytes: float
    forward: float  # the forward pass at max_num_batched_tokens
    sampler: float  # hidden states kept + the sampler warm-up (0 off the last stage)
    where: str


def profile_peak(run: Run, stage: int, max_num_batched_tokens: int, max_num_seqs: int,
                 workspace: float = CUBLAS_WORKSPACE) -> ProfilePeak:
    """vLLM's profile run: a forward pass of max_num_batched_tokens tokens, then (on the last stage)
    the sampler on min(max_num_seqs, tokens) rows while the forward's output hidden states and the
    gathered last-token rows stay alive. The peak is the larger of the two, plus cuBLAS's workspace."""
    m = run.model
    a = nbytes(run.act_dtype)
    fwd = forward_peak(run, stage, max_num_batched_tokens)
    samp, where = 0.0, "forward"
    if stage == run.par.pp - 1:
        seqs = min(max_num_seqs, max_num_batched_tokens)
        peak, step = sampler_peak(seqs, m.vocab, run.par.tp)
        samp = (max_num_batched_tokens + seqs) * m.hidden * a + peak
        if samp > fwd:
            where = f"sampler: {step}"
    return ProfilePeak(max(fwd, samp) + workspace, fwd, samp, where)
