"""MoE kernel-level fidelity: simcore's static step times against real low-concurrency servers.

    python benchmarks/moe_fidelity.py [--data PATH] [--max-batch N] [--rows]

For every aggregated H100 row of ../shared/calibration/serving_h100.json whose MoE model is in
the catalog and whose concurrency is at most --max-batch (default 8): the static decode step
of a batch of `batch_size` x attention_dp sequences (batch_size counts one rank's clients) at context ISL + OSL/2 against the measured mean TPOT, and
(rows at the lowest concurrency of their layout, at most 4) the static prefill of batch_size
prompts against the measured mean TTFT: with fixed ISL/OSL a closed loop's clients finish
together and their next prompts arrive together, so each prefill batches all of them. Layout = tp / moe_tp x ep / attention_dp as the row states it:
"sliced" experts (moe_tp > 1, ep 1) or "ep" (whole experts per GPU). The server's host time per
step (scheduling, sampling; issue 11 point 1) is not in a static step, so TPOT errors are
expected to sit somewhat below zero. Prints per-row errors (--rows) and the median |error| by
(engine, model, layout). A report, not a gate: always exits 0.

Reference (median |error| on the 60 rows without attention DP; TPOT / TTFT):
  before issue 11's MoE work (mean-rank EP, no routing chain): 27.3% / 38.5%
    (qwen3-235b tp4 ep4 14.7%, tp8 ep8 29.0%; gpt-oss tp2/4/8 24-33%; minimax tp4 ep4 36.0%)
  after (busiest EP rank, moe_permute + moe_layer_us): 9.6% / 32.3%
    (qwen3-235b 6.0% / 3.1%; gpt-oss 10.6-13.5%, biased low by vLLM's host time per step;
    minimax tp4 ep4 18.6%). The 12 attention-DP rows (minimax tp4 x adp4, ep16, two nodes)
    stay ~50% low: their TPOT grows ~1.3 ms per added request, which no kernel cost explains.
  then (batch_size read per attention-DP rank, MiniMax's per-layer q/k norm all-reduce, vLLM attention-DP
    rows on tp_size GPUs: simcore/serving/silicon.py vllm_dp_layout): 8.6% / 52.7%
    (minimax tp4 ep4 13.5%; the attention-DP rows, now 4 GPUs of tp 1 x adp 4 at 4x the clients, 5.5%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.config.experiment import Experiment, resolve  # noqa: E402
from simcore.config.validation import validate  # noqa: E402
from simcore.run.static import StaticSimulator  # noqa: E402
from simcore.errors import SimcoreError  # noqa: E402
from simcore.ops.passes import decode, prefill  # noqa: E402
from simcore.serving.silicon import vllm_dp_layout  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "calibration" / "serving_h100.json"
MODELS = {  # model_path -> (catalog model, weights for the row's precision field)
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b",
    "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "deepseek-ai/DeepSeek-R1": "deepseek-v3",
}


def moe_rows(data: dict, max_batch: int) -> list[dict]:
    out = []
    for r in data["rows"]:
        if r["mode"] != "agg" or r["model_path"] not in MODELS or "batch_size" not in r:
            continue
        if int(r["batch_size"]) <= max_batch and int(r.get("pp_size", 1)) == 1:
            out.append(r)
    return out


def layout(r: dict) -> tuple[int, int, int, int, str]:
    tp, ep, mtp = int(r["tp_size"]), int(r["moe_ep_size"]), int(r["moe_tp_size"])
    adp = int(r.get("attention_dp_size") or 1)
    name = f"tp{tp}" + (f" adp{adp}" if adp > 1 else "") + (f" ep{ep}" if ep > 1 else "") + (
        f" moe_tp{mtp}" if mtp > 1 else "")
    kind = "ep" if mtp == 1 and ep > 1 else ("sliced" if ep == 1 else "mixed")
    return tp, ep, adp, mtp, f"{name} ({kind})"


def clients(r: dict) -> int:
    """The row's clients: batch_size is per attention-DP rank (docs/validation.md, silicon rows)."""
    return int(r["batch_size"]) * int(r.get("attention_dp_size") or 1)


def experiment(r: dict) -> dict:
    tp, ep, adp, mtp, _ = layout(r)
    if r["backend"] == "vllm":  # the GPUs such rows measured (simcore/serving/silicon.py)
        tp, ep = vllm_dp_layout(tp, adp, mtp, ep)
    weights = "fp8" if r.get("precision") == "fp8" and "gpt-oss" not in r["model_path"] else "auto"
    isl, osl, b = int(r["isl"]), int(r["osl"]), clients(r)
    return {
        "model": MODELS[r["model_path"]],
        "hardware": "h100-sxm",
        "parallelism": {"tp": tp, "ep": ep, "attention_dp": adp},
        "precision": {"weights": weights},
        # vLLM's default EP backend gathers tokens (allgather_reducescatter); the others send them all-to-all;
        # vLLM's fused_moe runs its per-row kernels over every held token's top-k rows (engine.moe_ep_rows)
        "engine": {"mode": "analytical", "moe_dispatch": "all_gather" if r["backend"] == "vllm" else "all_to_all",
                   "moe_ep_rows": "all" if r["backend"] == "vllm" else "local"},
        "workload": {"kind": "static", "batch_size": b, "prompt_tokens": isl, "output_tokens": osl},
    }


class Point:
    def __init__(self, r: dict, metric: str, measured: float, predicted: float):
        self.r, self.metric, self.measured, self.predicted = r, metric, measured, predicted
        self.engine, self.model = r["backend"], MODELS[r["model_path"]]
        self.layout = layout(r)[4]

    @property
    def err(self) -> float:
        return self.predicted / self.measured - 1


def evaluate(rows: list[dict]) -> tuple[list[Point], dict[str, int]]:
    points, refused = [], defaultdict(int)
    lowest: dict[tuple, int] = {}
    for r in rows:
        key = (r["backend"], r["model_path"], layout(r)[4], r["isl"])
        lowest[key] = min(lowest.get(key, 1 << 30), clients(r))
    sims: dict[tuple, StaticSimulator] = {}
    for r in rows:
        exp = experiment(r)
        try:
            run = resolve(validate(Experiment, exp, "row"))
        except SimcoreError as exc:
            refused[str(exc).split(":")[0][:60]] += 1
            continue
        par = exp["parallelism"]
        sim = sims.setdefault((exp["model"], str(par), exp["precision"]["weights"]), StaticSimulator(run))
        sim.run = run
        isl, osl, b = int(r["isl"]), int(r["osl"]), clients(r)
        step = sim.pass_(decode(b, isl + osl // 2)).time
        points.append(Point(r, "tpot", float(r["silicon_tpot_ms"]) * 1e-3, step))
        key = (r["backend"], r["model_path"], layout(r)[4], r["isl"])
        if b == lowest[key] and b <= 4:
            points.append(Point(r, "ttft", float(r["silicon_ttft_ms"]) * 1e-3, sim.pass_(prefill(b, isl)).time))
    return points, dict(refused)


def row_table(points: list[Point]) -> Table:
    t = Table(title="Per row (static step vs measured mean)")
    for col in ("engine", "model", "layout", "B", "ISL/OSL", "metric", "measured ms", "simcore ms", "error"):
        t.add_column(col, justify="left" if col in ("engine", "model", "layout", "metric") else "right")
    for p in points:
        t.add_row(p.engine, p.model, p.layout, str(clients(p.r)), f"{p.r['isl']}/{p.r['osl']}", p.metric,
                  f"{p.measured * 1e3:.2f}", f"{p.predicted * 1e3:.2f}", f"{100 * p.err:+.1f}%")
    return t


def group_table(points: list[Point]) -> Table:
    t = Table(title="By (engine, model, layout): median |error| (median signed)")
    for col in ("engine", "model", "layout", "TPOT n", "TPOT |err|", "TPOT signed", "TTFT n", "TTFT |err|",
                "TTFT signed"):
        t.add_column(col, justify="left" if col in ("engine", "model", "layout") else "right")
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        groups[(p.engine, p.model, p.layout)][p.metric].append(p.err)
    for key in sorted(groups):
        cells = []
        for metric in ("tpot", "ttft"):
            errs = groups[key][metric]
            if errs:
                cells += [str(len(errs)), f"{100 * statistics.median(abs(e) for e in errs):.1f}%",
                          f"{100 * statistics.median(errs):+.1f}%"]
            else:
                cells += ["0", "-", "-"]
        t.add_row(*key, *cells)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--rows", action="store_true", help="print every row, not only the groups")
    args = ap.parse_args(argv)
    points, refused = evaluate(moe_rows(json.loads(args.data.read_text()), args.max_batch))
    con = Console(width=160)
    if args.rows:
        con.print(row_table(points))
    con.print(group_table(points))
    for metric in ("tpot", "ttft"):
        errs = [abs(p.err) for p in points if p.metric == metric]
        if errs:
            con.print(f"{metric.upper()}: {len(errs)} rows, median |error| {100 * statistics.median(errs):.1f}%")
    for why, n in refused.items():
        con.print(f"refused {n} rows: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
