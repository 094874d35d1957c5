"""A small name → object registry shared by methods, models and datasets."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lower-case names to registered objects (classes or builder functions).

    Args:
        kind: what the registry holds, used in error messages (e.g. ``"method"``).

    Raises:
        ValueError: on a duplicate registration.
        datadistill.errors.UnknownNameError: on lookup of an unknown name; the message lists the
            registered names and the closest match.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``."""
        key = name.lower()

        def decorate(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        from datadistill.errors import UnknownNameError

        key = str(name).lower()
        if key not in self._items:
            close = difflib.get_close_matches(key, self._items, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}: expected one of {', '.join(sorted(self._items))}{hint}"
            )
        return self._items[key]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_submodules(package: str, path: Iterable[str]) -> list[str]:
    """Import every module of the package ``package`` (its ``__name__``) found on ``path`` (its
    ``__path__``), so that each registers what it defines: a new method, model or dataset is one
    file, with no import list to edit. Returns the imported modules' names, in file-name order.

    Raises:
        Whatever a module raises on import (a broken module of the package is a bug, not a plugin).
    """
    names = [info.name for info in sorted(pkgutil.iter_modules(list(path)), key=lambda i: i.name)]
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
