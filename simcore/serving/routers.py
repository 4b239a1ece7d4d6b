"""Routers: which data-parallel replica an arriving request joins. Register one with @router."""

from __future__ import annotations

from simcore.registry import Registry

_REGISTRY: Registry = Registry("router (field 'serving.router')", __name__)


def router(fn):
    return _REGISTRY.register(fn.__name__, fn)


@router
def round_robin(replicas, reqs, r: int, seen: int) -> int:
    return seen % len(replicas)


@router
def least_outstanding(replicas, reqs, r: int, seen: int) -> int:
    """The replica with the fewest tokens still to process (prompt + output of what it holds)."""
    return min(range(len(replicas)), key=lambda i: (replicas[i].outstanding, i))


@router
def prefix_affinity(replicas, reqs, r: int, seen: int) -> int:
    """Requests of one session or system prompt go to one replica, so its prefix cache can hit;
    others go round robin."""
    if reqs.session[r] >= 0:
        return int(reqs.session[r]) % len(replicas)
    if reqs.prefix_group[r] >= 0:
        return int(reqs.prefix_group[r]) % len(replicas)
    return seen % len(replicas)


def get_router(name: str, field: str = "serving.router"):
    return _REGISTRY.get(name, f"router (field '{field}')")
