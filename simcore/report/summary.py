"""The JSON summary of a static-batch run. Its keys are a contract: docs/results.md documents each."""

from __future__ import annotations

import csv
from pathlib import Path

from simcore import __version__
from simcore.config.hardware import profile_record
from simcore.run.static import PassResult, StaticResult
from simcore.ops.kv import kv_bytes_per_token


def _kinds(p: PassResult) -> dict[str, float]:
    return {k: round(v, 12) for k, v in sorted(p.critical.items())}


def summary(res: StaticResult) -> dict:
    run, e = res.run, res.run.experiment
    p, wl = run.par, e.workload
    steps = res.step_times
    sequences = wl.batch_size * p.dp
    ranks_per_stage = p.tp * p.dp * p.attention_dp  # every rank of a stage moves its own share of the cache
    mem = res.memory
    return {
        "simcore_version": __version__,
        "name": e.name,
        "mode": e.engine.mode,
        "model": run.model.name,
        "hardware": run.system.gpu.name,
        "cluster": run.system.cluster.name,
        "efficiency_profile": profile_record(run.system.efficiency, run.system.gpu.name),
        "parallelism": {"tp": p.tp, "pp": p.pp, "dp": p.dp, "ep": p.ep,
                        "attention_dp": p.attention_dp, "gpus": run.gpus},
        "precision": {
            "weights": run.weight_dtype,
            "experts": run.expert_dtype,
            "activations": run.act_dtype,
            "kv_cache": run.kv_dtype,
        },
        "workload": {"batch_size": wl.batch_size, "prompt_tokens": wl.prompt_tokens, "output_tokens": wl.output_tokens},
        "ttft_s": res.ttft,
        "decode_step_s": {
            "first": float(steps[0]) if len(steps) else 0.0,
            "mean": float(steps.mean()) if len(steps) else 0.0,
            "last": float(steps[-1]) if len(steps) else 0.0,
        },
        "e2e_s": res.e2e,
        "output_tokens_per_s": sequences * wl.output_tokens / res.e2e,
        "output_tokens_per_s_per_gpu": sequences * wl.output_tokens / res.e2e / run.gpus,
        "kv_cache_bytes_read": res.kv_read_per_rank * ranks_per_stage,
        "kv_cache_bytes_written": res.kv_written_per_rank * ranks_per_stage,
        "kv_cache_bytes_per_token": kv_bytes_per_token(run.model, run.kv_dtype),
        "memory_per_gpu_bytes": {
            **mem.as_dict(),
            "runtime_overhead": mem.overhead,
            "total": mem.total,
            "capacity": mem.capacity,
        },
        "time_by_kind_s": {
            "prefill": _kinds(res.prefill),
            "decode_first_step": _kinds(res.decode_first) if res.decode_first else {},
            "decode_last_step": _kinds(res.decode_last) if res.decode_last else {},
        },
        "decode_steps_priced": len(res.sampled_steps),
        "critical_path_s": {k: v for k, v in sorted(res.critical_path.items())},
        "pipeline_bubble_s": {
            "prefill": res.prefill.bubble,
            "decode_first_step": res.decode_first.bubble if res.decode_first else 0.0,
        },
        "overlap_policy": e.engine.overlap_policy,
        "events_simulated": res.events_simulated,
        "ranks_simulated": res.ranks,
        **({"speculative": _speculative(res)} if res.speculation else {}),
        **({"kv_retention": _retention(res, ranks_per_stage)} if res.without_retention else {}),
        **({"kv_placement": _placement(res, ranks_per_stage)} if res.placement else {}),
    }


def _placement(res: StaticResult, ranks: int) -> dict:
    pl, hbm = res.placement, res.all_in_hbm
    held = pl.resident()
    total = sum(held.values()) or 1.0
    read = res.kv_read_per_rank * ranks
    tiers = {t.name: {"bandwidth_gbps": t.bandwidth / 1e9, "capacity_bytes": t.capacity,
                      "resident_bytes": held[t.name], "bytes_read": read * held[t.name] / total} for t in pl.tiers}
    out = {"policy": pl.policy, "parallel_reads": pl.parallel, "tiers": tiers}
    if isinstance(hbm, str):
        return {**out, "all_in_hbm": hbm}
    return {**out, "e2e_s_all_in_hbm": hbm.e2e, "time_cost_s": res.e2e - hbm.e2e}


BOOKKEEPING = ("kv_scores", "kv_rerotate")  # the retention policies' own ops (simcore/ops/kv_retention/)


def _retention(res: StaticResult, ranks: int) -> dict:
    full, cfg = res.without_retention, res.run.experiment.inference.kv_retention
    last = res.decode_last.stages if res.decode_last else []
    book = sum(t.duration for w in last for t in w.ops if t.op.name in BOOKKEEPING)
    head = {"policy": cfg.policy, "retained_tokens": res.run.model.sliding_window, "bookkeeping_s_last_step": book}
    if isinstance(full, str):
        return {**head, "kv_cache_bytes_read": res.kv_read_per_rank * ranks, "full": full}
    return {**head,
            "kv_cache_bytes_read": res.kv_read_per_rank * ranks,
            "kv_cache_bytes_read_full": full.kv_read_per_rank * ranks,
            "kv_cache_bytes_saved": (full.kv_read_per_rank - res.kv_read_per_rank) * ranks,
            "e2e_s_full": full.e2e, "time_saved_s": full.e2e - res.e2e}


def _speculative(res: StaticResult) -> dict:
    sp, steps = res.speculation, res.run.experiment.workload.output_tokens - 1
    return {**sp.record, "verified_steps": sp.verified_steps, "decode_s": sp.decode_s,
            "decode_s_without": sp.decode_s_without, "speedup": sp.speedup,
            "tpot_s": sp.decode_s / steps if steps else 0.0, "e2e_s": res.ttft + sp.decode_s}


BREAKDOWN_FIELDS = ("phase", "stage", "layer", "op", "kind", "family", "duration_s", "exposed_s",
                    "flops", "bytes", "kv_bytes", "bound")


def breakdown_rows(res: StaticResult):
    passes = [("prefill", res.prefill), ("decode_first_step", res.decode_first), ("decode_last_step", res.decode_last)]
    for phase, p in passes:
        if p is None:
            continue
        for stage, w in enumerate(p.stages):
            for t in w.ops:
                yield {
                    "phase": phase, "stage": stage, "layer": t.op.layer, "op": t.op.name, "kind": t.op.kind,
                    "family": t.op.family, "duration_s": t.duration, "exposed_s": t.exposed, "flops": t.op.flops,
                    "bytes": t.op.bytes, "kv_bytes": t.op.kv_bytes, "bound": t.bound,
                }


def write_breakdown(res: StaticResult, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=BREAKDOWN_FIELDS)
        w.writeheader()
        w.writerows(breakdown_rows(res))
