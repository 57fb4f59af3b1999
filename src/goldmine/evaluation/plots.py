"""PNG figures for an evaluation report: confusion matrix, reliability diagram, training curves.

Figures are built on `matplotlib.figure.Figure` directly (Agg rendering, no pyplot), so plotting
never touches global state, needs no display, and is safe from worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

_DPI = 120
_ANNOTATE_MAX_LABELS = 20
# Trainer log keys that are bookkeeping, not quality metrics worth a curve.
_NON_METRIC_EVAL_KEYS = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_epoch"}


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def plot_confusion_matrix(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    label_names: Sequence[str],
    path: Path,
    normalize: bool = True,
) -> Path:
    """Rows = true, columns = predicted; row-normalized by default so rare classes stay visible.

    The figure grows with the label count and fonts shrink, so ~80 labels stay readable; cell
    values are written only up to 20 labels, beyond that they would overlap.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    n = len(label_names)
    if counts.shape != (n, n):
        raise ValueError(f"matrix has shape {counts.shape} but there are {n} label names")
    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    else:
        values = counts

    side = min(max(6.0, 2.5 + 0.2 * n), 24.0)
    tick_size = 9 if n <= _ANNOTATE_MAX_LABELS else max(5.0, 9 - n / 20)
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="fraction of true class" if normalize else "count")

    ax.set_xticks(np.arange(n))
    ax.set_yticks(np.arange(n))
    rotation, align = (45, "right") if n <= _ANNOTATE_MAX_LABELS else (90, "center")
    ax.set_xticklabels(label_names, rotation=rotation, ha=align, fontsize=tick_size)
    ax.set_yticklabels(label_names, fontsize=tick_size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (row-normalized)" if normalize else ""))

    if n <= _ANNOTATE_MAX_LABELS:
        threshold = (values.max() if values.size else 0.0) / 2
        cell_size = max(5.0, 10 - n / 4)
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                color = "white" if values[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=cell_size, color=color)
    return _save(fig, path)


def plot_reliability(calibration_dict: dict, path: Path) -> Path:
    """Reliability diagram from `calibration()` output: accuracy per confidence bin against the diagonal.

    Bars below the diagonal mean over-confidence. A lower panel shows how many predictions fall in
    each bin, since a gap in a nearly empty bin means little. Empty bins are left blank.
    """
    lower = np.asarray(calibration_dict["bin_lower"], dtype=np.float64)
    upper = np.asarray(calibration_dict["bin_upper"], dtype=np.float64)
    counts = np.asarray(calibration_dict["bin_count"], dtype=np.int64)
    filled = counts > 0
    # Empty bins carry None; only filled bins are drawn.
    accuracy = np.array([a if f else 0.0 for a, f in zip(calibration_dict["bin_accuracy"], filled, strict=True)])
    confidence = np.array([c if f else 0.0 for c, f in zip(calibration_dict["bin_confidence"], filled, strict=True)])
    centers = (lower + upper) / 2
    widths = upper - lower

    fig = Figure(figsize=(6.0, 7.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    top.bar(
        centers[filled],
        accuracy[filled],
        width=widths[filled],
        edgecolor="black",
        color="tab:blue",
        alpha=0.8,
        label="accuracy",
    )
    top.plot(
        confidence[filled],
        accuracy[filled],
        "o",
        color="tab:red",
        markersize=4,
        label="bin (mean confidence, accuracy)",
    )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(
        f"Reliability diagram (ECE = {calibration_dict['ece']:.3f}, n = {calibration_dict.get('count', '?')})"
    )
    top.legend(loc="upper left", fontsize=8)

    bottom.bar(centers, counts, width=widths, edgecolor="black", color="tab:gray")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    return _save(fig, path)


def _eval_metric_keys(entries: list[dict]) -> list[str]:
    keys: list[str] = []
    for entry in entries:
        for key, value in entry.items():
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if key.startswith("eval_") and key not in _NON_METRIC_EVAL_KEYS and is_number and key not in keys:
                keys.append(key)
    return keys


def plot_training_curve(log_history: list[dict], path: Path) -> Path:
    """Loss and eval metrics vs step from a transformers `Trainer.state.log_history`.

    Left panel: train loss (entries with `loss`) and eval loss (entries with `eval_loss`). Right
    panel: every numeric `eval_*` metric except loss and throughput. Histories without evaluation
    still produce a figure, with the right panel saying so.
    """
    train = [e for e in log_history if "loss" in e and "step" in e]
    evals = [e for e in log_history if any(k.startswith("eval_") for k in e) and "step" in e]

    fig = Figure(figsize=(12.0, 4.5), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)

    if train:
        loss_ax.plot([e["step"] for e in train], [e["loss"] for e in train], label="train loss", color="tab:blue")
    eval_loss = [e for e in evals if "eval_loss" in e]
    if eval_loss:
        loss_ax.plot(
            [e["step"] for e in eval_loss],
            [e["eval_loss"] for e in eval_loss],
            marker="o",
            label="eval loss",
            color="tab:orange",
        )
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("Loss")
    if train or eval_loss:
        loss_ax.legend(fontsize=8)
    else:
        loss_ax.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=loss_ax.transAxes)

    metric_keys = _eval_metric_keys(evals)
    for key in metric_keys:
        points = [(e["step"], e[key]) for e in evals if key in e]
        metric_ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=key.removeprefix("eval_"))
    metric_ax.set_xlabel("step")
    metric_ax.set_title("Evaluation metrics")
    if metric_keys:
        metric_ax.legend(fontsize=8)
    else:
        metric_ax.text(0.5, 0.5, "no evaluation logged", ha="center", va="center", transform=metric_ax.transAxes)
    return _save(fig, path)


__all__ = ["plot_confusion_matrix", "plot_reliability", "plot_training_curve"]
