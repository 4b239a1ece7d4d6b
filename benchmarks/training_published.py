"""Predicted training throughput against published figures that state their full parallel configuration.

Rows: tests/data/training_published.json (Megatron-LM GPT weak scaling, Narayanan et al. 2021, Table 1,
A100). Each row runs as a simcore training experiment with one rule for what the paper leaves unsaid
(the same for every row, no per-row setting):
- GPT layers (MHA, 4h GELU MLP, tied embeddings) are given as a gated MLP of 8h/3 (the same weights
  and FLOPs per token; simcore's op lists have gated MLPs);
- micro-batch 1, 1F1B, full activation recomputation, fp16 gradient all-reduce after backward
  (no ZeRO, no overlap: Megatron-LM as of 2021), attention with materialized scores (the paper
  predates FlashAttention), engine analytical mode.
Predicted TFLOP/s per GPU uses the paper's own FLOP count (Eq. 3) over the predicted step time,
so both sides count the same work.

Usage: python benchmarks/training_published.py [--mode analytical|hybrid]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.config.experiment import experiment_from_dict, resolve  # noqa: E402
from simcore.run.training import simulate  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "training_published.json"


def gpt_config(row: dict, vocab: int, seq: int) -> dict:
    h = row["hidden"]
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt_megatron", "hidden_size": h,
            "num_attention_heads": row["heads"], "num_key_value_heads": row["heads"],
            "num_hidden_layers": row["layers"], "intermediate_size": round(8 * h / 3), "vocab_size": vocab,
            "max_position_embeddings": seq, "tie_word_embeddings": True, "torch_dtype": "float16"}


def paper_flops(row: dict, vocab: int, seq: int) -> float:
    """Eq. 3 of the paper: FLOPs per iteration, recomputation included."""
    b, l, h = row["batch"], row["layers"], row["hidden"]
    return 96 * b * seq * l * h * h * (1 + seq / (6 * h) + vocab / (16 * l * h))


def predict(row: dict, data: dict, folder: Path, mode: str) -> tuple[float, float]:
    seq, vocab = data["sequence_length"], data["vocab"]
    path = folder / f"gpt-{row['params_b']}b.json"
    path.write_text(json.dumps(gpt_config(row, vocab, seq)))
    dp = row["gpus"] // (row["tp"] * row["pp"])
    exp = experiment_from_dict({
        "model": str(path), "hardware": data["hardware"], "cluster": data["cluster"],
        "parallelism": {"tp": row["tp"], "pp": row["pp"], "dp": dp},
        "precision": {"activations": "fp16"},
        "workload": {"kind": "training", "global_batch": row["batch"], "micro_batch": 1, "sequence_length": seq,
                     "optimizer": "adam", "recompute": "full", "zero_stage": 0, "schedule": "1f1b",
                     "grad_reduce_dtype": "bf16", "attention": "materialized"},
        "engine": {"mode": mode, "overlap_policy": "none"},
    }, source="benchmark")
    res = simulate(resolve(exp))
    return paper_flops(row, vocab, seq) / res.step_time / row["gpus"] / 1e12, res.step_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="analytical", choices=("analytical", "hybrid"))
    args = ap.parse_args()
    data = json.loads(DATA.read_text())
    console = Console()
    t = Table(title=f"Training throughput vs {data['source']} ({data['hardware']}, {args.mode} mode)",
                title_justify="left")
    for col in ("model", "tp", "pp", "dp", "batch", "step s", "published TFLOP/s", "predicted", "error"):
        t.add_column(col, justify="right")
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in data["rows"]:
            pred, step = predict(row, data, Path(tmp), args.mode)
            err = pred / row["tflops_per_gpu"] - 1
            errors.append(abs(err))
            t.add_row(f"{row['params_b']}B", str(row["tp"]), str(row["pp"]),
                      str(row["gpus"] // (row["tp"] * row["pp"])), str(row["batch"]), f"{step:.2f}",
                      f"{row['tflops_per_gpu']}", f"{pred:.0f}", f"{100 * err:+.1f}%")
    console.print(t)
    console.print(f"median |error| {100 * statistics.median(errors):.1f}%, max {100 * max(errors):.1f}% "
                  f"over {len(errors)} rows (targets: median <= 10%, max <= 25%)")


if __name__ == "__main__":
    main()
