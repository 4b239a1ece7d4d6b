"""Overlap policy 'kv_fetch': KV fetch of layer l+1 runs under the compute of layer l (as inference.kvcache_fetch_overlap)."""

from simcore.engine.policies import OverlapPolicy, register

POLICY = register(OverlapPolicy("kv_fetch", "KV fetch of layer l+1 runs under the compute of layer l (as inference.kvcache_fetch_overlap).", frozenset({"kv_fetch"})))
