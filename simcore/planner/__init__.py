"""Capacity planning: memory per GPU, KV cache capacity, GPU recommendations.

    from simcore.planner import ModelArchitecture, KVCacheDetail, find_gpu_recommendations

Names load on first use: simcore.engine imported simcore.memory (now simcore.memory), and the recommender
imports the engine, so importing everything here eagerly would be circular.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ModelArchitecture": "architecture",
    "model_total_params": "architecture",
    "model_memory_req": "architecture",
    "max_context_len": "architecture",
    "KVCacheDetail": "kv_detail",
    "AttentionType": "kv_detail",
    "LayerKV": "kv_detail",
    "kv_cache_detail": "kv_detail",
    "find_possible_tp": "capacity",
    "plan": "capacity",
    "CapacityPlan": "capacity",
    "recommend_kv_precision": "capacity",
    "KVPrecisionAdvice": "capacity",
    "find_gpu_recommendations": "recommend",
    "Recommendations": "recommend",
    "Option": "recommend",
    "predict": "latency",
    "Prediction": "latency",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'simcore.planner' has no attribute {name!r}")
    return getattr(importlib.import_module(f"simcore.planner.{_EXPORTS[name]}"), name)
