"""Frozen encoder: only the task head trains. Fast, tiny to store, and a floor for what tuning adds."""

from __future__ import annotations

from torch import nn

from goldmine.registry import STRATEGIES
from goldmine.tuning.base import TuningMethod, head_parameter_names


@STRATEGIES.register("freeze")
class FrozenEncoder(TuningMethod):
    name = "freeze"

    def apply(self, model: nn.Module, config) -> nn.Module:
        head = set(head_parameter_names(model))
        for name, param in model.named_parameters():
            param.requires_grad_(name in head)
        return model
