"""Engine start-up memory: simcore's engine_memory against logged start-ups (vLLM; one SGLang row).

Usage: python benchmarks/memory_fidelity.py
One row per logged start-up (tests/data/vllm_startup_logs.json: the four shared H100 rows of
../shared/calibration/vllm_memory_h100.json and figures users pasted into public GitHub issues):
each component predicted / logged in GiB, and the KV error. A component the row's engine version
accounts differently (its `compare` list leaves it out) is shown in brackets and not counted in the
summary. Also prints what the three engines give for the shared rows' deployments.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from simcore.config.hardware import GIB  # noqa: E402
from simcore.memory import engine_memory  # noqa: E402
from simcore.planner.capacity import build_run  # noqa: E402

ROWS = json.loads((ROOT / "tests" / "data" / "vllm_startup_logs.json").read_text())["rows"]
COMPONENTS = (("weights", "weights"), ("activation", "activation"), ("non_torch", "non_torch"),
              ("cudagraph", "cudagraph"), ("kv", "kv_bytes"))


def predict(row: dict):
    util = row["flags"].get("gpu_memory_utilization", 0.9)
    run = build_run(row["catalog_model"], row["gpu"], row["tp"], gpu_mem_util=util)
    if row.get("moe_kernel"):  # the MoE kernel the logged server ran (engine.moe_kernel)
        engine = run.experiment.engine.model_copy(update={"moe_kernel": row["moe_kernel"]})
        run = dataclasses.replace(run, experiment=run.experiment.model_copy(update={"engine": engine}))
    return run, engine_memory(run, row.get("engine", "vllm"), **row["flags"])


def main() -> None:
    t = Table(title="engine start-up memory per GPU, GiB: simcore / logged (brackets: not comparable, see note)",
              title_justify="left")
    for col in ("engine", "model", "tp", "flags", *(c for c, _ in COMPONENTS), "KV error", "source"):
        t.add_column(col, justify="left" if col in ("model", "flags", "source") else "right")
    worst: dict[str, float] = {}
    kv_errors = []
    for row in ROWS:
        _, mem = predict(row)
        cells = []
        for name, attr in COMPONENTS:
            got = getattr(mem, attr) / GIB
            if name not in row:
                cells.append(f"{got:.2f} / -")
                continue
            cell = f"{got:.2f} / {row[name]:.2f}"
            if name in row["compare"]:
                worst[name] = max(worst.get(name, 0.0), abs(got - row[name]))
            else:
                cell = f"[{cell}]"
            cells.append(cell)
        err = ""
        if "kv" in row:
            rel = mem.kv_bytes / GIB / row["kv"] - 1
            err = f"{rel:+.1%}" if "kv" in row["compare"] else f"[{rel:+.1%}]"
            if "kv" in row["compare"]:
                kv_errors.append(abs(rel))
        flags = ", ".join(f"{k}={v}" for k, v in row["flags"].items())
        t.add_row(row.get("engine", "vllm"), row["model"], str(row["tp"]), flags, *cells, err, row["source"].split(" ")[0])
    console = Console(width=250)
    console.print(t)
    console.print("largest |error| where comparable: "
                  + ", ".join(f"{k} {v:.2f} GiB" for k, v in worst.items())
                  + (f"; KV {max(kv_errors):.1%}" if kv_errors else ""))
    for row in ROWS:
        if row.get("note"):
            console.print(f"note ({row['model']} tp {row['tp']}, {row['source'].split(' ')[0]}): {row['note']}",
                          style="dim")

    e = Table(title="the shared deployments under each engine's start-up accounting (KV GiB per GPU, tokens)",
              title_justify="left")
    for col in ("model", "tp", "vllm", "sglang", "trtllm"):
        e.add_column(col, justify="left" if col == "model" else "right")
    for row in (r for r in ROWS if r["kind"] == "shared"):
        run, _ = predict(row)
        cells = []
        for engine in ("vllm", "sglang", "trtllm"):
            m = engine_memory(run, engine, **({"block_size": 128} if engine == "vllm" else {}))
            cells.append(f"{m.kv_bytes / GIB:.2f} ({m.kv_tokens:,})")
        e.add_row(row["model"], str(row["tp"]), *cells)
    console.print(e)


if __name__ == "__main__":
    main()
