"""What a forward pass processes, and how a job's ranks split the model."""

from __future__ import annotations

from dataclasses import dataclass

from simcore.config.experiment import Run


@dataclass(frozen=True)
class Pass:
    """One forward pass over a batch: `new_tokens` per sequence appended to `past` cached tokens."""

    phase: str  # prefill | decode
    batch: int
    new_tokens: int
    past: int = 0

    @property
    def tokens(self) -> int:
        return self.batch * self.new_tokens


@dataclass(frozen=True)
class Group:
    """Sequences in one pass that share a shape: `seqs` sequences, each adding `new` tokens after `past`."""

    phase: str  # prefill (a prompt or a chunk of one) | decode (one token)
    seqs: int
    new: int
    past: int

    @property
    def tokens(self) -> int:
        return self.seqs * self.new


@dataclass(frozen=True)
class Batch:
    """What one forward pass (an engine iteration) processes: any mix of prefill chunks and decodes.

    emitting: sequences that produce a token this pass (the LM head runs on their last position).
    """

    groups: tuple[Group, ...]
    emitting: int

    @property
    def tokens(self) -> int:
        return sum(g.tokens for g in self.groups)

    def of(self, phase: str) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.phase == phase)


def as_batch(ps: "Pass | Batch") -> Batch:
    if isinstance(ps, Batch):
        return ps
    return Batch((Group(ps.phase, ps.batch, ps.new_tokens, ps.past),), emitting=ps.batch)


def window_knee(prompt: int, window: int | None) -> int | None:
    """The decode step (1-based) whose context first reaches a sliding window: from there on the
    cache a layer reads stops growing, so step time and KV traffic change slope."""
    return window - prompt + 1 if window else None


def prefill(batch: int, prompt: int) -> Pass:
    return Pass("prefill", batch, prompt, 0)


def decode(batch: int, past: int) -> Pass:
    return Pass("decode", batch, 1, past)


def stage_layers(layers: int, pp: int) -> list[range]:
    """Even split of layers over pipeline stages; earlier stages take the remainder."""
    base, extra = divmod(layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


def crosses_node(run: Run, first_gpu: int, count: int) -> bool:
    per_node = run.system.cluster.gpus_per_node
    return first_gpu // per_node != (first_gpu + count - 1) // per_node
