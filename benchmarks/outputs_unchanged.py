"""Results do not change: every example experiment's JSON summary, before and after a change.

    python benchmarks/outputs_unchanged.py save DIR        # this tree's outputs into DIR
    python benchmarks/outputs_unchanged.py compare DIR     # this tree against DIR
    python benchmarks/outputs_unchanged.py compare --ref REF   # this tree against git commit REF
                                                               # (exported to a temporary folder)

Cases: each experiments/*.yaml in every engine mode (and flattened runs under every overlap
policy, and with pipeline parallelism), each experiments/serving/*.yaml as written, one of them under
each engine profile and with a cache small enough to preempt, another under each scheduler.
Numbers must be equal or within 1e-9 relative (summation order may change); it prints one
line per case and exits 1 when any differ.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REL = 1e-9
TIMING = {"wall_s"}  # how long the simulator itself took: not a result
WORK = {"events_simulated", "ranks_simulated"}  # how much work the engine did: shown, not compared (a faster engine does less)

STATIC = sorted(p.name for p in (ROOT / "experiments").glob("*.yaml"))
SERVING = sorted(p.name for p in (ROOT / "experiments" / "serving").glob("*.yaml"))
C64, POISSON = "experiments/serving/llama-3.1-8b-closed-c64.yaml", "experiments/serving/llama-3.1-70b-tp4-poisson.yaml"
SERVING_VARIANTS = {
    **{f"c64:engine={e}": (C64, [f"serving.engine={e}"]) for e in ("vllm", "sglang", "trtllm")},
    **{f"tp4-poisson:scheduler={s}": (POISSON, [f"serving.scheduler={s}"])
       for s in ("sarathi", "prefill_first", "static", "sglang", "trtllm")},
    "c64:preempting": (C64, ["engine.gpu_memory_utilization=0.25"]),
    "c64:preempting:sglang": (C64, ["engine.gpu_memory_utilization=0.25", "serving.engine=sglang"]),
}


def cases() -> dict[str, tuple[str, list[str]]]:
    """case name -> (experiment path relative to the repository, overrides)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name in STATIC:
        for mode in ("analytical", "hybrid", "flattened"):
            out[f"{name}:{mode}"] = (f"experiments/{name}", [f"engine.mode={mode}"])
    for policy in ("kv_fetch", "tp_comm", "pp_comm", "all"):
        for mode in ("hybrid", "flattened"):
            out[f"llama-3.1-70b-tp8.yaml:{mode}:{policy}"] = (
                "experiments/llama-3.1-70b-tp8.yaml", [f"engine.mode={mode}", f"engine.overlap_policy={policy}"])
    for policy in ("none", "all"):
        for mode in ("analytical", "hybrid", "flattened"):
            out[f"llama-3.1-70b-tp4-pp2:{mode}:{policy}"] = (
                "experiments/llama-3.1-70b-tp8.yaml",
                [f"engine.mode={mode}", f"engine.overlap_policy={policy}", "parallelism.tp=4", "parallelism.pp=2",
                 "engine.decode_sample_steps=6", "workload.output_tokens=64"])
    for name in SERVING:
        out[f"serving/{name}"] = (f"experiments/serving/{name}", [])
    for name, overrides in SERVING_VARIANTS.items():  # each engine profile and scheduler, and preemption
        out[f"serving/{name}"] = overrides
    return out


CHILD = """
import json, sys
import simcore
assert simcore.__file__.startswith(sys.argv[2]), simcore.__file__
from simcore.config.experiment import load_experiment
from simcore.runner import run
cases = json.loads(sys.argv[1])
out = {}
for name, (path, overrides) in cases.items():
    out[name] = run(load_experiment(path, overrides))[1]
    print(name, file=sys.stderr, flush=True)
print(json.dumps(out))
"""


def outputs(tree: Path) -> dict:
    """Run every case with the simcore package of `tree` (one child process, imports from that tree)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "SIMCORE_CATALOG": str(tree)}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases()), str(tree)], cwd=tree, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"running the cases in {tree} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


_worst = [0.0]  # largest relative difference accepted in the current case


def diffs(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in {'before' if k in a else 'after'}" for k in set(a) ^ set(b)]
        for k in sorted((set(a) & set(b)) - TIMING - WORK):
            out += diffs(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items before, {len(b)} after"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diffs(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and (
                a == b or math.isclose(a, b, rel_tol=REL, abs_tol=1e-300)):
            if a != b:
                _worst[0] = max(_worst[0], abs(a - b) / max(abs(a), abs(b)))
            return []
    elif a == b:
        return []
    return [f"{path}: {a!r} before, {b!r} after"]


def export(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("save", "compare"))
    ap.add_argument("folder", nargs="?", help="where the saved outputs are (one JSON per case)")
    ap.add_argument("--ref", help="compare against this git commit instead of a saved folder")
    a = ap.parse_args()
    t0 = time.perf_counter()
    after = outputs(ROOT)
    if a.action == "save":
        if not a.folder:
            sys.exit("save needs a folder")
        folder = Path(a.folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "outputs.json").write_text(json.dumps(after, indent=1, sort_keys=True))
        print(f"saved {len(after)} cases to {folder}/outputs.json in {time.perf_counter() - t0:.0f} s")
        return
    if a.ref:
        with tempfile.TemporaryDirectory() as tmp:
            before = outputs(export(a.ref, Path(tmp)))
    elif a.folder:
        before = json.loads((Path(a.folder) / "outputs.json").read_text())
    else:
        sys.exit("compare needs a folder or --ref")
    bad = 0
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            print(f"{name:50s} missing {'before' if name not in before else 'after'}")
            continue
        _worst[0] = 0.0
        d = diffs(before[name], after[name])
        bad += bool(d)
        same = "identical" if not _worst[0] else f"same within {_worst[0]:.1e}"
        work = "".join(f" ({k} {before[name][k]:,} -> {after[name][k]:,})" for k in sorted(WORK)
                       if k in before[name] and k in after[name] and before[name][k] != after[name][k])
        print(f"{name:42s} {same if not d else f'{len(d)} differ: ' + '; '.join(d[:3])}{work}")
    print(f"{len(after) - bad}/{len(after)} cases unchanged (within {REL:g} relative), {time.perf_counter() - t0:.0f} s")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
