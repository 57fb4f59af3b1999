"""Name -> implementation registries, so configs refer to stable names instead of code paths.

A new reader, task or tuning strategy registers itself with one decorator line; nothing else
in the code base needs an `if` for it.
"""

from __future__ import annotations

from collections.abc import Callable
from difflib import get_close_matches
from typing import Generic, TypeVar

from goldmine.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of implementations with helpful errors for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            hint = get_close_matches(name, self._items, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            choices = sorted(self._items)
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {choices}{suggestion}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
