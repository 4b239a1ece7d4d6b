"""Scheduler policies: which sequences an engine iteration runs. One policy per file here.

A policy is a class with `name`, `description` and `schedule(replica) -> Plan`; the module
calls `register(Cls)`. A new policy is a new file. The replica (simcore.serving.replica)
offers the moves a policy combines: decode_all, continue_prefills, admit. The decode slots a
policy returns are decode_all()'s (every sequence past its prefill) or no_decodes(); the step
books decodes for all of them, so a policy takes them whole or not at all.

A policy may set `idle_decodes = True`: it promises that when nothing waits and nothing is
prefilling, schedule() is decode_all() and nothing else (no state of its own changes). The
replica then runs such steps without calling it (Replica.coast); tests/test_serving_coast.py
checks the promise against one schedule() per step.
"""

from __future__ import annotations

from simcore.registry import Registry

_REGISTRY: Registry[type] = Registry("scheduler (field 'serving.scheduler')", __name__)


def register(cls: type) -> type:
    return _REGISTRY.register(cls.name, cls)


def scheduler_names() -> list[str]:
    return _REGISTRY.names()


def get_scheduler(name: str):
    return _REGISTRY.get(name)()
