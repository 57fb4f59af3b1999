"""Tuning strategies by name: `full`, `freeze`, `lora` (declared in `goldmine.registry`, imported on first use).

Each is one module holding a `TuningMethod` (`goldmine.tuning.base`): its config checks, how it prepares the
model for training, and how its weights are saved to and loaded from a run directory.
"""

from goldmine.registry import STRATEGIES

__all__ = ["STRATEGIES"]
