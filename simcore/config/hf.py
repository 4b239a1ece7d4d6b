"""Models named by their Hugging Face id ("meta-llama/Llama-3.1-70B").

An id resolves, in order, to: the catalog entry that carries it (models/hf_ids.yaml), the
config.json in the local Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else
~/.cache/huggingface/hub; layout models--org--name/snapshots/<rev>/config.json), and, when the
user allows the network (huggingface_hub installed, HF_HUB_OFFLINE unset), a download of that
config.json alone: never weights, never remote code. Gated models use the user's token
(huggingface_hub reads HF_TOKEN or the saved login).
"""

from __future__ import annotations

import os
import re
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from simcore.config.catalog import catalog_root, entries
from simcore.errors import SimcoreError, close_matches

INDEX = "hf_ids.yaml"  # in the models/ folder: catalog name -> its Hugging Face ids
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = {"1", "on", "true", "yes"}


@cache
def hf_index() -> dict[str, str]:
    """lower-cased Hugging Face id -> catalog name."""
    path = catalog_root() / "models" / INDEX
    if not path.is_file():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    return {hf.lower(): name for name, ids in raw.items() for hf in ids}


def catalog_hf_ids() -> dict[str, list[str]]:
    """catalog name -> its Hugging Face ids, as written in the index."""
    path = catalog_root() / "models" / INDEX
    raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    return {name: list(ids) for name, ids in (raw or {}).items()}


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"


def cache_label(path: Path) -> str | None:
    """'org/name' for a config.json inside a cache snapshot, else None."""
    snap = path.parent.parent
    repo = snap.parent.name
    if path.name == "config.json" and snap.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/", 1)
    return None


def cached_config(hf_id: str) -> Path | None:
    """The cached config.json of `hf_id`: the snapshot refs/main points at, else the newest one."""
    repo = hub_cache() / ("models--" + hf_id.replace("/", "--"))
    if not repo.is_dir():  # ids are case-insensitive on the Hub; the cache keeps the spelling used
        low = repo.name.lower()
        repo = next((p for p in repo.parent.glob("models--*") if p.name.lower() == low), repo)
    main = repo / "refs" / "main"
    if main.is_file():
        hit = repo / "snapshots" / main.read_text().strip() / "config.json"
        if hit.is_file():
            return hit
    found = sorted((repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def online() -> bool:
    """Downloads are allowed: huggingface_hub is installed and the user has not set HF_HUB_OFFLINE."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return False
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return False
    return True


def download_config(hf_id: str) -> Path:
    """config.json alone, into the user's cache; the token comes from the user's login or HF_TOKEN."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(hf_id, "config.json", cache_dir=hub_cache()))
    except GatedRepoError:
        raise SimcoreError(f"model: {hf_id} is gated on Hugging Face: accept its licence on the model page and log in "
                           f"(huggingface-cli login, or set HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise unknown_model(hf_id, "not on Hugging Face either (or private: log in to see it)") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise SimcoreError(f"model: {hf_id}: cannot download its config.json ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); set HF_HUB_OFFLINE=1 to "
                           f"use the local cache only, or give a path to a config.json") from None


def unknown_model(name: str, why: str) -> SimcoreError:
    names = list(entries("models", ".json"))
    ids = [hf for hfs in catalog_hf_ids().values() for hf in hfs]
    hint = close_matches(name, names + ids) or close_matches(name.lower(), [n.lower() for n in names + ids])
    return SimcoreError(f"model: {name!r}: {why}{hint}; give a catalog name ({', '.join(names)}), a Hugging Face id "
                        f"(e.g. {ids[0] if ids else 'org/name'}) or a path to a config.json")


def resolve_hf(name: str) -> tuple[Path, str] | None:
    """(config.json path, model name) for a Hugging Face id; None when `name` is not shaped like one.
    Catalog ids give the catalog entry and its catalog name; other ids are named by the id."""
    if not HF_ID.match(name):
        return None
    hit = hf_index().get(name.lower())
    if hit:
        found = entries("models", ".json")
        if hit in found:
            return found[hit], hit
    path = cached_config(name)
    where = f"not in the catalog nor in the local Hugging Face cache {hub_cache()}"
    if path is None and online():
        if not reachable():
            raise unknown_model(name, f"{where}, and {endpoint()} cannot be reached")
        path = download_config(name)
    if path is None:
        why = where + ("" if os.environ.get("HF_HUB_OFFLINE") else "; install huggingface_hub (pip install "
                       "'simcore[hf]') to download its config.json")
        raise unknown_model(name, why)
    return path, name


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def reachable(timeout_s: float = 3.0) -> bool:
    """One quick connection attempt: huggingface_hub would otherwise retry for half a minute offline."""
    url = urlsplit(endpoint())
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout_s).close()
    except (OSError, ValueError):
        return False
    return True
