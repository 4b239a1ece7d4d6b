"""Memory per GPU the way an inference engine accounts it: weights, KV cache, activations, overhead."""

from __future__ import annotations

from dataclasses import dataclass

from simcore.config.experiment import Run
from simcore.errors import SimcoreError
from simcore.ops.builder import stage_ops
from simcore.ops.kv import kv_bytes
from simcore.ops.linears import Sharding, attention_linears, mlp_linears, norm_params
from simcore.ops.op import nbytes
from simcore.ops.passes import Pass, stage_layers

GIB = 2**30


@dataclass(frozen=True)
class MemoryPerGPU:
    """Bytes on the busiest GPU (the stage that needs the most)."""

    weights: float
    kv_cache: float
    activations: float
    overhead: float
    capacity: float  # usable: device memory x gpu_memory_utilization

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead

    def as_dict(self) -> dict[str, float]:
        return {"weights": self.weights, "kv_cache": self.kv_cache, "activations": self.activations}


def stage_weight_bytes(run: Run, stage: int) -> float:
    m, p = run.model, run.par
    shard = Sharding(tp=p.tp, ep=p.ep, dp=p.dp)
    total = 0.0
    for layer in stage_layers(m.layers, p.pp)[stage]:
        lins = attention_linears(m, shard, run.weight_dtype) + mlp_linears(m, layer, shard, run.weight_dtype, run.expert_dtype)
        total += sum(l.params * nbytes(l.dtype) for l in lins) + norm_params(m) * 2
    table = m.vocab // p.tp * m.hidden * 2
    if stage == 0:
        total += table
    if stage == p.pp - 1:
        total += m.hidden * 2 + (0 if m.tie_embeddings and p.pp == 1 else table)
    return total


def activation_peak(ops) -> float:
    """Largest transient: the biggest op's inputs + outputs plus the residual stream it sits on."""
    return max((op.act_bytes for op in ops), default=0.0)


def memory_per_gpu(run: Run, batch: int, prompt: int, context: int) -> MemoryPerGPU:
    """Per-GPU memory for `batch` sequences whose cache grows to `context` tokens."""
    m, p, e = run.model, run.par, run.experiment.engine
    worst = None
    for stage, layers in enumerate(stage_layers(m.layers, p.pp)):
        weights = stage_weight_bytes(run, stage)
        cache = kv_bytes(m, batch, context, run.kv_dtype, p.tp, layers)
        if run.experiment.inference.kvcache_type == "host":
            cache = 0.0  # the cache lives in host memory
        acts = activation_peak(stage_ops(run, stage, Pass("prefill", batch, prompt)))
        acts += 2 * batch * prompt * m.hidden * nbytes(run.act_dtype)  # residual stream
        here = (weights, cache, acts)
        if worst is None or sum(here) > sum(worst):
            worst = here
    return MemoryPerGPU(
        *worst,
        overhead=e.runtime_overhead_gib * GIB,
        capacity=run.system.gpu.memory.capacity * e.gpu_memory_utilization,
    )


def check_fits(run: Run, mem: MemoryPerGPU) -> None:
    if mem.total <= mem.capacity:
        return
    p = run.par
    g = lambda b: f"{b / GIB:.1f} GiB"  # noqa: E731
    raise SimcoreError(
        f"{run.model.name} does not fit on {run.system.gpu.name} at tp {p.tp} pp {p.pp} ep {p.ep}: needs "
        f"{g(mem.total)} per GPU (weights {g(mem.weights)}, KV cache {g(mem.kv_cache)}, activations "
        f"{g(mem.activations)}, runtime {g(mem.overhead)}) but {g(mem.capacity)} is available "
        f"({run.system.gpu.memory.capacity_gib:g} GiB x gpu_memory_utilization "
        f"{run.experiment.engine.gpu_memory_utilization:g}); raise tp or pp, lower the batch, or quantize"
    )
