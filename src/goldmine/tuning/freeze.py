"""Frozen encoder: only the task head trains. Fast, tiny to store, and a floor for what tuning adds."""

from __future__ import annotations

from torch import nn

from goldmine.tuning import STRATEGIES


def head_parameter_names(model: nn.Module) -> list[str]:
    """Parameters outside the pretrained backbone (the freshly initialised head)."""
    prefix = model.base_model_prefix + "."
    return [name for name, _ in model.named_parameters() if not name.startswith(prefix)]


@STRATEGIES.register("freeze")
def apply_freeze(model: nn.Module, config) -> nn.Module:
    head = set(head_parameter_names(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in head)
    return model
