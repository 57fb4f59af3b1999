"""Load a trained run directory and predict: the one path that `predict`, `eval` (and serving) share.

Batches are sorted by length so padding stays small, and outputs are yielded batch by batch,
so evaluating a large file never holds all logits at once. The forward pass runs on a backend
(`goldmine.inference.runtime`): torch, or onnxruntime on an exported fp32 or int8 graph; the code
around it is the same for all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from goldmine.errors import InputError, ModelError
from goldmine.inference.batching import length_sorted_batches
from goldmine.inference.out_of_scope import OutOfScopeRule
from goldmine.inference.runtime import AUTO, Backend, OnnxBackend, TorchBackend, onnx_path, resolve_runtime
from goldmine.modeling.backbone import load_tokenizer
from goldmine.registry import STRATEGIES, TASKS
from goldmine.tasks.base import Task

META_FILE = "goldmine.json"


@dataclass
class RunMeta:
    """What a run directory must record so it can be loaded and served without its config."""

    task: str
    label_names: list[str]
    base_model: str
    strategy: str = "full"
    pooling: str = "mean"
    max_length: int = 128
    document_context: bool = True
    context_length: int | None = None  # NER context fill in sub-tokens; None (and runs before it existed): max_length
    pair: bool = False  # trained on text pairs (text_a, text_b): predict needs both
    case_features: bool = False  # NER: token types carry each word's capitalisation (see tasks.token_classification)
    adapter: bool = False  # the weights are a peft adapter over `base_model`
    members: list[str] = field(default_factory=list)  # an ensemble: member run directories (relative to this one)
    out_of_scope: dict | None = None  # the "none of these" rule (goldmine.inference.out_of_scope), if any
    extra: dict[str, Any] = field(default_factory=dict)  # fingerprint, versions, timing

    def save(self, directory: Path) -> None:
        (directory / META_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> RunMeta:
        path = directory / META_FILE
        if not path.is_file():
            raise ModelError(f"{directory} is not a goldmine model directory (no {META_FILE})")
        return cls(**json.loads(path.read_text()))


def model_class(task: Task):
    import transformers

    from goldmine.modeling.pooled_classifier import PooledEncoderForSequenceClassification

    if task.auto_class == "AutoModelForSequenceClassification":
        return PooledEncoderForSequenceClassification
    return getattr(transformers, task.auto_class)


def load_weights(directory: Path, meta: RunMeta, task: Task) -> torch.nn.Module:
    """The trained network of a run directory, loaded as its tuning method saved it (a full model, or base +
    adapter merged for speed)."""
    strategy = meta.strategy if meta.strategy in STRATEGIES else ("lora" if meta.adapter else "full")
    return STRATEGIES.get(strategy)().load(directory, meta.base_model, model_class(task))


class Model:
    """A trained goldmine model ready to predict. `Model.load(run_dir).predict(["text", ...])`."""

    def __init__(self, network: torch.nn.Module | None, task: Task, meta: RunMeta, batch_size: int = 64,
                 backend: Backend | None = None):
        """`network` is the torch model; pass `backend` (and `network=None`) to run elsewhere, e.g. onnxruntime."""
        if backend is None and network is None:
            raise ModelError("a Model needs a torch network or a backend")
        self.network = network.eval() if network is not None else None
        self.backend = backend if backend is not None else TorchBackend(self.network)
        self.task = task
        self.meta = meta
        self.batch_size = batch_size

    @classmethod
    def load(cls, directory: str | Path, batch_size: int = 64, runtime: str = AUTO,
             threads: int | None = None) -> Model:
        """Load a run (or ensemble) directory.

        Args:
            runtime: torch | onnx | onnx-int8, or auto: the fastest current export in the directory
                (onnx-int8 > onnx > torch; see `goldmine export`).
            threads: onnxruntime intra-op threads (default: the cores this process may use). The torch
                runtime keeps torch's own setting.
        """
        directory = Path(directory)
        meta = RunMeta.load(directory)
        if meta.members:
            from goldmine.inference.ensemble import EnsembleModel

            members = [cls.load(directory / m, batch_size, runtime, threads) for m in meta.members]
            return EnsembleModel(members, meta)
        chosen = resolve_runtime(directory, runtime)
        tokenizer = load_tokenizer(str(directory))
        task = TASKS.get(meta.task)(
            meta.label_names, tokenizer, meta.max_length, document_context=meta.document_context,
            context_length=meta.context_length, case_features=meta.case_features,
        )
        task.out_of_scope = OutOfScopeRule.from_dict(meta.out_of_scope, directory)
        if chosen == "torch":
            return cls(load_weights(directory, meta, task), task, meta, batch_size)
        backend = OnnxBackend(onnx_path(directory, chosen), chosen, threads)
        return cls(None, task, meta, batch_size, backend=backend)

    @property
    def runtime(self) -> str:
        """Where the forward pass runs: torch | onnx | onnx-int8."""
        return self.backend.name

    def describe_runtime(self) -> dict[str, Any]:
        """Runtime, execution providers and threads (what `goldmine eval` reports beside its metrics)."""
        return self.backend.describe()

    @property
    def labels(self) -> list[str]:
        return self.task.label_names

    def iter_logits(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (indices, logits) per length-sorted batch; float32 logits are (B, C) or (B, T, C)."""
        tensors = self.backend.tensor_type
        for idx, batch in length_sorted_batches(features, self.task.tokenizer, self.batch_size, tensors):
            yield idx, self.backend.logits(batch)

    def iter_outputs(self, features: Sequence[dict], embeddings: bool = False
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Yield (indices, logits, pooled embeddings or None) per length-sorted batch: both from one forward pass
        (what an out-of-scope score on embeddings reads beside the answer)."""
        if not embeddings:
            for idx, logits in self.iter_logits(features):
                yield idx, logits, None
            return
        tensors = self.backend.tensor_type
        for idx, batch in length_sorted_batches(features, self.task.tokenizer, self.batch_size, tensors):
            yield idx, *self.backend.logits_and_embeddings(batch)

    @property
    def has_embeddings(self) -> bool:
        """The network pools a sentence embedding beside its logits (classifiers do; token models do not)."""
        return self.backend.has_embeddings

    def iter_probabilities(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (indices, probabilities) per length-sorted batch; probabilities are (B, C) or (B, T, C)."""
        for idx, logits in self.iter_logits(features):
            yield idx, self.task.probabilities(torch.from_numpy(logits)).numpy()

    def iter_embeddings(self, features: Sequence[dict]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (indices, pooled embeddings (B, H)) per length-sorted batch."""
        tensors = self.backend.tensor_type
        for idx, batch in length_sorted_batches(features, self.task.tokenizer, self.batch_size, tensors):
            yield idx, self.backend.embeddings(batch)

    def features(self, texts: Sequence[str]) -> list[dict]:
        """Single texts as network inputs (truncated to `max_length`), one dict per text."""
        enc = self.task.tokenizer(list(texts), truncation=True, max_length=self.task.max_length)
        return [{k: enc[k][i] for k in enc} for i in range(len(texts))]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings (N, H) as the classification head reads them (unit length for zero-shot models)."""
        return self.embed_features(self.features(texts))

    def embed_features(self, features: Sequence[dict]) -> np.ndarray:
        """`embed` for texts already encoded (`features`)."""
        rows: list[np.ndarray | None] = [None] * len(features)
        for idx, vectors in self.iter_embeddings(features):
            for i, vector in zip(idx, vectors, strict=True):
                rows[i] = vector
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def predict(self, texts: Sequence[str], texts_b: Sequence[str] | None = None,
                labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Labels with scores (classification) or entities with offsets (NER), one dict per text. A zero-shot
        model also takes a label list of the request's own (`labels`) to choose among instead of its labels."""
        return [prediction for prediction, _ in self.predict_counted(texts, texts_b, labels)]

    def predict_counted(self, texts: Sequence[str], texts_b: Sequence[str] | None = None,
                        labels: Sequence[str] | None = None) -> list[tuple[dict[str, Any], int]]:
        """`predict`'s results, each with the number of input tokens its encoding had (what the server bills):
        the lengths of the very encodings the network ran on, from the one tokenisation of the batch."""
        texts = list(texts)
        self.check_inputs(texts, texts_b)
        if labels is not None:
            if self.meta.strategy != "zeroshot":
                raise InputError("labels: a label list per request is for zero-shot models (tuning.strategy "
                                 f"zeroshot); this one was trained on its own labels {self.labels}")
            from goldmine.tuning.zeroshot import classify_with_labels

            return classify_with_labels(self, texts, list(labels)) if texts else []
        return self.task.predict(self, texts, list(texts_b) if texts_b is not None else None)

    def check_inputs(self, texts: Sequence[str], texts_b: Sequence[str] | None) -> None:
        """A pair model needs a second text for every text; any other model takes none (a retrieval model takes
        either: `Task.pairs_optional`)."""
        if self.task.pairs_optional:
            pass
        elif self.meta.pair and texts_b is None:
            raise InputError("this model was trained on text pairs: give a second text for each text (texts_b)")
        elif not self.meta.pair and texts_b is not None:
            raise InputError("this model reads single texts: texts_b is only for models trained on text pairs")
        if texts_b is not None and len(texts_b) != len(texts):
            raise InputError(f"{len(texts)} texts but {len(texts_b)} second texts (texts_b): give one per text")
