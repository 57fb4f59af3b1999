"""Name -> implementation registries, so configs refer to stable names instead of code paths.

Each registry declares its names up front with the module that implements each one, and imports that module
only when the name is first used. So a config is checked against every known task and tuning strategy without
importing torch or peft (loading a YAML file stays cheap), and adding a task or strategy is one file plus one
line here. The module registers its implementation with the `register` decorator when it is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from difflib import get_close_matches
from importlib import import_module
from typing import Any, Generic, TypeVar

from goldmine.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of implementations, imported on first use, with helpful errors for unknown names."""

    def __init__(self, kind: str, declared: dict[str, str] | None = None):
        """`declared` maps each name to the module that registers it (imported by `get`)."""
        self.kind = kind
        self._declared = dict(declared or {})
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items and name in self._declared:
            import_module(self._declared[name])
            if name not in self._items:
                raise RuntimeError(f"{self._declared[name]} does not register the {self.kind} {name!r}")
        try:
            return self._items[name]
        except KeyError:
            hint = get_close_matches(name, self.names(), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {self.names()}{suggestion}") from None

    def check(self, name: str) -> None:
        """Raise `get`'s error for an unknown name, without importing anything."""
        if name not in self:
            self.get(name)

    def names(self) -> list[str]:
        return sorted({*self._declared, *self._items})

    def __contains__(self, name: Any) -> bool:
        return name in self._items or name in self._declared


TASKS: Registry = Registry("task", {
    "classification": "goldmine.tasks.sequence_classification",
    "multilabel": "goldmine.tasks.sequence_classification",
    "ner": "goldmine.tasks.token_classification",
    "retrieval": "goldmine.tasks.retrieval",
    "causal_lm": "goldmine.tasks.causal_lm",
})

STRATEGIES: Registry = Registry("tuning strategy", {
    "full": "goldmine.tuning.full",
    "freeze": "goldmine.tuning.freeze",
    "lora": "goldmine.tuning.lora",
    "zeroshot": "goldmine.tuning.zeroshot",
    "fewshot": "goldmine.tuning.fewshot",
    "label_likelihood": "goldmine.tuning.label_likelihood",
})
