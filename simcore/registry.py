"""The one registry pattern for policies of every kind: a package whose modules register entries.

A new policy is a new module in the package; the registry imports every module of the
package the first time anyone asks for a name, so nothing lists policies by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

from simcore.errors import unknown

T = TypeVar("T")
_BY_PACKAGE: dict[str, "Registry"] = {}  # package name -> its registry, for lookup()


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind = kind  # how errors name an entry, e.g. "overlap policy"
        self.package = package
        self._entries: dict[str, T] = {}
        self._loaded = False
        _BY_PACKAGE[package] = self

    def register(self, name: str, entry: T) -> T:
        self._entries[name] = entry
        return entry

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            pkg = importlib.import_module(self.package)
            for mod in pkgutil.iter_modules(getattr(pkg, "__path__", ())):  # a plain module: entries live in it
                importlib.import_module(f"{self.package}.{mod.name}")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str, kind: str | None = None) -> T:
        """kind: how the error names the entry when the field asking for it is not the usual one."""
        self._load()
        if name not in self._entries:
            raise unknown(kind or self.kind, name, self._entries)
        return self._entries[name]


def lookup(package: str, name: str, kind: str | None = None):
    """The entry `name` of the registry that lives in `package` (a dotted name). Lets a lower layer
    (the experiment schema) check a policy name without importing the policy package."""
    if package not in _BY_PACKAGE:
        importlib.import_module(package)
    return _BY_PACKAGE[package].get(name, kind)
