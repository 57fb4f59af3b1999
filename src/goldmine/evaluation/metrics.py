"""Scores computed from predictions already in hand: labels, label sets, IOB2 tag sequences, confidences.

Nothing here runs a model, so every number in a report can be recomputed from saved predictions.
All results are plain JSON-serializable dicts (Python floats/ints, lists), so they can be written
to `metrics.json` as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from seqeval.metrics.v1 import precision_recall_fscore_support as _seqeval_prf
from seqeval.scheme import IOB2
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)

from goldmine.tasks.token_classification import entity_counts, precision_recall_f1, total


def _per_class(precision, recall, f1, support, names: Sequence[str]) -> dict[str, dict[str, float | int]]:
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
    }


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: list[str]) -> dict:
    """Single-label scores over label ids `0..len(label_names)-1`.

    Every label gets a `per_class` row and a confusion-matrix row/column even when absent from both
    arrays, so results from different runs of the same task line up. The F1 averages cover labels
    seen in `y_true` or `y_pred` (scikit-learn's default): a label never seen carries no evidence,
    and scoring it 0 would lower macro F1 for a split that simply lacks that class.
    """
    y_true_arr = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred_arr = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if len(y_true_arr) != len(y_pred_arr):
        raise ValueError(f"y_true has {len(y_true_arr)} items but y_pred has {len(y_pred_arr)}")
    if len(y_true_arr) == 0:
        raise ValueError("no examples to score")
    n_labels = len(label_names)
    for name, arr in (("y_true", y_true_arr), ("y_pred", y_pred_arr)):
        bad = arr[(arr < 0) | (arr >= n_labels)]
        if bad.size:
            raise ValueError(
                f"{name} holds label id {int(bad[0])}, outside 0..{n_labels - 1} ({n_labels} label names)"
            )
    labels = list(range(n_labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true_arr, y_pred_arr, labels=labels, average=None, zero_division=0
    )

    seen = sorted(set(y_true_arr.tolist()) | set(y_pred_arr.tolist()))

    def averaged(average: str) -> float:
        return float(f1_score(y_true_arr, y_pred_arr, labels=seen, average=average, zero_division=0))

    return {
        "accuracy": float(accuracy_score(y_true_arr, y_pred_arr)),
        "macro_f1": averaged("macro"),
        "micro_f1": averaged("micro"),
        "weighted_f1": averaged("weighted"),
        "per_class": _per_class(precision, recall, f1, support, label_names),
        "confusion_matrix": confusion_matrix(y_true_arr, y_pred_arr, labels=labels).tolist(),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> dict:
    """Scores for (N, L) 0/1 indicator arrays.

    `samples_f1` scores an example with no true and no predicted labels as 1 (a correct "none"),
    consistent with subset accuracy; every other zero division scores 0. As for single-label data,
    `macro_f1` averages over labels present in `y_true` or `y_pred`; `per_class` lists all labels.
    """
    y_true_arr = np.asarray(y_true)
    y_pred_arr = np.asarray(y_pred)
    if y_true_arr.ndim != 2 or y_true_arr.shape != y_pred_arr.shape:
        raise ValueError(
            f"expected two (N, L) arrays of the same shape, got {y_true_arr.shape} and {y_pred_arr.shape}"
        )
    if y_true_arr.shape[1] != len(label_names):
        raise ValueError(f"arrays have {y_true_arr.shape[1]} label columns but {len(label_names)} label names")
    if y_true_arr.shape[0] == 0:
        raise ValueError("no examples to score")
    for name, arr in (("y_true", y_true_arr), ("y_pred", y_pred_arr)):
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold only 0/1 values")
    y_true_arr = y_true_arr.astype(np.int64)
    y_pred_arr = y_pred_arr.astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true_arr, y_pred_arr, average=None, zero_division=0
    )
    seen = np.flatnonzero((y_true_arr | y_pred_arr).any(axis=0)).tolist()
    macro = f1_score(y_true_arr, y_pred_arr, labels=seen, average="macro", zero_division=0) if seen else 0.0
    return {
        "accuracy": float(accuracy_score(y_true_arr, y_pred_arr)),
        "macro_f1": float(macro),
        "micro_f1": float(f1_score(y_true_arr, y_pred_arr, average="micro", zero_division=0)),
        "samples_f1": float(f1_score(y_true_arr, y_pred_arr, average="samples", zero_division=1)),
        "hamming_loss": float(hamming_loss(y_true_arr, y_pred_arr)),
        "per_class": _per_class(precision, recall, f1, support, label_names),
    }


def _check_iob2(tags: Sequence[str], which: str, sentence: int) -> None:
    # seqeval fails on malformed tags with a bare KeyError/IndexError; name the tag and place instead.
    for position, tag in enumerate(tags):
        if tag == "O":
            continue
        if not isinstance(tag, str) or len(tag) < 3 or tag[:2] not in ("B-", "I-"):
            raise ValueError(
                f"{which} sentence {sentence}, token {position}: {tag!r} is not an IOB2 tag (O, B-X, I-X)"
            )


def entity_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict:
    """Entity-level scores as conlleval computes them, plus seqeval's strict figures and token accuracy beside them.

    The headline (`precision`, `recall`, `f1`, `per_type`) counts the entities of `entity_spans`, the decoder
    serving uses: an entity is right when type and both boundaries match, and a predicted I- that continues no
    entity opens one, as in conlleval.pl (the script CoNLL results are reported with) and seqeval's default
    mode. seqeval's strict IOB2 mode drops such an entity instead, which can only raise precision; its figures
    are kept as `*_strict` so the difference stays visible, never as the headline. `entities` holds the counts
    the headline is computed from. Token accuracy is mostly "O"-vs-"O" agreement and flatters a tagger, so it
    is reported next to entity F1, never in place of it.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} true sentences but {len(pred_tags)} predicted sentences")
    n_tokens = 0
    n_correct = 0
    for i, (true_seq, pred_seq) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(true_seq) != len(pred_seq):
            raise ValueError(f"sentence {i}: {len(true_seq)} true tags but {len(pred_seq)} predicted tags")
        _check_iob2(true_seq, "true", i)
        _check_iob2(pred_seq, "predicted", i)
        n_tokens += len(true_seq)
        n_correct += sum(t == p for t, p in zip(true_seq, pred_seq, strict=True))
    counts = entity_counts(true_tags, pred_tags)
    correct, predicted, true = total(counts)
    precision, recall, f1 = precision_recall_f1(correct, predicted, true)
    per_type = {}
    for name, row in counts.items():
        p, r, f = precision_recall_f1(*row)
        per_type[name] = {"precision": p, "recall": r, "f1": f, "support": row[2]}
    strict = _seqeval_prf(
        [list(s) for s in true_tags], [list(s) for s in pred_tags], average="micro", scheme=IOB2,
        zero_division=0,
    )
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": true,
        "per_type": per_type,
        "token_accuracy": n_correct / n_tokens if n_tokens else 0.0,
        "entities": {"correct": correct, "predicted": predicted, "true": true},
        "precision_strict": float(strict[0]),
        "recall_strict": float(strict[1]),
        "f1_strict": float(strict[2]),
    }


class CalibrationBins:
    """Running per-bin sums for calibration, so 100k+ predictions can be fed in batches.

    Bins are equal-width on [0, 1]: bin i holds confidences in [i/n, (i+1)/n), the last bin also
    holds 1.0. Only three numbers per bin are kept, never the examples themselves.
    """

    def __init__(self, n_bins: int = 15) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins = n_bins
        self._count = np.zeros(n_bins, dtype=np.int64)
        self._confidence_sum = np.zeros(n_bins, dtype=np.float64)
        self._correct_sum = np.zeros(n_bins, dtype=np.float64)

    def update(self, confidences: np.ndarray | Sequence[float], correct: np.ndarray | Sequence[bool]) -> None:
        """Add one batch: the confidence of each prediction and whether it was right."""
        conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
        hit = np.asarray(correct).reshape(-1)
        if conf.shape != hit.shape:
            raise ValueError(f"{conf.size} confidences but {hit.size} correctness flags")
        if conf.size == 0:
            return
        if not np.isfinite(conf).all() or conf.min() < 0.0 or conf.max() > 1.0:
            raise ValueError("confidences must be finite and within [0, 1]")
        if not np.isin(hit, (0, 1)).all():
            raise ValueError("correct must hold only booleans or 0/1 values")
        index = np.minimum((conf * self.n_bins).astype(np.int64), self.n_bins - 1)
        self._count += np.bincount(index, minlength=self.n_bins)
        self._confidence_sum += np.bincount(index, weights=conf, minlength=self.n_bins)
        self._correct_sum += np.bincount(index, weights=hit.astype(np.float64), minlength=self.n_bins)

    def result(self) -> dict:
        """ECE (bin gaps weighted by bin count), MCE (largest gap of a non-empty bin) and per-bin lists.

        Empty bins report `None` for confidence and accuracy: no data is not the same as 0% accuracy.
        """
        total = int(self._count.sum())
        edges = np.linspace(0.0, 1.0, self.n_bins + 1)
        filled = self._count > 0
        mean_conf = np.divide(self._confidence_sum, self._count, out=np.zeros(self.n_bins), where=filled)
        accuracy = np.divide(self._correct_sum, self._count, out=np.zeros(self.n_bins), where=filled)
        gaps = np.abs(accuracy - mean_conf)
        ece = float((gaps * self._count).sum() / total) if total else 0.0
        mce = float(gaps[filled].max()) if total else 0.0
        return {
            "ece": ece,
            "mce": mce,
            "n_bins": self.n_bins,
            "count": total,
            "accuracy": float(self._correct_sum.sum() / total) if total else 0.0,
            "mean_confidence": float(self._confidence_sum.sum() / total) if total else 0.0,
            "bin_lower": [float(x) for x in edges[:-1]],
            "bin_upper": [float(x) for x in edges[1:]],
            "bin_count": [int(c) for c in self._count],
            "bin_confidence": [float(c) if f else None for c, f in zip(mean_conf, filled, strict=True)],
            "bin_accuracy": [float(a) if f else None for a, f in zip(accuracy, filled, strict=True)],
        }


def calibration(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict:
    """One-shot calibration; the same code path as feeding `CalibrationBins` batch by batch."""
    bins = CalibrationBins(n_bins)
    bins.update(confidences, correct)
    return bins.result()


__all__ = [
    "CalibrationBins",
    "calibration",
    "classification_metrics",
    "entity_metrics",
    "multilabel_metrics",
]
