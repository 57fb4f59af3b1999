"""Ensembles: several fine-tuned runs of one task whose probabilities are averaged.

Members trained from the same base model with different seeds (or settings) make different
mistakes; averaging their probabilities is a plain, honest way to gain accuracy, paid for with
one forward pass per member at inference. An ensemble is a directory like any run: `goldmine.json`
lists the member directories, and `Model.load` returns an `EnsembleModel`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from goldmine.errors import ModelError
from goldmine.inference.model import Model, RunMeta


class EnsembleModel(Model):
    """Averages member probabilities. Every member encodes inputs identically (checked when built)."""

    def __init__(self, members: list[Model], meta: RunMeta):
        _check_compatible([m.meta for m in members])
        self.members = members
        self.task = members[0].task
        self.meta = meta
        self.batch_size = members[0].batch_size

    @property
    def runtime(self) -> str:
        """The members' runtime (each member picks its own with `runtime="auto"`), or `mixed`."""
        names = {m.runtime for m in self.members}
        return names.pop() if len(names) == 1 else "mixed"

    def describe_runtime(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "members": [m.describe_runtime() for m in self.members]}

    def iter_logits(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        raise ModelError("an ensemble averages its members' probabilities; it has no logits of its own")

    def iter_probabilities(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Members sort the same features the same way, so their batches line up index for index.
        streams = [m.iter_probabilities(features) for m in self.members]
        for outputs in zip(*streams, strict=True):
            idx = outputs[0][0]
            yield idx, np.mean([probs for _, probs in outputs], axis=0)


def _check_compatible(metas: list[RunMeta]) -> None:
    if not metas:
        raise ModelError("an ensemble needs at least one member")
    first = metas[0]
    for meta in metas[1:]:
        for key in ("task", "label_names", "base_model", "max_length", "document_context", "context_length", "pair",
                    "case_features"):
            if getattr(meta, key) != getattr(first, key):
                theirs, ours = getattr(first, key), getattr(meta, key)
                raise ModelError(f"ensemble members differ in {key}: {theirs!r} vs {ours!r}")


def build_ensemble(run_dirs: Sequence[str | Path], output_dir: str | Path) -> Path:
    """Write an ensemble directory over `run_dirs` (kept where they are, referenced by relative path)."""
    output_dir = Path(output_dir)
    runs = [Path(d).resolve() for d in run_dirs]
    metas = [RunMeta.load(d) for d in runs]
    _check_compatible(metas)
    output_dir.mkdir(parents=True, exist_ok=True)
    first = metas[0]
    meta = RunMeta(
        task=first.task, label_names=first.label_names, base_model=first.base_model, strategy="ensemble",
        pooling=first.pooling, max_length=first.max_length, document_context=first.document_context,
        context_length=first.context_length, pair=first.pair, case_features=first.case_features,
        members=[os.path.relpath(d, output_dir.resolve()) for d in runs],
        extra={"member_strategies": [m.strategy for m in metas]},
    )
    meta.save(output_dir)
    return output_dir
