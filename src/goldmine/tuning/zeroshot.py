"""Zero-shot classification: no training, only label descriptions (and, when there are some, a few examples).

A sentence encoder puts texts with the same meaning close together, so a text can be classified by the label
whose description it is closest to. Each label gets a *prototype*: the mean of the unit-length embeddings of its
texts (its name, or its description, or its templates filled in), normalised again. When labeled examples exist
(`data.train`), each label's examples join its texts in that mean: the prototype moves towards how the label's
texts are really written, with no gradient step.

Scores: a text's logit for a label is `scale x cos(text, prototype)`, the form the bundled encoder was trained
with (sentence-transformers' MultipleNegativesRankingLoss, scale 20), so the softmax over labels is as sharp as
the encoder's own training made it. Some prototypes sit closer to everything than others (a vague description
attracts texts of every label); `calibrate` subtracts from each label the similarity of content-free inputs ("",
"N/A", "[MASK]") to its prototype, as contextual calibration does for prompted language models (Zhao et al.,
"Calibrate Before Use", ICML 2021), so scores are comparable across labels.

The result is an ordinary goldmine classification run: a `PooledEncoderForSequenceClassification` that normalises
its pooled embedding, with the prototypes times `scale` as its head's rows and the calibration as its biases.
`eval`, `export` (ONNX, int8, parity gate), `predict` and `serve` take it unchanged.

The label file (YAML), in any of three forms:

    labels: [refund, delivery]                                  # names only
    labels: {refund: "the customer wants their money back"}     # name: description
    labels:                                                     # full form
      - name: refund
        description: the customer wants their money back
        templates: ["{description}", "a message about a {label}"]
    templates: ["this message is about {label}"]                # optional default for every label
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import ConfigError, DataError, DataIssue
from goldmine.modeling.sentence_embeddings import embed, unit
from goldmine.registry import STRATEGIES
from goldmine.tuning.base import TuningMethod

CONTENT_FREE = ("", "N/A", "[MASK]")
ZERO_SHOT_SCALE = 20.0  # the bundled encoder's training scale (MultipleNegativesRankingLoss): ZeroShotConfig.scale
MAX_LABELS = 1000


@dataclass(frozen=True)
class LabelSpec:
    """One label of a label file: its name, an optional description, and templates that turn it into texts."""

    name: str
    description: str | None = None
    templates: tuple[str, ...] = field(default_factory=tuple)

    def texts(self) -> list[str]:
        """The texts whose embeddings make the label's prototype."""
        if not self.templates:
            return [self.description or self.name]
        values = {"label": self.name, "description": self.description or self.name}
        return [template.format(**values) for template in self.templates]


def read_label_file(path: str | Path) -> list[LabelSpec]:
    """The labels of a label file, or a `ConfigError` naming the file and what is wrong."""
    return read_label_document(path)[0]


def read_label_document(path: str | Path) -> tuple[list[LabelSpec], tuple[str, ...]]:
    """(the labels, the file's `templates` for every label: what per-request labels are embedded with)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: label file not found")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a readable YAML file ({err})") from None
    if not isinstance(document, dict) or "labels" not in document:
        raise ConfigError(f"{path}: expected a mapping with a 'labels' entry (see goldmine.tuning.zeroshot)")
    defaults = _templates(document.get("templates", []), path, "templates")
    raw = document["labels"]
    if isinstance(raw, dict):
        raw = [{"name": name, "description": description} for name, description in raw.items()]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: 'labels' must be a non-empty list or mapping")
    specs = []
    for number, entry in enumerate(raw, start=1):
        if isinstance(entry, str | int | float) and not isinstance(entry, bool):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{path}: label {number} must be a name or a mapping with 'name', got {entry!r}")
        unknown = sorted(set(entry) - {"name", "description", "templates"})
        if unknown:
            raise ConfigError(f"{path}: label {number} ({entry['name']!r}) has unknown keys {unknown}; "
                              "use name, description, templates")
        name = str(entry["name"]).strip()
        description = entry.get("description")
        if not name:
            raise ConfigError(f"{path}: label {number} has an empty name")
        if description is not None and (not isinstance(description, str) or not description.strip()):
            raise ConfigError(f"{path}: label {name!r}: description must be a non-empty string")
        templates = _templates(entry.get("templates"), path, f"label {name!r}: templates") or defaults
        specs.append(LabelSpec(name, description.strip() if description else None, templates))
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: labels named more than once: {duplicates}")
    if not 2 <= len(specs) <= MAX_LABELS:
        raise ConfigError(f"{path}: a classifier needs 2 to {MAX_LABELS} labels, got {len(specs)}")
    return specs, defaults


def _templates(value, path: Path, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        raise ConfigError(f"{path}: {where} must be a list of non-empty strings")
    for template in value:
        try:
            template.format(label="x", description="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"{path}: {where}: {template!r} may only use {{label}} and {{description}} "
                              f"({err})") from None
    return tuple(value)


def label_texts(specs: list[LabelSpec], examples: LabeledData | None = None) -> list[tuple[int, str]]:
    """(label index, text) for every text that goes into a prototype: the labels' own, then the examples'."""
    texts = [(k, text) for k, spec in enumerate(specs) for text in spec.texts()]
    if examples is not None:
        index = {spec.name: k for k, spec in enumerate(specs)}
        texts += [(index[ex.labels[0]], ex.text) for ex in examples.examples]
    return texts


def prototype_rows(vectors: np.ndarray, owner: np.ndarray, labels: int) -> np.ndarray:
    """(L, H) unit vectors: the normalised sum (so mean) of the unit embeddings `vectors` of each label."""
    sums = np.zeros((labels, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, vectors)
    return unit(sums).astype(np.float32)


def calibration_bias(content_free: np.ndarray, rows: np.ndarray, scale: float) -> np.ndarray:
    """(L,) minus `scale` x each prototype's mean cosine to the content-free inputs' embeddings."""
    return (-scale * (content_free @ rows.T).mean(axis=0)).astype(np.float32)


def prototypes(model: nn.Module, tokenizer, specs: list[LabelSpec], max_length: int,
               examples: LabeledData | None = None) -> np.ndarray:
    """One unit vector per label (L, H): the normalised mean of its texts' and its examples' embeddings."""
    texts = label_texts(specs, examples)
    vectors = embed(model, tokenizer, [t for _, t in texts], max_length)
    return prototype_rows(vectors, np.array([k for k, _ in texts]), len(specs))


@STRATEGIES.register("zeroshot")
class ZeroShot(TuningMethod):
    """Builds a classifier from label descriptions (and optional examples) without a gradient step."""

    name = "zeroshot"
    builds_model = True

    def check(self, config) -> None:
        if config.task != "classification":
            raise ConfigError(f"tuning.strategy zeroshot: is for task classification (one label per text), "
                              f"not {config.task}")
        if config.tuning.zeroshot.labels is None:
            raise ConfigError("tuning.zeroshot.labels: zero-shot needs a label file (--labels labels.yaml)")
        read_label_file(config.tuning.zeroshot.labels)  # fail before anything is loaded

    def apply(self, model: nn.Module, config) -> nn.Module:
        raise ConfigError("tuning.strategy zeroshot: builds its model without training (see build)")

    def labels(self, config) -> list[str]:
        return [spec.name for spec in read_label_file(config.tuning.zeroshot.labels)]

    def build(self, task, base: str, config, train: LabeledData | None) -> nn.Module:
        """The zero-shot classifier: prototypes x scale as head rows, minus the content-free similarity."""
        zs = config.tuning.zeroshot
        specs, templates = read_label_document(zs.labels)
        if train is not None:
            if train.kind is not DataKind.TEXT:
                raise ConfigError(f"tuning.strategy zeroshot: classifies single texts; {train.path} holds "
                                  f"{train.kind.value} data")
            check_examples(train, specs, zs.labels)
        model = task.build_model(base, {"goldmine_pooling": "mean", "goldmine_normalize": True,
                                        "classifier_dropout": 0.0})
        rows = prototypes(model, task.tokenizer, specs, task.max_length, train)  # (L, H)
        bias = np.zeros(len(specs), dtype=np.float32)
        if zs.calibrate:
            content_free = embed(model, task.tokenizer, list(CONTENT_FREE), task.max_length)  # (3, H)
            bias = calibration_bias(content_free, rows, zs.scale)
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(zs.scale * rows))
            model.classifier.bias.copy_(torch.from_numpy(bias))
        self.summary = {"labels": [asdict(s) for s in specs], "templates": list(templates),
                        "scale": zs.scale, "calibrate": zs.calibrate, "examples": 0 if train is None else len(train)}
        return model


def check_examples(train: LabeledData, specs: list[LabelSpec], label_file: Path) -> None:
    """Every example's label must be in the label file (each offender reported at its line)."""
    known = {spec.name for spec in specs}
    issues = [DataIssue.at(ex.source, f"label {ex.labels[0]!r} is not in the label file {label_file} "
                                      f"(labels: {sorted(known)})")
              for ex in train.examples if ex.labels[0] not in known]
    if issues:
        raise DataError(issues, header=f"{train.path} has labels the label file does not define")


MAX_REQUEST_LABELS = 100
MAX_LABEL_CHARS = 200


def check_request_labels(labels: list[str]) -> list[str]:
    """A per-request label list: 2 to MAX_REQUEST_LABELS distinct, non-empty names of bounded length."""
    from goldmine.errors import InputError

    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
        raise InputError("labels must be a list of label names")
    names = [name.strip() for name in labels]
    if not 2 <= len(names) <= MAX_REQUEST_LABELS:
        raise InputError(f"labels: give 2 to {MAX_REQUEST_LABELS} label names, got {len(names)}")
    if any(not name for name in names):
        raise InputError("labels: a label name is empty")
    if any(len(name) > MAX_LABEL_CHARS for name in names):
        raise InputError(f"labels: a label name is longer than {MAX_LABEL_CHARS} characters")
    if len(set(names)) != len(names):
        raise InputError(f"labels: named more than once: {sorted({n for n in names if names.count(n) > 1})}")
    return names


def classify_with_labels(model, texts: list[str], labels: list[str]) -> list[tuple[dict, int]]:
    """A zero-shot run's answers over a label list given with the request instead of its own labels.

    The labels' prototypes are made as at build time (their names through the label file's templates), by the same
    runtime that embeds the texts, so an ONNX-served model scores exactly as its torch network would to within
    the export's parity. Each answer is counted as the text's own tokens (what the server bills)."""
    record = model.meta.extra.get("zeroshot", {})
    scale, calibrate = float(record.get("scale", 20.0)), bool(record.get("calibrate", True))
    specs = [LabelSpec(name, None, tuple(record.get("templates", ()))) for name in check_request_labels(labels)]
    texts_of_labels = label_texts(specs)
    vectors = model.embed([t for _, t in texts_of_labels] + list(CONTENT_FREE))
    n_label_texts = len(texts_of_labels)
    rows = prototype_rows(vectors[:n_label_texts], np.array([k for k, _ in texts_of_labels]), len(specs))
    content_free = vectors[n_label_texts:]
    bias = calibration_bias(content_free, rows, scale) if calibrate else np.zeros(len(specs), dtype=np.float32)
    features = model.features(texts)  # one tokenisation: the embeddings and the billed token counts
    logits = scale * model.embed_features(features) @ rows.T + bias  # (N, L)
    probs = torch.from_numpy(logits).softmax(-1).numpy()
    names = [spec.name for spec in specs]
    counts = [len(f["input_ids"]) for f in features]
    answers = []
    for p, count in zip(probs, counts, strict=True):
        best = int(p.argmax())
        scores = {name: round(float(x), 6) for name, x in zip(names, p, strict=True)}
        answers.append(({"label": names[best], "score": float(p[best]), "scores": scores}, count))
    return answers
