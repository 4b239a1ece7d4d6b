"""Where the model and hardware catalogs live, and lookup of entries by name.

Search order: $SIMCORE_CATALOG (a folder holding models/ and hardware/), the checkout
this package sits in, then the copy shipped inside an installed wheel (simcore/_data).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from simcore.errors import unknown

_PACKAGE = Path(__file__).resolve().parent.parent


@cache
def catalog_root() -> Path:
    env = os.environ.get("SIMCORE_CATALOG")
    candidates = [Path(env)] if env else []
    candidates += [_PACKAGE.parent, _PACKAGE / "_data"]
    for root in candidates:
        if (root / "models").is_dir() and (root / "hardware").is_dir():
            return root
    raise FileNotFoundError(f"no simcore catalog in {', '.join(map(str, candidates))}")


def entries(folder: str, suffix: str) -> dict[str, Path]:
    """name -> path for every catalog file under catalog_root()/folder."""
    base = catalog_root() / folder
    return {p.name[: -len(suffix)]: p for p in sorted(base.glob(f"*{suffix}"))}


def resolve(kind: str, folder: str, suffix: str, name: str) -> Path:
    """A catalog name or a path to a file; unknown names list close matches."""
    path = Path(name).expanduser()
    if name.endswith(suffix) or os.sep in name:
        if path.is_file():
            return path
    found = entries(folder, suffix)
    if name in found:
        return found[name]
    raise unknown(kind, name, found)
