"""Tasks by name: `classification`, `multilabel`, `ner` (declared in `goldmine.registry`, imported on first use).

A task owns everything that differs between tasks: encoding, the model it builds, its loss, how outputs
become answers, its metrics and the agreement rule of the parity gate (`goldmine.tasks.base.Task`).
"""

from goldmine.registry import TASKS

__all__ = ["TASKS"]
