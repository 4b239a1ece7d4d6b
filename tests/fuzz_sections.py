"""Hostile experiment sections added after the first fuzzer (tests/fuzz_surfaces.py): training workloads,
speculative decoding, KV retention and placement, engine profiles and versions, mixed-GPU
disaggregation, pipelined replicas, attention data parallelism, all-ranks flattened runs, warm-up."""

from __future__ import annotations

import json
import random

from tests.fuzz_surfaces import SERVING, STATIC, Case, _dump, _set, _value

TRAINING = {"model": "llama-3.2-1b", "hardware": "h100-sxm", "parallelism": {"dp": 2},
            "workload": {"kind": "training", "global_batch": 4, "micro_batch": 1, "sequence_length": 512},
            "engine": {"mode": "analytical"}}
TRAINING_PATHS = {
    "workload.global_batch": [1, 2, 3, 8, 64], "workload.micro_batch": [1, 2, 4],
    "workload.sequence_length": [1, 128, 4096, 131072], "workload.optimizer": ["adam", "sgd", "lion"],
    "workload.recompute": ["none", "selective", "full"], "workload.zero_stage": [0, 1, 2, 3, 4],
    "workload.context_parallel": [1, 2, 4], "workload.sequence_parallel": [True, False],
    "workload.schedule": ["gpipe", "1f1b", "interleaved"], "workload.virtual_stages": [1, 2, 4, 32],
    "workload.attention": ["flash", "materialized"], "workload.gemm_precision": ["bf16", "fp8"],
    "workload.grad_reduce_dtype": ["fp32", "bf16"], "workload.train_tokens": [1.0, 1e12, 1e30],
    "parallelism.tp": [1, 2, 8], "parallelism.pp": [1, 2, 4], "parallelism.dp": [1, 2, 8],
    "parallelism.ep": [1, 2], "model": ["qwen3-30b-a3b", "llama-3.1-8b"], "hardware": ["a100-80gb-sxm", "h200-sxm"],
    "engine.mode": ["analytical", "hybrid", "flattened"], "workload.bogus": [1],
}
# (section path: plausible values) for serving (and, for inference.* and parallelism/engine, static) runs
SECTION_PATHS = {
    "speculative.method": ["none", "draft", "eagle", "mtp", "ngram", "medusa"], "speculative.k": [0, 1, 3, 8, 32, 33],
    "speculative.draft_model": ["llama-3.2-1b", "qwen2.5-7b", "nowhere/config.json"],
    "speculative.acceptance": [0.0, 0.7, 1.0, [0.9, 0.5], [0.8, 0.7, 0.6], {"accepted": [0.2, 0.3, 0.5]},
                               {"accepted": [1.0, 0.0]}, {"accepted": [0.5, 0.6]}],
    "inference.expert_popularity_sigma": [0, 1.2, 4, None],
    "inference.kv_retention.policy": ["full", "sliding_window", "sink_recent", "heavy_hitter", "lru"],
    "inference.kv_retention.window": [1, 16, 4096], "inference.kv_retention.sink": [1, 4],
    "inference.kv_retention.recent": [1, 64, 2044], "inference.kv_retention.heavy": [1, 64],
    "inference.kv_placement.policy": ["hbm", "layer_spill", "block_spread", "disk"],
    "inference.kv_placement.host_gib": [0.001, 1.0, 64.0, 1e6],
    "inference.kv_placement.tier": [{"name": "ssd", "bandwidth_gbps": 12, "capacity_gib": 2000}, {"name": "cxl"}],
    "inference.kv_placement.tier.bandwidth_gbps": [0.001, 12.0, 1e7], "inference.kv_placement.tier.capacity_gib": [1.0],
    "serving.engine": ["vllm", "sglang", "trtllm", "tgi"], "serving.engine_version": ["0.6.0", "0.10.0", "1.0", "x"],
    "serving.engine_profile": ["p.yaml", "missing.yaml"], "serving.eager_layer_us": [0, 600.0, -1, 1e9, "x"],
    "serving.moe_prompt_layer_us": [0, 350.0, -1, 1e9, "x"],
    "serving.cuda_graph_batch_sizes": [[1, 2], [], [0]], "serving.cuda_graph_padding": [True, False, "x", 2],
    "serving.batch_wait_iters": [0, 20, -1, 10**6, "x"], "serving.batch_wait_tokens_ratio": [0.0, 0.9, 1.5, -0.1, "x"],
    "serving.disaggregation.enabled": [True], "serving.disaggregation.prefill_replicas": [1, 2],
    "serving.disaggregation.decode_replicas": [1, 3], "serving.disaggregation.prefill_hardware": ["h200-sxm", "a100-80gb-sxm", "a100-80gb"],
    "serving.disaggregation.decode_hardware": ["h200-sxm", "l4", "b200"],
    "serving.disaggregation.prefill_parallelism.tp": [1, 2], "serving.disaggregation.decode_parallelism.pp": [1, 2],
    "serving.disaggregation.transfer.link": ["auto", "intra_node", "inter_node", "custom"],
    "serving.disaggregation.transfer.bandwidth_gbps": [0.001, 50.0], "serving.disaggregation.transfer.latency_us": [0, 10.0],
    "serving.disaggregation.decode_router": ["least_outstanding", "round_robin", "bogus"],
    "serving.pipeline_batches": [1, 2, 4], "parallelism.pp": [1, 2], "parallelism.tp": [1, 2],
    "parallelism.attention_dp": [1, 2, 8], "parallelism.ep": [1, 2],
    "engine.all_ranks": [True, False], "engine.mode": ["flattened", "hybrid"],
    "workload.arrival.warmup": [0, 1, 5, 19, 20], "workload.arrival.process": ["closed", "poisson"],
    "workload.arrival.concurrency": [1, 4], "model": ["mixtral-8x7b", "llama-3.1-8b"],
    "workload.arrival.reissue_delay_s": [0, 0.04, -1], "workload.arrival.reissue_delay_cv": [2.0, 0, None, "x"],
    "workload.arrival.reissue_delay_dist": ["fixed", "exponential", "lognormal", "gauss"],
}
STATIC_SECTIONS = [p for p in SECTION_PATHS if p.startswith(("inference.", "parallelism.", "engine.", "model"))]
PROFILE = {"engine": "vllm", "engine_version": "0.10.0", "about": "fuzz",
           "host": {"const_us": 200.0, "per_request_us": 5.0, "per_token_us": 0.1}}


# Valid settings of each feature (path: value), one of which a case starts from before its mutations.
PRESETS = [
    {"speculative": {"method": "eagle", "k": 3, "acceptance": [0.8, 0.7, 0.6]}},
    {"speculative": {"method": "draft", "k": 4, "draft_model": "llama-3.2-1b", "acceptance": 0.6}},
    {"speculative": {"method": "ngram", "k": 3, "acceptance": {"accepted": [0.4, 0.3, 0.2, 0.1]}}},
    {"inference.kv_retention": {"policy": "sink_recent", "sink": 4, "recent": 60}},
    {"inference.kv_retention": {"policy": "sliding_window", "window": 64}},
    {"inference.kv_retention": {"policy": "heavy_hitter", "heavy": 16, "recent": 16}},
    {"inference.kv_placement": {"policy": "block_spread", "tier": {"name": "ssd", "bandwidth_gbps": 12,
                                                                   "capacity_gib": 2000}}},
    {"inference.kv_placement": {"policy": "layer_spill", "host_gib": 64}},
    {"serving.engine": "vllm", "serving.engine_version": "0.10.0"},
    {"serving.engine": "sglang"}, {"serving.engine": "trtllm"},
    {"serving.engine": "vllm", "serving.engine_profile": "p.yaml"},
    {"serving.disaggregation": {"enabled": True, "prefill_replicas": 1, "decode_replicas": 1,
                                "decode_hardware": "h200-sxm", "transfer": {"link": "auto"}}},
    {"serving.disaggregation": {"enabled": True, "prefill_hardware": "a100-80gb-sxm",
                                "transfer": {"link": "custom", "bandwidth_gbps": 50}}},
    {"parallelism.pp": 2, "serving.pipeline_batches": 2},
    {"model": "qwen3-30b-a3b", "parallelism.attention_dp": 2},
    {"parallelism.tp": 2, "engine.mode": "flattened", "engine.all_ranks": True},
    {"workload.arrival": {"process": "closed", "concurrency": 4, "warmup": 5}},
    {"workload.arrival": {"process": "closed", "concurrency": 4, "reissue_delay_s": 0.04,
                          "reissue_delay_dist": "lognormal", "reissue_delay_cv": 2.0}},
]
STATIC_PRESETS = [p for p in PRESETS if all(k.startswith(("inference.", "parallelism.", "engine.", "model"))
                                            for k in p) and "serving.pipeline_batches" not in p]


def _leaves(data, prefix=""):
    if isinstance(data, dict) and data:
        for k, v in data.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def _mutate(rng: random.Random, data: dict, paths: dict) -> None:
    for _ in range(rng.randint(1, 2)):
        path = rng.choice(list(paths))
        _set(data, path, rng.choice(paths[path]) if rng.random() < 0.7 else _value(rng))


def _profile(rng: random.Random) -> bytes:
    prof = json.loads(json.dumps(PROFILE))
    if rng.random() < 0.5:
        _mutate(rng, prof, {"engine": ["vllm", "sglang"], "host.const_us": [0, 1e9], "host.per_token_us": [0.0],
                            "host.bogus": [1], "fit": [{}], "bogus": [1]})
    return _dump(prof) if rng.random() < 0.9 else rng.choice([b"", b"[1]", b"host: *x", b"\xff\xfe"])


def sections_case(rng: random.Random) -> Case:
    kind = rng.random()
    if kind < 0.3:
        data = json.loads(json.dumps(TRAINING))
        _mutate(rng, data, TRAINING_PATHS)
        return Case("training", ["run", "e.yaml", "--json"], {"e.yaml": _dump(data)})
    serving = kind < 0.8
    data = json.loads(json.dumps(SERVING if serving else STATIC))
    preset = rng.choice(PRESETS if serving else STATIC_PRESETS)
    for path, value in preset.items():
        _set(data, path, json.loads(json.dumps(value)))
    leaves = [leaf for path, value in preset.items() for leaf in _leaves(value, path)]
    for _ in range(rng.choice([0, 1, 1, 2])):  # a case with no change checks the feature's numbers
        if rng.random() < 0.5:
            path = rng.choice(leaves)
            _set(data, path, _value(rng) if rng.random() < 0.6 else rng.choice(SECTION_PATHS.get(path, [1])))
        else:
            path = rng.choice([p for p in SECTION_PATHS if serving or p in STATIC_SECTIONS])
            _set(data, path, rng.choice(SECTION_PATHS[path]) if rng.random() < 0.7 else _value(rng))
    files = {"e.yaml": _dump(data), "p.yaml": _profile(rng)}
    return Case("sections" if serving else "sections static", ["run", "e.yaml", "--json"], files)
