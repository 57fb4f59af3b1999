"""Plots render to real PNG files for small and large label sets and for partial training logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from goldmine.evaluation.metrics import calibration
from goldmine.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_training_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000
    assert data.startswith(PNG_MAGIC)


@pytest.mark.parametrize("n_labels", [3, 77])
@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path: Path, n_labels: int, normalize: bool):
    rng = np.random.default_rng(n_labels)
    matrix = rng.integers(0, 20, size=(n_labels, n_labels))
    matrix[0] = 0  # a class absent from the data must not break normalization
    names = [f"label_{i}_with_a_long_name" for i in range(n_labels)]
    out = plot_confusion_matrix(matrix.tolist(), names, tmp_path / "sub" / "cm.png", normalize=normalize)
    assert out == tmp_path / "sub" / "cm.png"
    _assert_png(out)


def test_confusion_matrix_shape_mismatch(tmp_path: Path):
    with pytest.raises(ValueError, match="label names"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "cm.png")


def test_reliability_png(tmp_path: Path):
    rng = np.random.default_rng(1)
    confidences = rng.random(500) * 0.5 + 0.5  # lower bins stay empty
    result = calibration(confidences, rng.random(500) < confidences)
    _assert_png(plot_reliability(result, tmp_path / "reliability.png"))


def test_reliability_png_no_data(tmp_path: Path):
    _assert_png(plot_reliability(calibration(np.array([]), np.array([])), tmp_path / "reliability.png"))


LOG_HISTORY = [
    {"loss": 1.2, "grad_norm": 3.0, "learning_rate": 5e-5, "epoch": 0.5, "step": 10},
    {"loss": 0.8, "grad_norm": 2.0, "learning_rate": 4e-5, "epoch": 1.0, "step": 20},
    {
        "eval_loss": 0.9,
        "eval_accuracy": 0.7,
        "eval_macro_f1": 0.6,
        "eval_runtime": 1.5,
        "eval_samples_per_second": 100.0,
        "epoch": 1.0,
        "step": 20,
    },
    {"loss": 0.5, "epoch": 1.5, "step": 30},
    {"eval_loss": 0.7, "eval_accuracy": 0.8, "eval_macro_f1": 0.75, "eval_f1": 0.7, "epoch": 2.0, "step": 40},
    {"train_runtime": 12.0, "train_loss": 0.8, "epoch": 2.0, "step": 40},
]


def test_training_curve_png(tmp_path: Path):
    _assert_png(plot_training_curve(LOG_HISTORY, tmp_path / "curve.png"))


def test_training_curve_without_eval(tmp_path: Path):
    train_only = [e for e in LOG_HISTORY if not any(k.startswith("eval_") for k in e)]
    _assert_png(plot_training_curve(train_only, tmp_path / "curve.png"))


def test_training_curve_empty_history(tmp_path: Path):
    _assert_png(plot_training_curve([], tmp_path / "curve.png"))
