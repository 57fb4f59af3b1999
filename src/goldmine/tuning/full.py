"""Full fine-tuning: every weight trains. The strongest default when data is not tiny."""

from __future__ import annotations

from torch import nn

from goldmine.tuning import STRATEGIES


@STRATEGIES.register("full")
def apply_full(model: nn.Module, config) -> nn.Module:
    model.requires_grad_(True)
    return model
