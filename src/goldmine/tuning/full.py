"""Full fine-tuning: every weight trains. The strongest default when data is not tiny."""

from __future__ import annotations

from torch import nn

from goldmine.registry import STRATEGIES
from goldmine.tuning.base import TuningMethod


@STRATEGIES.register("full")
class FullFineTuning(TuningMethod):
    name = "full"

    def apply(self, model: nn.Module, config) -> nn.Module:
        model.requires_grad_(True)
        return model
