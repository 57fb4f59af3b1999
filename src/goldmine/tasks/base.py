"""What every task provides: the bridge between `LabeledData`, a tokenizer, a model and its outputs.

Training and inference both go through a task, so a text is encoded the same way when the
model learns from it, when it is evaluated and when it is served. Everything that differs between
tasks lives in the task: encoding, the model and its loss, how outputs become answers (`predict`),
the metrics (`metrics`), the agreement rule of the export parity gate (`agreement`) and the
baselines' pieces. `inference`, `evaluation` and `export` call these and never ask which task runs.

Units: a task labels *units* of an example, one text (classification) or each word (NER). Evaluation,
calibration, the parity gate and the linear probe all work on units:
`unit_probabilities` picks them out of a model's output, `decide` turns them into label ids (or 0/1 rows
for multi-label), `targets` gives the true ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import DataError, DataIssue

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence


class Predictor(Protocol):
    """What a task needs of a loaded model to answer texts: batched probabilities, or logits (and pooled
    embeddings) where an out-of-scope rule reads them (`goldmine.Model`)."""

    def iter_probabilities(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def iter_logits(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def iter_outputs(self, features: Sequence[dict], embeddings: bool = False
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]: ...


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
    peft_task_type: ClassVar[str]  # peft's TaskType name for adapters on this task's model
    default_head_init: ClassVar[str] = "random"  # what `training.head_init: auto` means for this task
    default_ema_decay: ClassVar[float | None] = None  # what `training.ema_decay: auto` means for this task
    out_of_scope = None  # a loaded model's "none of these" rule (goldmine.inference.out_of_scope), if it has one
    trains_itself: ClassVar[bool] = False  # True: its own recipe (`train_run`), not the classification Trainer's
    pairs_optional: ClassVar[bool] = False  # True: a model of it answers single texts and pairs alike
    evaluates_itself: ClassVar[bool] = False  # True: `evaluate_data` scores a whole file at once (retrieval)

    def __init__(self, label_names: list[str], tokenizer, max_length: int = 128, **options):
        self.label_names = list(label_names)
        self.label2id = {name: i for i, name in enumerate(self.label_names)}
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.options = options

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    # LoRA: the modules adapted when `tuning.lora.target_modules` is left at its default (None: that default, the
    # encoders' names), and whether the head outside the base model trains in full beside the adapter
    lora_target_modules: ClassVar[list[str] | None] = None
    lora_trains_head: ClassVar[bool] = True

    @classmethod
    def resolve_base(cls, name: str) -> str:
        """A config's `model.name` as `from_pretrained` takes it (encoders: `goldmine.modeling.backbone`)."""
        from goldmine.modeling.backbone import resolve_base_model

        return resolve_base_model(name)

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

    @classmethod
    def case_types_pay_off(cls, tokenizer, base: str) -> bool:
        """Whether `data.case_features` (each word's capitalisation as its token type) helps this task on `base`."""
        return False

    @abstractmethod
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> probabilities: softmax over labels, or a sigmoid per label (multi-label)."""

    # ---- answers: what `Model.predict` and the server return ----
    @abstractmethod
    def predict(self, model: Predictor, texts: list[str], texts_b: list[str] | None
                ) -> list[tuple[dict[str, Any], int]]:
        """One answer per text (labels with scores, or entities with offsets), each with the number of input
        tokens the network ran on for it (what the server bills)."""

    # ---- units: evaluation, calibration, parity and the probe (see the module docstring) ----
    @abstractmethod
    def unit_probabilities(self, probs: np.ndarray, feature: dict) -> np.ndarray:
        """The probabilities of the labeled units of one encoded example: (1, C) for a text, (W, C) for its W
        labeled words (`probs` is (C,) or (T, C))."""

    @abstractmethod
    def targets(self, feature: dict) -> np.ndarray:
        """The true decisions of the units of one encoded example, shaped as `decide` returns them."""

    def decide(self, unit_probs: np.ndarray) -> np.ndarray:
        """Label ids (U,) from unit probabilities (U, C); multi-label overrides with 0/1 rows (U, C)."""
        return unit_probs.argmax(-1)

    def confidence(self, unit_probs: np.ndarray) -> np.ndarray:
        """How sure each decision is, shaped as `decide` returns them: the top probability (multi-label: of each
        yes/no)."""
        return unit_probs.max(-1)

    @abstractmethod
    def metrics(self, data: LabeledData, encoded: Encoded, decided: list[np.ndarray]) -> dict:
        """The task's scores for `data` from each example's decisions (`decide`, in example order)."""

    def agreement(self, reference: np.ndarray, other: np.ndarray, feature: dict) -> tuple[int, int]:
        """Of one example's units, how many get the same decision from two runtimes' logits (the parity gate's
        label agreement); a multi-label unit agrees when its whole label set does."""
        decisions = [self.decide(self.unit_probabilities(self.probabilities(torch.from_numpy(x)).numpy(), feature))
                     for x in (reference, other)]
        same = (decisions[0] == decisions[1]).reshape(len(decisions[0]), -1).all(axis=1)
        return int(same.sum()), len(same)

    def evaluate_data(self, model, data: LabeledData) -> dict:
        """The metrics of a task whose examples are scored together, not unit by unit (`evaluates_itself`)."""
        raise NotImplementedError(f"task {self.name} is evaluated unit by unit")

    @abstractmethod
    def majority_metrics(self, train: LabeledData, test: LabeledData) -> dict:
        """The scores on `test` of always answering what is most frequent in `train` (the simplest baseline)."""

    # ---- the linear probe (`goldmine.evaluation.baselines`) ----
    def base_model_inputs(self, batch: dict) -> dict:
        """The inputs the pretrained encoder reads for the probe (a task may drop inputs the base model lacks)."""
        return batch

    @abstractmethod
    def probe_vectors(self, hidden: torch.Tensor, attention_mask: torch.Tensor, pooler: torch.Tensor | None,
                      feature: dict, pooling: str) -> np.ndarray:
        """Frozen features of one example's units, (U, H), from the encoder's hidden states (T, H)."""

    @abstractmethod
    def probe_classifier(self):
        """The unfitted scikit-learn classifier the probe fits on unit vectors and `targets`."""


def balanced_weights(frequencies: np.ndarray) -> torch.Tensor:
    """n / (k * count) per class as in scikit-learn's 'balanced'; unseen classes get weight 1."""
    counts = frequencies.astype(np.float64)
    total, k = counts.sum(), len(counts)
    weights = np.where(counts > 0, total / (k * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)
