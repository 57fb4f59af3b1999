"""What every task provides: the bridge between `LabeledData`, a tokenizer, a model and its outputs.

Training and inference both go through a task, so a text is encoded the same way when the
model learns from it, when it is evaluated and when it is served.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import DataError, DataIssue


@dataclass
class Encoded:
    """Model features of a dataset: one dict per model input, plus how many were truncated."""

    features: list[dict[str, Any]]
    truncated: int = 0
    alignment: list[list[int]] | None = None  # token tasks: the word index of each labeled position


class Task(ABC):
    """A task knows its labels, how to encode data, build a model, compute the loss and decode outputs."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[DataKind, ...]]
    multi_label: ClassVar[bool] = False
    auto_class: ClassVar[str]  # the transformers Auto class that loads the saved model

    def __init__(self, label_names: list[str], tokenizer, max_length: int = 128, **options):
        self.label_names = list(label_names)
        self.label2id = {name: i for i, name in enumerate(self.label_names)}
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.options = options

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @classmethod
    def check_kind(cls, data: LabeledData) -> None:
        if data.kind not in cls.kinds:
            expected = " or ".join(k.value for k in cls.kinds)
            reason = f"task '{cls.name}' needs {expected} data, this file holds {data.kind.value}"
            raise DataError([DataIssue(data.path, 0, reason)])

    @classmethod
    def labels_from(cls, data: LabeledData) -> list[str]:
        return data.label_names()

    @abstractmethod
    def build_model(self, base: str, config_overrides: dict[str, Any]) -> torch.nn.Module:
        """A model with a fresh head on top of the pretrained `base`."""

    @abstractmethod
    def encode(self, data: LabeledData) -> Encoded:
        """Features with `labels` for training and evaluation."""

    @abstractmethod
    def collator(self) -> Callable:
        """Pads a list of features to the longest in the batch (dynamic padding)."""

    @abstractmethod
    def loss_function(self, class_weights: torch.Tensor | None, label_smoothing: float) -> Callable:
        """`(outputs, labels, num_items_in_batch) -> loss`, as transformers' Trainer calls it."""

    @abstractmethod
    def class_frequencies(self, data: LabeledData) -> np.ndarray:
        """How often each label occurs in `data`, for balanced class weights."""

    def balanced_class_weights(self, data: LabeledData) -> torch.Tensor:
        """Loss weights for `training.class_weights: balanced`, one per label."""
        return balanced_weights(self.class_frequencies(data))

    @abstractmethod
    def dev_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        """Metrics on the Trainer's dev predictions (argmax / thresholded), for early stopping."""

    @abstractmethod
    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """What the Trainer keeps of dev logits: predicted ids, so dev logits never pile up."""

    @property
    def default_metric(self) -> str:
        return "macro_f1"


def balanced_weights(frequencies: np.ndarray) -> torch.Tensor:
    """n / (k * count) per class as in scikit-learn's 'balanced'; unseen classes get weight 1."""
    counts = frequencies.astype(np.float64)
    total, k = counts.sum(), len(counts)
    weights = np.where(counts > 0, total / (k * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)
