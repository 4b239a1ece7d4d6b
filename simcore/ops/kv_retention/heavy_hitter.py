"""Heavy hitters + recent tokens (H2O, Zhang et al. 2023): keep the `heavy` tokens with the largest
accumulated attention and the last `recent`, evicting the lowest score each step. Its bookkeeping,
per decode step and layer: the attention probabilities over the kept tokens are written out (the
fused kernel does not keep them) and read back, and the fp32 score accumulator is read and
written: 4 passes of 4 bytes per kept token and query head. The eviction's arg-min rides on the
accumulator read. An estimate: H2O's own kernels are not public as a serving engine's."""

from simcore.ops.kv import cached_tokens
from simcore.ops.kv_retention import register

PASSES, SCORE_BYTES = 4, 4  # probabilities write + read, accumulator read + write; fp32


class HeavyHitter:
    name = "heavy_hitter"
    description = "keep `heavy` highest-scoring tokens + `recent` last tokens; scores accumulated each step"

    @staticmethod
    def retained(cfg) -> int:
        return cfg.heavy + cfg.recent

    @staticmethod
    def bookkeeping(builder, layer, batch) -> list:
        m = builder.m
        kept = sum(g.seqs * g.new * cached_tokens(m, layer, g.past + g.new) for g in batch.of("decode"))
        if not kept:
            return []
        heads = m.heads // builder.run.par.tp
        return [builder.elementwise("kv_scores", layer, PASSES * SCORE_BYTES * kept * heads)]


register(HeavyHitter.name, HeavyHitter)
