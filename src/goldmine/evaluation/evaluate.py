"""Evaluate a loaded model on any labeled file, through the same inference path that serves it.

Outputs are reduced batch by batch (predicted ids, confidences, calibration bins), so a
100k-example file never has all its logits in memory at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from goldmine.data.schema import LabeledData
from goldmine.evaluation.metrics import CalibrationBins, classification_metrics, entity_metrics, multilabel_metrics
from goldmine.evaluation.plots import plot_confusion_matrix, plot_reliability
from goldmine.inference.model import Model
from goldmine.memory import peak_rss_mb
from goldmine.tasks.base import Encoded
from goldmine.tasks.token_classification import IGNORE


def evaluate(model: Model, data: LabeledData, out_dir: Path | None = None, prefix: str = "") -> dict:
    """Task metrics + calibration for `data`; with `out_dir`, also metrics JSON and PNG plots."""
    task = model.task
    task.check_kind(data)
    encoded = task.encode(data)  # raises DataError naming lines with labels the model never saw
    bins = CalibrationBins()
    n = len(data)
    if task.name == "ner":
        pred_tags = predicted_tags(model, data, encoded, bins)
        metrics = entity_metrics([list(ex.tags) for ex in data.examples], pred_tags)
    elif task.multi_label:
        y_true = np.zeros((n, task.num_labels), dtype=np.int8)
        y_pred = np.zeros_like(y_true)
        for idx, probs in model.iter_probabilities(encoded.features):
            y_true[idx] = np.asarray([encoded.features[i]["labels"] for i in idx], dtype=np.int8)
            y_pred[idx] = probs > task.threshold
            bins.update(np.maximum(probs, 1 - probs).ravel(), (y_pred[idx] == y_true[idx]).ravel())
        metrics = multilabel_metrics(y_true, y_pred, task.label_names)
    else:
        y_true = np.asarray([f["labels"] for f in encoded.features])
        y_pred = np.zeros(n, dtype=np.int64)
        for idx, probs in model.iter_probabilities(encoded.features):
            y_pred[idx] = probs.argmax(-1)
            bins.update(probs.max(-1), y_pred[idx] == y_true[idx])
        metrics = classification_metrics(y_true.tolist(), y_pred.tolist(), task.label_names)
    metrics["calibration"] = bins.result()
    metrics["n_examples"] = n
    metrics["truncated"] = encoded.truncated
    metrics["data"] = data.path
    metrics["peak_rss_mb"] = peak_rss_mb()  # of the whole process: model, batches and the metrics' own arrays
    if out_dir is not None:
        write_evaluation(metrics, Path(out_dir), prefix)
    return metrics


def predicted_tags(model: Model, data: LabeledData, encoded: Encoded, bins: CalibrationBins) -> list[list[str]]:
    """NER: the tag the model gives each word of each sentence of `data` (with its document context), read from
    the word's first sub-token as `predict` reads it; "O" for a word cut off at `max_length`. Each word's
    confidence and correctness go into `bins`."""
    task = model.task
    pred_tags: list[list[str]] = [[] for _ in data.examples]
    for idx, probs in model.iter_probabilities(encoded.features):
        for i, p in zip(idx, probs, strict=True):
            labels = np.asarray(encoded.features[i]["labels"])
            positions = np.flatnonzero(labels != IGNORE)
            word_probs = p[positions]  # (W, C) for the words that fit in max_length
            tags = ["O"] * len(data.examples[i].tokens)
            for word, best in zip(encoded.alignment[i], word_probs.argmax(-1), strict=True):
                tags[word] = task.label_names[best]
            pred_tags[i] = tags
            bins.update(word_probs.max(-1), word_probs.argmax(-1) == labels[positions])
    return pred_tags


def write_evaluation(metrics: dict, out_dir: Path, prefix: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{prefix}metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_reliability(metrics["calibration"], out_dir / f"{prefix}reliability.png")
    if "confusion_matrix" in metrics:
        names = list(metrics["per_class"])
        plot_confusion_matrix(metrics["confusion_matrix"], names, out_dir / f"{prefix}confusion_matrix.png")


def headline(metrics: dict) -> dict[str, float]:
    """The few numbers a before-vs-after table shows for a task's metrics dict."""
    if "f1" in metrics and "per_type" in metrics:  # entity metrics
        return {k: metrics[k] for k in ("f1", "precision", "recall", "token_accuracy")}
    keys = ("accuracy", "macro_f1", "micro_f1")
    return {k: metrics[k] for k in keys if k in metrics}
