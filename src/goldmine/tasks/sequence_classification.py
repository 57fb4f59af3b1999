"""Single- and multi-label text (and text-pair) classification with a pooled encoder."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, DataCollatorWithPadding

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import ConfigError, DataError, DataIssue
from goldmine.modeling.pooled_classifier import PooledEncoderForSequenceClassification, load_encoder
from goldmine.tasks import TASKS
from goldmine.tasks.base import Encoded, Task


@TASKS.register("classification")
class SequenceClassification(Task):
    """One label per text. Pairs (text_a, text_b) are encoded as one sequence with a separator."""

    name = "classification"
    kinds = (DataKind.TEXT, DataKind.PAIR)
    auto_class = "AutoModelForSequenceClassification"

    def build_model(self, base: str, config_overrides: dict[str, Any]) -> nn.Module:
        config = AutoConfig.from_pretrained(
            base,
            num_labels=self.num_labels,
            id2label=dict(enumerate(self.label_names)),
            label2id=self.label2id,
            problem_type="multi_label_classification" if self.multi_label else "single_label_classification",
        )
        # Set after loading: from_pretrained drops keyword arguments that are not attributes of the config class
        # (`goldmine_pooling` always; `classifier_dropout` for encoders such as DistilBERT).
        for key, value in config_overrides.items():
            setattr(config, key, value)
        pooling = config_overrides.get("goldmine_pooling", "mean")
        backbone = load_encoder(AutoModel.from_pretrained, base, pooling)
        if pooling == "pooler" and getattr(backbone, "pooler", None) is None:
            raise ConfigError(f"model.pooling: 'pooler' needs an encoder with a pooler layer and {base} has none; "
                              "use mean or cls")
        return PooledEncoderForSequenceClassification(config, encoder=backbone)

    @classmethod
    def labels_from(cls, data: LabeledData) -> list[str]:
        names = data.label_names()
        if not cls.multi_label and len(names) < 2:
            reason = f"classification needs at least two labels; every training example is labelled {names}"
            raise DataError([DataIssue(data.path, 0, reason)])
        return names

    def tokenize(self, texts: list[str], texts_b: list[str] | None = None) -> dict[str, list]:
        return self.tokenizer(texts, texts_b, truncation=True, max_length=self.max_length)

    def label_vector(self, labels: tuple[str, ...]):
        return self.label2id[labels[0]]

    def encode(self, data: LabeledData) -> Encoded:
        unknown = [
            DataIssue.at(ex.source, f"label {label!r} is not one of the model's labels {self.label_names}")
            for ex in data.examples for label in ex.labels if label not in self.label2id
        ]
        if unknown:
            raise DataError(unknown, header=f"{data.path} has labels the model does not know")
        texts = [ex.text for ex in data.examples]
        texts_b = [ex.text_b for ex in data.examples] if data.kind is DataKind.PAIR else None
        enc = self.tokenize(texts, texts_b)
        full = self.tokenizer(texts, texts_b, truncation=False)["input_ids"]
        truncated = sum(len(ids) > self.max_length for ids in full)
        features = [
            {
                "input_ids": enc["input_ids"][i],
                "attention_mask": enc["attention_mask"][i],
                **({"token_type_ids": enc["token_type_ids"][i]} if "token_type_ids" in enc else {}),
                "labels": self.label_vector(ex.labels),
            }
            for i, ex in enumerate(data.examples)
        ]
        return Encoded(features, truncated)

    def collator(self):
        return DataCollatorWithPadding(self.tokenizer)

    def class_frequencies(self, data: LabeledData) -> np.ndarray:
        counts = np.zeros(self.num_labels)
        for ex in data.examples:
            for label in ex.labels:
                counts[self.label2id[label]] += 1
        return counts

    def loss_function(self, class_weights: torch.Tensor | None, label_smoothing: float):
        def loss(outputs, labels, num_items_in_batch=None):
            return nn.functional.cross_entropy(
                outputs.logits, labels, weight=class_weights, label_smoothing=label_smoothing
            )

        return loss

    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def dev_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import f1_score

        return {
            "accuracy": float((predictions == label_ids).mean()),
            "macro_f1": float(f1_score(label_ids, predictions, average="macro", zero_division=0)),
        }

    @property
    def default_metric(self) -> str:
        return "accuracy"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)


@TASKS.register("multilabel")
class MultiLabelClassification(SequenceClassification):
    """Any number of labels per text: one sigmoid per label, BCE loss, 0.5 threshold."""

    name = "multilabel"
    multi_label = True
    threshold = 0.5

    def label_vector(self, labels: tuple[str, ...]):
        vector = [0.0] * self.num_labels
        for label in labels:
            vector[self.label2id[label]] = 1.0
        return vector

    def balanced_class_weights(self, data: LabeledData) -> torch.Tensor:
        """For BCE, balance means a positive weight per label: negatives / positives."""
        positives = self.class_frequencies(data)
        return torch.tensor((len(data) - positives) / np.maximum(positives, 1), dtype=torch.float32)

    def loss_function(self, class_weights: torch.Tensor | None, label_smoothing: float):
        def loss(outputs, labels, num_items_in_batch=None):
            return nn.functional.binary_cross_entropy_with_logits(
                outputs.logits, labels.to(outputs.logits.dtype), pos_weight=class_weights
            )

        return loss

    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.sigmoid() > self.threshold).to(torch.int8)

    def dev_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import f1_score

        truth = label_ids.astype(int)
        return {
            "accuracy": float((predictions == truth).all(axis=1).mean()),
            "macro_f1": float(f1_score(truth, predictions, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(truth, predictions, average="micro", zero_division=0)),
        }

    @property
    def default_metric(self) -> str:
        return "micro_f1"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()
