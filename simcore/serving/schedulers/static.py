"""Static batching: admit up to max_num_seqs requests when the replica is empty, prefill them
together, decode until the last one finishes; nothing joins a running batch."""

from __future__ import annotations

from simcore.serving.schedulers import register


@register
class Static:
    name = "static"
    description = "request-level static batches: nothing joins until the whole batch finishes"
    idle_decodes = True  # nothing queued or prefilling: decode_all() alone (schedulers/__init__.py)

    def schedule(self, rep):
        chunks: list = []
        if rep.running == 0:
            rep.admit(10**12, chunks, whole=True)
            if chunks:
                return rep.no_decodes(), chunks
        return rep.decode_all(), chunks
