"""`simcore recommend --training`: every TP x PP x DP x CP (x EP) layout of N GPUs, with each
micro-batch size, schedule, ZeRO stage and recomputation asked for, checked for memory with the
training driver's own accounting and timed by its simulator (analytical mode by default),
ranked by step time. Rejections keep their reason (docs/planner.md, "Training layouts").

A layout is a `workload.kind: training` experiment (simcore.planner.training_plan), so an
impossible one is rejected with the experiment's own one-line error. Recomputation only adds
work to a step, so on each layout only the lightest recomputation that fits is simulated
(the heavier ones are rejected as `recompute`, or simulated too with exhaustive=True).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from simcore.config.hardware import load_cluster, load_gpu, profile_info
from simcore.config.model import load_model
from simcore.errors import SimcoreError
from simcore.planner.training_plan import hardware_of, training_experiment, training_run
from simcore.report.training import training_summary
from simcore.run.training import TrainingSimulator

RECOMPUTE = ("none", "selective", "full")  # lightest first: each adds work to a step
SCHEDULES = ("gpipe", "1f1b", "interleaved")
MICRO_BATCHES = (1, 2, 4)


@dataclass
class TrainingOption:
    tp: int
    pp: int
    dp: int | None  # None: tp x pp x cp does not divide the GPUs
    cp: int
    ep: int
    micro_batch: int | None = None
    schedule: str | None = None
    virtual_stages: int | None = None
    zero_stage: int | None = None
    recompute: str | None = None
    status: str = "ok"  # ok | rejected
    check: str | None = None  # what failed: gpus | memory | recompute | the experiment field that refused it
    reason: str | None = None
    micro_batches: int | None = None  # per replica per step (gradient accumulation)
    step_time_s: float | None = None
    tokens_per_s: float | None = None
    tokens_per_s_per_gpu: float | None = None
    mfu: float | None = None
    hfu: float | None = None
    model_tflops_per_gpu: float | None = None
    pipeline_bubble_s: float | None = None
    memory_per_gpu_bytes: dict | None = None


@dataclass
class TrainingRecommendations:
    request: dict
    options: list[TrainingOption]  # fit, fastest step first
    rejected: list[TrainingOption]
    candidates_evaluated: int
    simulated: int
    elapsed_s: float = 0.0

    @property
    def best(self) -> TrainingOption | None:
        return self.options[0] if self.options else None

    def as_dict(self) -> dict:
        """The `simcore recommend --training --json` document (docs/planner.md lists every key)."""
        return {
            **self.request,
            "candidates_evaluated": self.candidates_evaluated,
            "simulated": self.simulated,
            "elapsed_s": self.elapsed_s,
            "recommendations": [{"rank": i + 1, **asdict(o)} for i, o in enumerate(self.options)],
            "rejected": [asdict(o) for o in self.rejected],
        }


def _check_of(message: str) -> str:
    """The experiment field an error names ('workload.global_batch' -> 'global_batch'), else 'layout'."""
    m = re.search(r"field '([\w.]+)'", message)
    return m.group(1).rsplit(".", 1)[-1] if m else "layout"


def _values(name: str, values, allowed=None, positive: bool = True) -> tuple:
    values = tuple(values)
    if not values:
        raise SimcoreError(f"{name}: empty list: give at least one value")
    for v in values:
        if allowed is not None and v not in allowed:
            raise SimcoreError(f"{name}: {v!r}: allowed {', '.join(map(str, allowed))}")
        if positive and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SimcoreError(f"{name}: {v!r}: must be a positive integer")
    return tuple(dict.fromkeys(values))


def default_tp(gpus_per_node: int) -> tuple[int, ...]:
    """Powers of two up to one node (TP stays inside NVLink)."""
    return tuple(t for t in (1, 2, 4, 8, 16, 32, 64) if t <= gpus_per_node)


def default_pp(gpus: int, layers: int) -> tuple[int, ...]:
    """Every divisor of the GPU count up to the layer count."""
    return tuple(d for d in range(1, min(gpus, layers) + 1) if gpus % d == 0)


def recommend_training(model: str, gpus: int, gpu: str | None = None, cluster: str | None = None, *,
                       global_batch: int, seq_len: int = 2048, tp=None, pp=None, cp=(1,), ep=(1,),
                       micro_batch=MICRO_BATCHES, recompute=RECOMPUTE, zero=(1,), schedule=("1f1b",),
                       virtual_stages=(2,), optimizer: str = "adamw", weights: str = "auto",
                       mode: str = "analytical", overlap: str = "all", exhaustive: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> TrainingRecommendations:
    """Rank the training layouts of `model` on `gpus` GPUs of `gpu` (or `cluster`) by step time.
    tp None: powers of two up to a node; pp None: divisors of gpus up to the layers. Bad input
    raises SimcoreError (one line)."""
    t0 = time.perf_counter()
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise SimcoreError(f"gpus: {gpus!r}: with --training, the number of GPUs (a positive integer)")
    for name, v in (("global_batch", global_batch), ("seq_len", seq_len)):
        _values(name, (v,))
    hw = hardware_of(gpu, cluster)
    load_gpu(hw)
    node = load_cluster(cluster).gpus_per_node if cluster else load_cluster(load_gpu(hw).default_cluster).gpus_per_node
    spec = load_model(model)
    tp = _values("tp", default_tp(node) if tp is None else tp)
    pp = _values("pp", default_pp(gpus, spec.layers) if pp is None else pp)
    cp, ep = _values("cp", cp), _values("ep", ep)
    micro_batch, virtual_stages = _values("micro_batch", micro_batch), _values("virtual_stages", virtual_stages)
    zero = _values("zero", zero, allowed=(0, 1, 2, 3), positive=False)
    schedule = _values("schedule", schedule, allowed=SCHEDULES, positive=False)
    recompute = tuple(r for r in RECOMPUTE if r in _values("recompute", recompute, allowed=RECOMPUTE, positive=False))
    request = {"kind": "training", "model": spec.name, "gpu": hw, "cluster": cluster, "gpus": gpus,
               "efficiency_profile": profile_info(load_gpu(hw)),
               "global_batch": global_batch, "seq_len": seq_len, "tokens_per_step": global_batch * seq_len,
               "optimizer": optimizer, "weights": weights, "mode": mode, "overlap_policy": overlap,
               "search": {"tp": list(tp), "pp": list(pp), "cp": list(cp), "ep": list(ep),
                          "micro_batch": list(micro_batch), "schedule": list(schedule),
                          "virtual_stages": list(virtual_stages), "zero_stage": list(zero),
                          "recompute": list(recompute)}}

    layouts, rejected = [], []
    for t in tp:
        for p in pp:
            for c in cp:
                for e in ep:
                    if gpus % (t * p * c):
                        why = "is more than" if t * p * c > gpus else "does not divide"
                        rejected.append(TrainingOption(t, p, None, c, e, status="rejected", check="gpus", reason=(
                            f"tp x pp x cp = {t * p * c} {why} the {gpus} GPUs")))
                    else:
                        layouts.append((t, p, gpus // (t * p * c), c, e))
    cells = []  # (layout, micro-batch, schedule, virtual stages, zero): recompute varies inside
    for lay in layouts:
        for mb in micro_batch:
            for s in schedule:
                for v in (virtual_stages if s == "interleaved" else (1,)):
                    cells += [(lay, mb, s, v, z) for z in zero]
    total = len(cells) * len(recompute) + len(rejected)
    done, simulated, options = len(rejected), 0, []
    for (t, p, d, c, e), mb, s, v, z in cells:
        fitted = None
        for rc in recompute:
            done += 1
            opt = TrainingOption(t, p, d, c, e, mb, s, v, z, rc)
            if fitted is not None and not exhaustive:
                rejected.append(_reject(opt, "recompute", f"recompute {fitted!r} fits this layout and is faster "
                                        f"(recomputation only adds work); exhaustive search simulates it"))
            else:
                res = _evaluate(opt, model, gpu, cluster, global_batch, seq_len, optimizer, weights, mode, overlap)
                if res.status == "ok":
                    simulated += 1
                    fitted = fitted or rc
                    options.append(res)
                else:
                    rejected.append(res)
            if progress:
                progress(done, total)
    options.sort(key=lambda o: (o.step_time_s, o.memory_per_gpu_bytes["total"]))
    return TrainingRecommendations(request, options, rejected, total, simulated, time.perf_counter() - t0)


def _reject(opt: TrainingOption, check: str, reason: str) -> TrainingOption:
    opt.status, opt.check, opt.reason = "rejected", check, reason
    return opt


def _evaluate(opt: TrainingOption, model, gpu, cluster, global_batch, seq_len, optimizer, weights, mode,
              overlap) -> TrainingOption:
    data = training_experiment(model, gpu, cluster, tp=opt.tp, pp=opt.pp, dp=opt.dp, ep=opt.ep, cp=opt.cp,
                               global_batch=global_batch, micro_batch=opt.micro_batch, seq_len=seq_len,
                               recompute=opt.recompute, zero_stage=opt.zero_stage, optimizer=optimizer,
                               schedule=opt.schedule, virtual_stages=opt.virtual_stages, weights=weights, mode=mode,
                               overlap=overlap)
    try:
        run = training_run(data, "recommend --training")
        res = TrainingSimulator(run).simulate()  # checks memory first: a layout that does not fit raises
    except SimcoreError as exc:
        msg = str(exc)
        return _reject(opt, "memory" if msg.startswith("training does not fit") else _check_of(msg), msg)
    s = training_summary(res)
    for f in fields(TrainingOption):
        if f.name in s and f.name not in ("micro_batch",):
            setattr(opt, f.name, s[f.name])
    return opt
