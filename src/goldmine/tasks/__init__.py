"""Tasks by name: `classification`, `multilabel`, `ner`. Importing this package registers them."""

from goldmine.registry import Registry

TASKS: Registry = Registry("task")

from goldmine.tasks import sequence_classification, token_classification  # noqa: E402,F401  (registration)
