"""Shared fixtures: write experiment files into tmp_path and call the CLI in-process."""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SILICON_ROWS = REPO / "tests" / "data" / "validate" / "silicon_rows.json"  # four rows, three simulated


def load_benchmark(name: str):
    """A script of benchmarks/ imported as a module (its functions tested directly)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

# A small, fast, valid experiment; tests change one thing at a time.
BASE_EXPERIMENT = {
    "name": "base",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "parallelism": {"tp": 1, "pp": 1, "dp": 1, "ep": 1},
    "precision": {"weights": "bf16", "activations": "bf16"},
    "inference": {"kvcache_precision": "bf16", "kvcache_type": "hbm", "kvcache_fetch_overlap": False},
    "workload": {"kind": "static", "batch_size": 1, "prompt_tokens": 128, "output_tokens": 16},
}


def _merge(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def write_experiment(tmp_path):
    """write_experiment(**changes) -> Path of BASE_EXPERIMENT merged with `changes` (nested dicts merge);
    drop=("workload.prompt_tokens",) removes dotted fields; text="..." writes the text verbatim."""
    counter = iter(range(1_000_000))

    def write(text: str | None = None, drop: tuple[str, ...] = (), **changes) -> Path:
        path = tmp_path / f"exp{next(counter)}.yaml"
        if text is None:
            data = _merge(BASE_EXPERIMENT, changes)
            for dotted in drop:
                *parents, leaf = dotted.split(".")
                node = data
                for p in parents:
                    node = node[p]
                del node[leaf]
            text = yaml.safe_dump(data, sort_keys=False)
        path.write_text(text)
        return path

    return write


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def __iter__(self):  # rc, out, err = cli(...)
        return iter((self.rc, self.out, self.err))


@pytest.fixture
def cli(capsys, monkeypatch):
    """cli("run", path, "--json") -> Result(rc, stdout, stderr), calling simcore.cli.main in-process.
    COLUMNS is cleared so captured tables get the CLI's wide off-terminal width wherever tests run."""
    from simcore.cli import main

    monkeypatch.delenv("COLUMNS", raising=False)

    def call(*argv) -> Result:
        capsys.readouterr()  # drop anything printed before
        rc = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return call


@pytest.fixture
def bad(cli):
    """bad(*argv, contains=[...]) runs the CLI and checks the bad-input contract: exit 2, nothing on
    stdout, exactly one stderr line starting with 'error:' and holding every string in `contains`.
    Returns that line."""

    def check(*argv, contains=()) -> str:
        r = cli(*argv)
        assert r.rc == 2, f"exit {r.rc}, stderr: {r.err!r}"
        assert r.out == "", f"stdout should be empty on bad input: {r.out!r}"
        lines = r.err.splitlines()
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {r.err!r}"
        line = lines[0]
        assert line.startswith("error: "), line
        assert "Traceback" not in line
        for piece in contains:
            assert piece in line, f"{piece!r} not in {line!r}"
        return line

    return check
