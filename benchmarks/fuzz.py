"""A long fuzz campaign over every input surface, through the real CLI entry (simcore.cli.main).

    python benchmarks/fuzz.py [--cases 2100] [--seed 0] [--timeout 10] [--memory-gib 2] [--show 5] [--surfaces a,b]

Cases come from tests/fuzz_surfaces.py (mutated experiment YAML, --set, config.json, trace CSV/JSONL,
empirical lengths, sweep files and filter expressions, GPU YAML, plan flags), tests/fuzz_sections.py
(training workloads, speculative decoding, KV retention and placement, engine profiles, mixed-GPU
disaggregation, pipelined replicas, attention_dp, all_ranks, warm-up) and tests/fuzz_commands.py
(plan/recommend --training, recommend's serving mode, plan's engine flags, validate on vLLM / SGLang /
silicon-row files, calibrate, profile, Hugging Face ids offline). --surfaces picks some. Each runs in a forked
child with --timeout seconds of wall time and --memory-gib more address space than the parent. The
table counts outcomes per surface: clean error (exit 2, one 'error:' line), ok (exit 0, finite and
sane output), long simulation (a timeout in flattened mode, documented as slow at large tp in
docs/experiments.md), traceback (an exception escaped or the last-resort handler caught one), hang,
memory, nonsense (a wrong answer, or an error report that breaks the one-line contract). The target
is zero in the last four columns. Examples of each outcome past `ok` follow the table.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzz_surfaces import SURFACES, run_bounded  # noqa: E402

CLASSES = ("clean error", "ok", "long simulation", "traceback", "hang", "memory", "nonsense")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds of wall time per case")
    ap.add_argument("--memory-gib", type=float, default=2.0, help="address space per case beyond the parent's")
    ap.add_argument("--show", type=int, default=5, help="examples printed per bad outcome class")
    ap.add_argument("--surfaces", default="", help="comma-separated surfaces to attack (default: all)")
    args = ap.parse_args()

    import simcore.cli  # noqa: F401 - imported once here, so each forked case starts warm
    import simcore.runner  # noqa: F401
    import simcore.sweep.run  # noqa: F401

    rng = random.Random(args.seed)
    names = [s.strip() for s in args.surfaces.split(",") if s.strip()] or list(SURFACES)
    unknown = [s for s in names if s not in SURFACES]
    if unknown:
        ap.error(f"unknown surface {unknown[0]!r}; allowed: {', '.join(SURFACES)}")
    counts: dict[str, collections.Counter] = {s: collections.Counter() for s in names}
    bad: dict[str, list] = collections.defaultdict(list)
    start = time.perf_counter()
    tty = sys.stderr.isatty()
    for i in range(args.cases):
        surface = names[i % len(names)]
        case = SURFACES[surface](rng)
        with tempfile.TemporaryDirectory() as folder:
            outcome, detail = run_bounded(case, Path(folder), args.timeout, int(args.memory_gib * 2**30))
        counts[surface][outcome] += 1
        if outcome not in ("ok", "clean error"):  # long simulations are listed too, to be judged by eye
            bad[outcome].append((surface, detail, case))
        if tty:
            print(f"\r{i + 1}/{args.cases} cases", end="", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    wall = time.perf_counter() - start

    width = max(map(len, names)) + 2
    print(f"fuzz campaign: {args.cases} cases, seed {args.seed}, {args.timeout:g} s and {args.memory_gib:g} GiB "
          f"per case, {wall:.0f} s wall")
    print("surface".ljust(width) + "".join(c.rjust(17) for c in CLASSES) + "total".rjust(8))
    total = collections.Counter()
    for s in names:
        total.update(counts[s])
        print(s.ljust(width) + "".join(str(counts[s][c]).rjust(17) for c in CLASSES)
              + str(sum(counts[s].values())).rjust(8))
    print("all".ljust(width) + "".join(str(total[c]).rjust(17) for c in CLASSES) + str(sum(total.values())).rjust(8))
    for outcome, items in bad.items():
        print(f"\n{outcome}: {len(items)}")
        for surface, detail, case in items[: args.show]:
            files = "; ".join(f"{n}: {v[:200]!r}" for n, v in case.files.items())
            print(f"  [{surface}] {detail}\n    argv: {' '.join(case.argv)}\n    files: {files}")
    return 1 if any(total[c] for c in CLASSES[3:]) else 0


if __name__ == "__main__":
    sys.exit(main())
