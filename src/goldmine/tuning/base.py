"""What a tuning strategy provides: config checks, model preparation, and saving/loading of its weights.

A method that trains every weight saves a full model; one that trains an adapter (LoRA) saves the adapter,
which loads over the unchanged base model. The trainer, the run directory writer and `Model.load` call these
hooks instead of asking which strategy ran, so a new method is one module plus its registry line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from torch import nn

if TYPE_CHECKING:
    from goldmine.config import TrainConfig
    from goldmine.data.schema import LabeledData


class TuningMethod(ABC):
    """One tuning strategy. Registered under its `name` in `goldmine.registry.STRATEGIES`."""

    name: ClassVar[str]
    adapter: ClassVar[bool] = False  # the run directory holds an adapter that loads over the unchanged base model
    builds_model: ClassVar[bool] = False  # makes the finished model itself (`build`) instead of the Trainer recipe
    export_refusal: ClassVar[str | None] = None  # why `goldmine export` refuses this method's runs (None: it does not)

    def __init__(self) -> None:
        self.summary: dict = {}  # what `build` made, recorded in the run's goldmine.json under the method's name

    def check(self, config: TrainConfig) -> None:
        """Raise `ConfigError` for settings this method cannot honour (before anything is loaded)."""
        return

    @abstractmethod
    def apply(self, model: nn.Module, config: TrainConfig) -> nn.Module:
        """The model to train: the same module with some weights frozen, or a wrapper (e.g. peft's)."""

    def build(self, task, base: str, config: TrainConfig, train: LabeledData | None) -> nn.Module:
        """The finished model, for a method with `builds_model` (e.g. zero-shot from label descriptions)."""
        raise NotImplementedError(f"tuning strategy {self.name!r} trains with the Trainer recipe (apply)")

    def resolve_base(self, task_cls, name: str) -> str:
        """`model.name` as `from_pretrained` takes it: the task's models by default (a method that builds on another
        kind of model, such as a decoder, resolves its own)."""
        return task_cls.resolve_base(name)

    def labels(self, config: TrainConfig) -> list[str] | None:
        """The label names when the method defines them (a label file), else None: they come from the data."""
        return None

    def save(self, model: nn.Module, tokenizer, out: Path, config: TrainConfig) -> None:
        """Write the trained weights to the run directory `out` (the tokenizer and metadata are written by the
        caller)."""
        model.save_pretrained(out)

    def load(self, directory: Path, base_model: str, model_class) -> nn.Module:
        """The trained network of a run directory written by `save`, ready for inference."""
        return model_class.from_pretrained(directory)


def head_parameter_names(model: nn.Module) -> list[str]:
    """Parameters outside the pretrained backbone (the freshly initialised head)."""
    prefix = model.base_model_prefix + "."
    return [name for name, _ in model.named_parameters() if not name.startswith(prefix)]
