"""`simcore plan --training`: memory per GPU of one training layout, and whether it fits.

The layout becomes a `workload.kind: training` experiment built the normal way
(resolve(validate(Experiment))), so every check is the experiment's; the numbers are the ones
the training driver checks before it simulates (simcore.memory.training), for every pipeline rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcore.config.experiment import Experiment, Run, resolve
from simcore.config.hardware import GIB, load_cluster
from simcore.config.validation import validate
from simcore.errors import SimcoreError
from simcore.memory.training import TrainingMemory, fullest, training_memory_by_rank
from simcore.run.training import TrainingSimulator


def hardware_of(gpu: str | None, cluster: str | None) -> str:
    """The GPU to plan on: --gpu, else the cluster's GPU."""
    if gpu:
        return gpu
    if cluster:
        return load_cluster(cluster).gpu
    raise SimcoreError("--gpu: none given: name a GPU with --gpu or a cluster with --cluster (e.g. --gpu h100-sxm)")


def training_experiment(model: str, gpu: str | None = None, cluster: str | None = None, *, tp: int = 1, pp: int = 1,
                        dp: int = 1, ep: int = 1, cp: int = 1, global_batch: int | None = None, micro_batch: int = 1,
                        seq_len: int = 2048, recompute: str = "none", zero_stage: int = 1, optimizer: str = "adamw",
                        sequence_parallel: bool | None = None, schedule: str = "1f1b", virtual_stages: int = 1,
                        weights: str = "auto", mode: str = "analytical", overlap: str = "all",
                        runtime_overhead_gib: float | None = None) -> dict:
    """The experiment document of one layout. global_batch None: one micro-batch per replica;
    sequence_parallel None: on whenever tp > 1 (Megatron-LM's recommendation with TP)."""
    workload = {
        "kind": "training",
        "global_batch": micro_batch * dp if global_batch is None else global_batch,
        "micro_batch": micro_batch,
        "sequence_length": seq_len,
        "recompute": recompute,
        "zero_stage": zero_stage,
        "optimizer": optimizer,
        "context_parallel": cp,
        "sequence_parallel": tp > 1 if sequence_parallel is None else sequence_parallel,
        "schedule": schedule,
        "virtual_stages": virtual_stages,
    }
    engine = {"mode": mode, "overlap_policy": overlap}
    if runtime_overhead_gib is not None:
        engine["runtime_overhead_gib"] = runtime_overhead_gib
    return {
        "model": model,
        "hardware": hardware_of(gpu, cluster),
        **({"cluster": cluster} if cluster else {}),
        "parallelism": {"tp": tp, "pp": pp, "dp": dp, "ep": ep},
        "precision": {"weights": weights},
        "workload": workload,
        "engine": engine,
    }


def training_run(data: dict, source: str = "plan --training") -> Run:
    return resolve(validate(Experiment, data, source))


@dataclass
class TrainingPlan:
    run: Run
    ranks: list[TrainingMemory]  # one per pipeline rank
    micro_batches: int

    @property
    def memory(self) -> TrainingMemory:
        """The fullest pipeline rank (the one that decides whether the layout fits)."""
        return fullest(self.ranks)

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def verdict(self) -> str:
        m = self.memory
        if m.fits:
            return f"fits: {m.total / GIB:.2f} of {m.capacity / GIB:.2f} GiB on pipeline rank {m.rank}, {(m.capacity - m.total) / GIB:.2f} GiB free"
        name, largest = m.largest
        return (f"does not fit: {m.total / GIB:.2f} GiB per GPU on pipeline rank {m.rank} exceeds "
                f"{m.capacity / GIB:.2f} GiB; largest: {name} {largest / GIB:.2f} GiB")

    def as_dict(self) -> dict:
        """The `simcore plan --training --json` document (docs/planner.md lists every key)."""
        run, w, p = self.run, self.run.experiment.workload, self.run.par
        name, largest = self.memory.largest
        return {
            "kind": "training",
            "model": run.model.name,
            "gpu": run.system.gpu.name,
            "cluster": run.system.cluster.name,
            "parallelism": {"tp": p.tp, "pp": p.pp, "dp": p.dp, "ep": p.ep, "cp": w.context_parallel,
                            "gpus": run.gpus * w.context_parallel},
            "workload": w.model_dump(),
            "micro_batches": self.micro_batches,
            "memory_per_gpu_bytes": self.memory.as_dict(),
            "pipeline_ranks": [m.as_dict() for m in self.ranks],
            "largest": name,
            "largest_bytes": largest,
            "fits": self.fits,
            "verdict": self.verdict,
        }


def plan_training(data: dict) -> TrainingPlan:
    """Memory per GPU of every pipeline rank of the layout `data` (training_experiment's document)."""
    run = training_run(data)
    sim = TrainingSimulator(run)  # the driver's stages and schedule orders
    return TrainingPlan(run, training_memory_by_rank(run, sim.stages, sim.orders()), sim.m)
