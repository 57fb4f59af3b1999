"""Evaluate a loaded model on any labeled file, through the same inference path that serves it.

Outputs are reduced batch by batch (predicted ids, confidences, calibration bins), so a
100k-example file never has all its logits in memory at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from goldmine.data.schema import LabeledData
from goldmine.evaluation.metrics import CalibrationBins
from goldmine.evaluation.plots import plot_confusion_matrix, plot_reliability
from goldmine.inference import out_of_scope
from goldmine.inference.model import Model
from goldmine.memory import peak_rss_mb


def evaluate(model: Model, data: LabeledData, out_dir: Path | None = None, prefix: str = "") -> dict:
    """Task metrics + calibration for `data`; with `out_dir`, also metrics JSON and PNG plots.

    Each example's units (the text, or each labeled word) are decided as `predict` decides them, through the
    task (`goldmine.tasks.base.Task`): the metrics are those of what the model serves."""
    task = model.task
    task.check_kind(data)
    if task.evaluates_itself:  # scored as a whole (retrieval: every query searches the whole corpus)
        metrics = {**task.evaluate_data(model, data), "n_examples": len(data), "data": data.path,
                   "peak_rss_mb": peak_rss_mb()}
        if out_dir is not None:
            write_evaluation(metrics, Path(out_dir), prefix)
        return metrics
    rule = task.out_of_scope
    out_part = None
    if rule is not None and not rule.explicit:  # out-of-scope examples carry a label the model has no class for
        data, out_part = out_of_scope.separate(data, rule.label)
    encoded = task.encode(data)  # raises DataError naming lines with labels the model never saw
    bins = CalibrationBins()
    decided: list[np.ndarray] = [np.empty(0)] * len(data)
    for idx, probs in model.iter_probabilities(encoded.features):
        confidences, correct = [], []
        for i, p in zip(idx, probs, strict=True):
            units = task.unit_probabilities(p, encoded.features[i])
            decided[i] = task.decide(units)
            confidences.append(task.confidence(units).ravel())
            correct.append((decided[i] == task.targets(encoded.features[i])).ravel())
        bins.update(np.concatenate(confidences), np.concatenate(correct))
    metrics = task.metrics(data, encoded, decided)
    metrics["calibration"] = bins.result()
    if rule is not None:
        metrics["out_of_scope"] = out_of_scope.evaluate_out_of_scope(model, data, out_part)
    metrics["n_examples"] = len(data)
    metrics["truncated"] = encoded.truncated
    metrics["data"] = data.path
    metrics["peak_rss_mb"] = peak_rss_mb()  # of the whole process: model, batches and the metrics' own arrays
    if out_dir is not None:
        write_evaluation(metrics, Path(out_dir), prefix)
    return metrics


def write_evaluation(metrics: dict, out_dir: Path, prefix: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{prefix}metrics.json").write_text(json.dumps(metrics, indent=2))
    if "calibration" in metrics:
        plot_reliability(metrics["calibration"], out_dir / f"{prefix}reliability.png")
    if "confusion_matrix" in metrics:
        names = list(metrics["per_class"])
        plot_confusion_matrix(metrics["confusion_matrix"], names, out_dir / f"{prefix}confusion_matrix.png")


def headline(metrics: dict) -> dict[str, float]:
    """The few numbers a before-vs-after table shows for a task's metrics dict."""
    if "f1" in metrics and "per_type" in metrics:  # entity metrics
        return {k: metrics[k] for k in ("f1", "precision", "recall", "token_accuracy")}
    if "rouge_l" in metrics:  # causal LM
        return {k: metrics[k] for k in ("loss", "perplexity", "rouge_l", "exact_match")}
    if "mrr10" in metrics:  # retrieval
        return {k: metrics[k] for k in ("mrr10", "recall1", "recall5", "pair_accuracy") if k in metrics}
    keys = ("accuracy", "macro_f1", "micro_f1")
    return {k: metrics[k] for k in keys if k in metrics}
