"""The catalogs ship inside the wheel, so an installed simcore finds them without a checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_the_catalogs(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("simcore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in (ROOT / "models").glob("*.json"):
        assert f"simcore/_data/models/{model.name}" in names
    for path in (ROOT / "hardware").rglob("*.yaml"):
        assert f"simcore/_data/hardware/{path.relative_to(ROOT / 'hardware')}" in names
    # what `simcore validate` merges into silicon rows (simcore/validate/provenance.py reads it as package data)
    data = {p.name for p in (ROOT / "simcore" / "validate" / "data").glob("*.json")}
    assert data == {"silicon_provenance.json", "silicon_disagg.json"}
    assert {f"simcore/validate/data/{n}" for n in data} <= names
