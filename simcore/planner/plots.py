"""Planner plots (PNG, matplotlib's Agg backend): KV cache vs context length, and memory
breakdown bars per deployment. Sizes come from the same helpers the tables use."""

from __future__ import annotations


from simcore.report.plotting import pyplot, save
from simcore.config.model import load_model
from simcore.ops.kv import kv_bytes
from simcore.config.hardware import GIB

PARTS = (("weights", "weights", "#4c72b0"), ("activations", "activations", "#dd8452"),
         ("runtime_overhead", "non-torch memory", "#8c8c8c"), ("kv_cache", "KV cache capacity", "#55a868"))


def _contexts(limit: int) -> list[int]:
    out, n = [], 256
    while n < limit:
        out.append(n)
        n *= 2
    return out + [limit]


def kv_vs_context(ax, models, dtypes=("bf16", "fp8"), limit: int | None = None, tp: int = 1, layers=None) -> None:
    """Per-request KV cache (GiB per GPU at `tp`, over `layers`: default all) against context length,
    one line per model x dtype."""
    for name in models:
        m = load_model(str(name))
        xs = _contexts(limit or m.max_position or 131072)
        for dtype, style in zip(dtypes, ("-", "--", ":")):
            ys = [kv_bytes(m, 1, x, dtype, tp, layers) / GIB for x in xs]
            ax.plot(xs, ys, style, marker=".", label=f"{m.name} {dtype}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("KV cache per request (GiB per GPU)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def breakdown_bars(ax, labels: list[str], memories: list[dict], usable: list[float]) -> None:
    """Stacked bars: weights, activations, non-torch memory, KV capacity (GiB per GPU)."""
    bottoms = [0.0] * len(labels)
    for key, name, color in PARTS:
        vals = [m[key] / GIB for m in memories]
        ax.bar(labels, vals, bottom=bottoms, label=name, color=color)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax.scatter(labels, [u / GIB for u in usable], marker="_", s=400, color="black", label="usable memory", zorder=3)
    ax.set_ylabel("GiB per GPU")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(fontsize=8)


def plan_figure(cp, path) -> None:
    """`simcore plan --plot`: this deployment's memory breakdown, and its KV per request vs context
    against the cache capacity (where a line crosses it is the longest context that fits)."""
    plt = pyplot()
    d = cp.as_dict()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    breakdown_bars(left, [f"{d['gpu']} tp{d['tp']} pp{d['pp']}"], [d["memory_per_gpu_bytes"]],
                   [d["memory_per_gpu_bytes"]["usable"]])
    left.set_title("memory per GPU")
    dtypes = tuple(dict.fromkeys([d["precision"]["kv_cache"], "fp8"]))
    # one GPU of the binding stage, like the capacity line: with pp it holds only its stage's layers
    kv_vs_context(right, [cp.run.model.path], dtypes, cp.limit, d["tp"], cp.budget.binding.layers)
    right.axhline(d["memory_per_gpu_bytes"]["kv_cache"] / GIB, color="black", linestyle=":",
                  label="KV cache capacity")
    right.legend(fontsize=8)
    right.set_title(f"{d['model']}: KV cache per request")
    save(fig, path)


def options_figure(options, path, title: str = "memory per GPU") -> None:
    """`simcore recommend --plot`: memory breakdown bars of the ranked options."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.9 * len(options)), 4.5))
    labels = [f"{o.gpu} tp{o.tp} pp{o.pp} x{o.replicas}" for o in options]
    memories = [{**o.memory_per_gpu_bytes, "kv_cache": o.memory_per_gpu_bytes["kv_cache_capacity"]} for o in options]
    breakdown_bars(ax, labels, memories,
                   [o.memory_per_gpu_bytes["usable"] for o in options])
    ax.set_title(title)
    save(fig, path)


def kv_context_figure(models, path, dtypes=("bf16", "fp8"), limit: int | None = None) -> None:
    """KV memory vs context length for chosen models and precisions (Python API)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    kv_vs_context(ax, models, dtypes, limit)
    save(fig, path)


def pareto_axes(ax, points: list[dict], front: list[dict] | None = None, xlabel: str = "TPOT, seconds") -> None:
    """Output tokens/s per GPU against latency: every simulated run (meeting the SLOs or not) and
    the Pareto front through them."""
    for ok, colour, label in ((True, "#55a868", "meets the SLOs"), (False, "#c44e52", "misses an SLO")):
        pts = [p for p in points if p["meets_slos"] == ok]
        if pts:
            ax.scatter([p["latency_s"] * 1e3 for p in pts], [p["output_tokens_per_s_per_gpu"] for p in pts], s=18,
                       color=colour, alpha=0.7, label=label)
    if front:
        ax.plot([p["latency_s"] * 1e3 for p in front], [p["output_tokens_per_s_per_gpu"] for p in front], "-",
                color="black", drawstyle="steps-post", label="Pareto front")
        for p in front:
            ax.annotate(f"{p['gpu']} tp{p['tp']}x{p['replicas']}", (p["latency_s"] * 1e3, p["output_tokens_per_s_per_gpu"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel.replace("seconds", "ms"))
    ax.set_ylabel("output tokens/s per GPU")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def pareto_figure(front: list[dict], path, title: str = "throughput per GPU vs latency",
                  xlabel: str = "TPOT, seconds", points: list[dict] | None = None) -> None:
    """`simcore recommend --plot` in serving mode."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    pareto_axes(ax, points or front, front, xlabel)
    ax.set_title(title)
    save(fig, path)
