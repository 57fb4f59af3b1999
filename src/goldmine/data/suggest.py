"""Which texts to label next: uncertainty and diversity over a model's own view of unlabeled texts.

With little data, the next hundred labels matter most. Labeling at random spends them on texts the model already
gets right and on near-duplicates. Here:

1. uncertainty: each text's *margin*, the gap between the model's top two probabilities (Scheffer et al., 2001):
   a small margin is a text the model cannot decide between two labels;
2. diversity: the texts' embeddings (what the model's head reads) are grouped into `top` clusters with k-means
   (scikit-learn's MiniBatchKMeans), and each cluster gives its most uncertain text, so the chosen texts cover the
   space instead of piling up where the model is most confused (margin sampling over embedding clusters, as in
   "cluster-margin", Citovsky et al., NeurIPS 2021).

The result is ranked by margin (the most uncertain first). Unlabeled texts are read from a text file (one per
line), JSONL with a `text` field, or CSV/TSV with a `text` column; an unreadable line is reported as file:line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from goldmine.data.readers import decoded_text, jsonl_records
from goldmine.errors import DataError, DataIssue, InputError

MAX_TEXTS = 1_000_000


@dataclass(frozen=True)
class UnlabeledText:
    line: int
    text: str


@dataclass(frozen=True)
class Suggestion:
    """One text to label: where it is, what the model would say, and how unsure it is."""

    line: int
    text: str
    predicted: str
    margin: float  # top probability minus the second: small is unsure
    cluster: int


def read_texts(path: str | Path, text_column: str = "text") -> list[UnlabeledText]:
    """The unlabeled texts of a file (.txt one per line, .jsonl with `text_column`, .csv/.tsv with that column);
    every unreadable line is reported in one `DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError([DataIssue(str(path), 0, "file not found")], header="cannot read texts")
    issues: list[DataIssue] = []
    texts: list[UnlabeledText] = []
    content = decoded_text(path, "cannot read texts")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows = csv.DictReader(content.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        if text_column not in (rows.fieldnames or []):
            raise DataError([DataIssue(str(path), 1, f"no {text_column!r} column (columns: {rows.fieldnames})")],
                            header="cannot read texts")
        for number, row in enumerate(rows, start=2):
            _take(texts, issues, path, number, row.get(text_column))
    elif suffix == ".jsonl":
        for number, record in jsonl_records(path, issues, content.splitlines()):
            if text_column not in record:
                issues.append(DataIssue(str(path), number, f"no {text_column!r} field"))
                continue
            _take(texts, issues, path, number, record[text_column])
    else:
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                _take(texts, issues, path, number, line)
    if issues:
        raise DataError(issues, header=f"{path}: unreadable texts")
    if not texts:
        raise DataError([DataIssue(str(path), 1, "no texts in the file")], header="cannot read texts")
    if len(texts) > MAX_TEXTS:
        raise InputError(f"{path}: {len(texts)} texts; suggest reads at most {MAX_TEXTS} at a time")
    return texts


def _take(texts: list, issues: list, path: Path, number: int, value) -> None:
    if not isinstance(value, str):
        issues.append(DataIssue(str(path), number, f"text must be a string, got {type(value).__name__}"))
    elif not value.strip():
        issues.append(DataIssue(str(path), number, "empty text"))
    else:
        texts.append(UnlabeledText(number, value))


def margins(probabilities: np.ndarray, multi_label: bool = False) -> np.ndarray:
    """(N,) top probability minus the second (single-label), or for multi-label the smallest distance of any
    label's probability from 0.5, doubled (both: 0 = undecided, 1 = sure)."""
    if multi_label:
        return np.abs(2 * probabilities - 1).min(axis=1)
    top_two = -np.sort(-probabilities, axis=1)[:, :2]
    return top_two[:, 0] - top_two[:, 1]


def choose(embeddings: np.ndarray, margin: np.ndarray, top: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the chosen texts, each one's cluster): the smallest margin of each of `top` k-means clusters
    of the embeddings, ranked by margin."""
    from sklearn.cluster import MiniBatchKMeans

    n = len(margin)
    if top >= n:
        order = np.argsort(margin, kind="stable")
        return order, np.arange(n)[order]
    clusters = MiniBatchKMeans(n_clusters=top, random_state=seed, n_init=3, batch_size=max(1024, 3 * top)
                               ).fit_predict(embeddings)
    chosen = []
    for k in np.unique(clusters):
        members = np.flatnonzero(clusters == k)
        chosen.append(members[np.argmin(margin[members])])
    chosen = np.array(chosen)
    if len(chosen) < top:  # k-means left some clusters empty: fill with the most uncertain texts not yet chosen
        rest = np.setdiff1d(np.argsort(margin, kind="stable"), chosen, assume_unique=True)
        chosen = np.r_[chosen, rest[: top - len(chosen)]]
    chosen = chosen[np.argsort(margin[chosen], kind="stable")]
    return chosen, clusters[chosen]


def suggest(model, texts: list[UnlabeledText], top: int, seed: int = 0) -> list[Suggestion]:
    """The `top` texts most worth labeling for a loaded classification `goldmine.Model`."""
    if top < 1:
        raise InputError(f"top: give at least 1, got {top}")
    if model.meta.task not in ("classification", "multilabel"):
        raise InputError(f"suggest ranks texts for classification models; this one is {model.meta.task}")
    if model.meta.pair:
        raise InputError("suggest reads single texts; this model was trained on text pairs")
    features = model.features([t.text for t in texts])
    probabilities = np.zeros((len(texts), len(model.labels)), dtype=np.float32)
    for idx, probs in model.iter_probabilities(features):
        probabilities[idx] = probs
    margin = margins(probabilities, model.task.multi_label)
    embeddings = model.embed_features(features)
    chosen, clusters = choose(embeddings, margin, top, seed)
    return [Suggestion(texts[i].line, texts[i].text, _predicted(model, probabilities[i]),
                       round(float(margin[i]), 6), int(k)) for i, k in zip(chosen, clusters, strict=True)]


def _predicted(model, probabilities: np.ndarray) -> str:
    if model.task.multi_label:
        return "|".join(name for name, p in zip(model.labels, probabilities, strict=True) if p > 0.5)
    return model.labels[int(probabilities.argmax())]


def write_suggestions(suggestions: list[Suggestion], path: Path) -> Path:
    """JSONL, one suggestion per line, with an empty `label` for the labeler to fill in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for s in suggestions:
            out.write(json.dumps({**asdict(s), "label": ""}, ensure_ascii=False) + "\n")
    return path
