"""The layer contract (pyproject.toml, [tool.importlinter]): each package imports only from the layers below it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytest.importorskip("importlinter", reason="import-linter is a dev dependency: pip install -e '.[dev]'")


def lint(config: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(config), "--no-cache"], cwd=REPO,
                          capture_output=True, text=True)


def test_packages_import_only_downward():
    out = lint(REPO / "pyproject.toml")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "simcore layers KEPT" in out.stdout


def test_a_back_edge_fails_naming_the_import(tmp_path):
    """The same contract with engine above run: run.static -> engine.des is then an upward import."""
    text = (REPO / "pyproject.toml").read_text()
    swapped = text.replace('    "run | serving",\n    "graph",\n    "engine",\n', '    "engine",\n    "run | serving",\n    "graph",\n')
    assert swapped != text
    config = tmp_path / "pyproject.toml"
    config.write_text(swapped)
    out = lint(config)
    assert out.returncode == 1
    assert "simcore layers BROKEN" in out.stdout
    assert "simcore.run.static -> simcore.engine.des" in out.stdout
