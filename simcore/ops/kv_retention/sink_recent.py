"""Attention sinks + recent tokens (StreamingLLM, Xiao et al. 2023): keep the first `sink` tokens
and the last `recent`. Keys are cached before rotary embedding and rotated at their position in
the cache on every step (the paper's "positional embedding on the fly"): one extra read and write
of the retained keys per decode step and layer."""

from simcore.ops.kv import cached_tokens, kv_heads_per_gpu
from simcore.ops.kv_retention import register


class SinkRecent:
    name = "sink_recent"
    description = "keep `sink` first tokens + `recent` last tokens; re-rotate the kept keys each step"

    @staticmethod
    def retained(cfg) -> int:
        return cfg.sink + cfg.recent

    @staticmethod
    def bookkeeping(builder, layer, batch) -> list:
        m = builder.m
        kept = sum(g.seqs * cached_tokens(m, layer, g.past + g.new) for g in batch.of("decode"))
        if not kept:
            return []
        width = (m.kv_lora_rank + m.qk_rope_head_dim) if m.is_mla else kv_heads_per_gpu(m, builder.run.par.tp) * m.head_dim
        return [builder.elementwise("kv_rerotate", layer, 2 * kept * width * builder.kv)]


register(SinkRecent.name, SinkRecent)
