"""Where the classification head starts: random, or the linear probe's weights (LP-FT).

A random head sends large, noisy gradients into the pretrained encoder during the first steps and
distorts features the checkpoint already had right. Fitting the head first on frozen features (a
logistic regression: the same probe the before-vs-after table reports) and fine-tuning from there
is LP-FT (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features"). It pays most where the
frozen encoder is already good, e.g. intents with a sentence-embedding checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from goldmine.errors import ConfigError
from goldmine.evaluation.baselines import LinearProbe


def init_head_from_probe(model: nn.Module, probe: LinearProbe) -> None:
    """Copy the probe's logistic regression into the model's linear head (`model.classifier`)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear) or head.out_features != probe.task.num_labels:
        raise ConfigError(f"training.head_init: 'probe' needs a linear head named 'classifier' with one output per "
                          f"label; {type(model).__name__} has {type(head).__name__}")
    weight, bias = probe.head_weights()
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
