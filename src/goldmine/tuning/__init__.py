"""Tuning strategies by name: `full`, `freeze`, `lora`. Each is one module with an `apply` function."""

from goldmine.registry import Registry

STRATEGIES: Registry = Registry("tuning strategy")

from goldmine.tuning import freeze, full, lora  # noqa: E402,F401  (registration)
