"""`simcore profile` and `simcore calibrate`. simcore/cli.py calls `register(subparsers)`."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from simcore.errors import SimcoreError
from simcore.report.console import stdout_console


def register(subparsers) -> None:
    p = subparsers.add_parser("profile", help="measure this machine's GPU with microbenchmarks (needs PyTorch)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the microbenchmark JSON (created if missing)")
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats: under 5 minutes")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="GPUs for the collectives (default: every visible GPU; 1 skips them)")
    p.add_argument("--shapes", metavar="FILE.json",
                   help="time the shapes of this microbenchmark file (e.g. another GPU's) instead of the catalog's, "
                   "GEMMs in every dtype this GPU has: a like-for-like comparison")
    p.set_defaults(func=profile_command)

    c = subparsers.add_parser("calibrate", help="fit a GPU's efficiency profile to a `simcore profile` JSON")
    c.add_argument("data", metavar="DATA.json", help="microbenchmark file (`simcore profile` output, or the shared H100 one)")
    c.add_argument("--gpu", required=True, help="GPU name from hardware/gpus the file was measured on")
    c.add_argument("--out", metavar="DIR",
                   help="folder for NAME.yaml (default: the catalog's hardware/efficiency); a folder of your own is "
                   "used once it is on $SIMCORE_EFFICIENCY_PATH")
    c.add_argument("--name", help="profile name (default: the GPU's own profile if it was measured on it, else the GPU name)")
    c.add_argument("--json", action="store_true", help="print the fit (parameters and errors) as JSON instead of tables")
    c.set_defaults(func=calibrate_command)


def calibrate_command(args: argparse.Namespace) -> int:
    from simcore.calibrate import data, fit, write
    from simcore.config.catalog import catalog_root
    from simcore.config.hardware import (PROFILES_ENV, clear_caches, efficiency_path, load_efficiency, load_gpu,
                                         load_system, profile_name)

    bench = data.load(args.data)
    gpu = load_gpu(args.gpu)
    base = load_system(gpu.name)
    own = load_efficiency(gpu.efficiency).measured_on == gpu.name
    name = args.name or (gpu.efficiency if own else gpu.name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise SimcoreError(f"--name {name!r}: a profile name is letters, digits, '.', '_' and '-' (it names the file)")
    result = fit.calibrate(bench, base, name)
    out_dir = Path(args.out) if args.out else catalog_root() / "hardware" / "efficiency"
    if out_dir.exists() and not out_dir.is_dir():
        raise SimcoreError(f"--out {args.out}: is a file; --out takes a folder (created if missing)")
    path = out_dir / f"{name}.yaml"
    try:
        base_text = efficiency_path(base.efficiency.name).read_text()
    except (OSError, SimcoreError):
        base_text = ""
    label = _label(Path(args.data))
    text = write.render(result, label, bench.get("meta", {}) if isinstance(bench.get("meta"), dict) else {}, base_text)
    try:
        write.write(path, text)
    except OSError as exc:
        raise SimcoreError(f"--out {out_dir}: cannot write {path}: {exc.strerror}") from None
    if args.json:
        print(json.dumps(_as_dict(result, path), indent=2))
        return 0
    from simcore.calibrate.tables import params_table, summary_table

    con = stdout_console()
    if result.l2_rows:
        con.print(f"{result.l2_rows} decode_attn rows have KV <= L2: the benchmark reused its KV buffers, so they ran "
                  "partly from L2; they are reported but not fitted.", soft_wrap=True)
    con.print(params_table(result))
    con.print(f"method: {result.method}; sum of squared log errors {result.cost:.4f} over "
              f"{sum(result.rows.values())} rows", soft_wrap=True)
    con.print(summary_table(result.table))
    con.print(f"wrote {path}", soft_wrap=True)
    clear_caches()
    if efficiency_path(profile_name(gpu)).resolve() != path.resolve():
        on_path = os.environ.get(PROFILES_ENV, "").split(os.pathsep)
        if name != gpu.name and name != gpu.efficiency:
            con.print(f"note: {gpu.name} is priced with a profile named {gpu.name} or the one its YAML names "
                      f"({gpu.efficiency}), not {name}", soft_wrap=True)
        elif not any(Path(f).expanduser().resolve() == out_dir.resolve() for f in on_path if f):
            con.print(f"to price {gpu.name} with it: export {PROFILES_ENV}={out_dir}", soft_wrap=True)
    return 0


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _as_dict(c, path: Path) -> dict:
    """The `simcore calibrate --json` document (docs/calibration.md)."""
    return {
        "gpu": c.gpu, "profile": c.efficiency.name, "path": str(path), "method": c.method,
        "fitted": c.fitted, "derived": {k: v for k, (v, _) in c.derived.items()}, "kept_from": c.base,
        "kept": c.kept, "rows": c.rows, "l2_resident_rows": c.l2_rows,
        "errors": {fam: {scope: {"rows": s.count, "median_abs": s.median_abs, "max_abs": s.max_abs}
                         for scope, s in v.items()} for fam, v in c.table.items()},
    }


def profile_command(args: argparse.Namespace) -> int:
    from simcore.calibrate.collect.run import profile_main

    return profile_main(args.out, quick=args.quick, gpus=args.gpus, shapes=args.shapes)
