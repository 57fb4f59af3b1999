"""What a model's training inputs looked like, kept in its run directory so the served version carries it
(`drift_reference.npz`: the registry copies the whole run): a sample of pooled embeddings of training texts, their
word counts, the training vocabulary, the label shares, and the out-of-vocabulary rate that texts of the training
distribution itself have (the baseline a live window's rate is read against).

`goldmine train` writes it for classifiers that pool an embedding (single texts); `goldmine drift reference RUN
--data FILE` writes it for a run made before, or from other data. Without it a version is still monitored for
volume, labels, confidence and out-of-scope rate; only the input-drift tests are left out.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from goldmine.monitoring.statistics import words

REFERENCE_FILE = "drift_reference.npz"
SAMPLE_TEXTS = 256  # embeddings kept: the MMD test's reference sample
LENGTH_TEXTS = 5_000  # word counts kept
VOCABULARY_WORDS = 30_000  # most frequent training words


@dataclass
class DriftReference:
    embeddings: np.ndarray  # (n, hidden) float32, pooled as the classifier reads them
    lengths: np.ndarray  # word counts of up to LENGTH_TEXTS training texts
    vocabulary: frozenset[str]
    oov_rate: float  # out-of-vocabulary share of words in held-out training texts (vocabulary from the other half)
    labels: list[str]
    label_shares: np.ndarray  # training share of each label, in `labels` order

    def save(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / REFERENCE_FILE
        with path.open("wb") as fh:  # a file object: np.savez would append .npz to a name without it
            np.savez_compressed(fh, embeddings=self.embeddings.astype(np.float32), lengths=self.lengths,
                                vocabulary=np.asarray(sorted(self.vocabulary), dtype=str),
                                oov_rate=np.float64(self.oov_rate), labels=np.asarray(self.labels, dtype=str),
                                label_shares=self.label_shares)
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> DriftReference | None:
        """The run's reference, or None when it has none."""
        path = Path(run_dir) / REFERENCE_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return cls(data["embeddings"], data["lengths"], frozenset(data["vocabulary"].tolist()),
                       float(data["oov_rate"]), data["labels"].tolist(), data["label_shares"])


def oov_share(texts_words: list[list[str]], vocabulary: frozenset[str]) -> float:
    total = sum(len(w) for w in texts_words)
    return sum(1 for w in texts_words for word in w if word not in vocabulary) / total if total else 0.0


def _vocabulary(texts_words: list[list[str]]) -> frozenset[str]:
    counts = Counter(word for w in texts_words for word in w)
    return frozenset(word for word, _ in counts.most_common(VOCABULARY_WORDS))


def build_reference(model, texts: list[str], labels: list[str], seed: int = 0) -> DriftReference:
    """The reference of `model` (a goldmine.inference Model with pooled embeddings) on its training texts and
    their labels (one label per text; a multi-label text counts once per label)."""
    if not texts:
        raise ValueError("a drift reference needs training texts")
    rng = random.Random(seed)
    sample = rng.sample(texts, min(SAMPLE_TEXTS, len(texts)))
    tokenised = [words(t) for t in texts]
    order = list(range(len(texts)))
    rng.shuffle(order)
    half = len(order) // 2
    held_out = [tokenised[i] for i in order[half:]] if half else tokenised
    baseline = oov_share(held_out, _vocabulary([tokenised[i] for i in order[:half]] or tokenised))
    counted = rng.sample(tokenised, min(LENGTH_TEXTS, len(tokenised)))
    names = list(model.labels)
    counts = Counter(labels)
    shares = np.asarray([counts.get(name, 0) for name in names], dtype=np.float64)
    return DriftReference(model.embed(sample), np.asarray([len(w) for w in counted], dtype=np.int32),
                          _vocabulary(tokenised), baseline, names, shares / max(shares.sum(), 1.0))


def write_reference(run_dir: str | Path, train, batch_size: int = 64, model=None) -> Path | None:
    """Write the reference of the saved run at `run_dir` from its training split (a LabeledData of single texts),
    embedded by `model` (that run, already loaded) or by the run loaded now; None, writing nothing, for a model
    that pools no embedding (token classification) or reads text pairs."""
    from goldmine.inference.model import Model

    if train is None or not len(train) or any(e.text_b is not None for e in train.examples[:1]):
        return None
    model = model or Model.load(run_dir, batch_size=batch_size)
    if not model.has_embeddings:
        return None
    texts = [e.text for e in train.examples]
    labels = [label for e in train.examples for label in e.labels]
    return build_reference(model, texts, labels).save(run_dir)
