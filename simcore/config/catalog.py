"""Where the model and hardware catalogs live, and lookup of entries by name.

Search order: $SIMCORE_CATALOG (a folder holding models/ and hardware/), the checkout
this package sits in, then the copy shipped inside an installed wheel (simcore/_data).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from simcore.errors import SimcoreError, clip, close_matches, unknown

_PACKAGE = Path(__file__).resolve().parent.parent


@cache
def catalog_root() -> Path:
    env = os.environ.get("SIMCORE_CATALOG")
    if env and not ((Path(env) / "models").is_dir() and (Path(env) / "hardware").is_dir()):
        raise SimcoreError(f"SIMCORE_CATALOG = {env!r}: not a simcore catalog (a folder holding models/ and "
                           f"hardware/); point it at one, or unset it to use the built-in catalog")
    candidates = [Path(env)] if env else []
    candidates += [_PACKAGE.parent, _PACKAGE / "_data"]
    for root in candidates:
        if (root / "models").is_dir() and (root / "hardware").is_dir():
            return root
    raise SimcoreError(
        f"no simcore catalog (a folder holding models/ and hardware/) in {', '.join(map(str, candidates))}; "
        f"set SIMCORE_CATALOG to one"
    )


def entries(folder: str, suffix: str) -> dict[str, Path]:
    """name -> path for every catalog file under catalog_root()/folder."""
    base = catalog_root() / folder
    return {p.name[: -len(suffix)]: p for p in sorted(base.glob(f"*{suffix}"))}


def resolve(kind: str, folder: str, suffix: str, name: str) -> Path:
    """A catalog name or a path to a file (or to a folder holding config<suffix>); unknown
    names list close matches, missing paths say so."""
    path = Path(name).expanduser()
    looks_like_path = name.endswith(suffix) or os.sep in name or (os.altsep or os.sep) in name
    if looks_like_path:
        if os.path.isfile(path):  # os.path: False (not OSError) for a name too long to look up
            return path
        if os.path.isdir(path) and os.path.isfile(path / f"config{suffix}"):
            return path / f"config{suffix}"
    found = entries(folder, suffix)
    if name in found:
        return found[name]
    if looks_like_path and (os.sep in name or os.path.exists(path)):
        what = "is a folder without config" + suffix if os.path.isdir(path) else "does not exist"
        stem = path.name.removesuffix(suffix)
        raise SimcoreError(
            f"{kind} file '{clip(name)}' {what}{close_matches(stem, found)}; give a path to a {suffix} file "
            f"or a catalog name: {', '.join(sorted(found))}"
        )
    raise unknown(kind, name, found)
