"""Retrieval: one sentence encoder for queries and entries (a bi-encoder), fine-tuned on matching text pairs so
that a query's match ranks first among everything else (FAQ search, duplicate questions, semantic search).

Data: text pairs (text, text_b, label), the format the pair classifier (cross-encoder) reads. Pairs labeled
`retrieval.positive_label` are matches: a question and its paraphrase, a question and its answer. Every other pair
marks its second text as a near miss of its first (a hard negative a person chose). Evaluation reads the pairs as a
search problem: each first text that has a match is a query, every second text of the file is the corpus, and the
query's matches are the relevant entries: MRR@10 and recall@1/5/10, plus pair accuracy (cosine similarity against
the match threshold fitted on dev).

The trained network is goldmine's pooled encoder with mean pooling and unit-length embeddings, the network
`goldmine index build`, `goldmine search`, `/v1/embeddings` and zero-shot models already use; its one-output head
is zero and nothing reads it (it is there so that the saved network is the class goldmine loads and exports).
Training (`goldmine.training.retrieval`) runs in sentence-transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import ConfigError, DataError, DataIssue
from goldmine.modeling.sentence_embeddings import unit
from goldmine.registry import TASKS
from goldmine.tasks.base import Encoded
from goldmine.tasks.sequence_classification import SequenceClassification

SIMILARITY = "similarity"  # the one "label" of a retrieval network: its head is unused
MATCH_WORDS = ("1", "true", "yes", "match", "same", "duplicate", "similar", "relevant", "positive")
RANKS = (1, 5, 10)
AGREEMENT_COSINE = 0.99  # parity: a runtime's embedding of a text agrees with torch's from this cosine on


def positive_label(labels: list[str], configured: str | None, path: str) -> str:
    """The label that marks a match: `configured`, the only label, or the one that reads as a match ("1",
    "same", "duplicate", ...)."""
    if configured is not None:
        if configured not in labels:
            raise ConfigError(f"retrieval.positive_label: {configured!r} is not a label of {path} ({labels})")
        return configured
    if len(labels) == 1:
        return labels[0]
    matches = [label for label in labels if label.lower() in MATCH_WORDS]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(f"retrieval.positive_label: which of {path}'s labels {labels} marks a matching pair? "
                      "Set it in the config (--set retrieval.positive_label=...)")


@dataclass
class SearchProblem:
    """Labeled pairs read as a search: queries (first texts with a match), the corpus (every second text) and
    each query's relevant corpus rows; `pairs` keeps every pair (query text, entry text, matches?)."""

    queries: list[str]
    corpus: list[str]
    relevant: list[set[int]]
    pairs: list[tuple[str, str, bool]]

    @classmethod
    def from_pairs(cls, data: LabeledData, positive: str) -> SearchProblem:
        corpus: dict[str, int] = {}
        relevant: dict[str, set[int]] = {}
        pairs = []
        for ex in data.examples:
            row = corpus.setdefault(ex.text_b, len(corpus))
            match = positive in ex.labels
            pairs.append((ex.text, ex.text_b, match))
            if match:
                relevant.setdefault(ex.text, set()).add(row)
        return cls(list(relevant), list(corpus), list(relevant.values()), pairs)


def ranking_metrics(queries: np.ndarray, corpus: np.ndarray, relevant: list[set[int]]) -> dict[str, float]:
    """MRR@10 and recall@k (k in RANKS) of unit-length query vectors searching unit-length corpus vectors."""
    if not len(queries):
        return {"mrr10": 0.0, **{f"recall{k}": 0.0 for k in RANKS}, "queries": 0}
    top = np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, : max(RANKS)]
    reciprocal, recall = [], {k: [] for k in RANKS}
    for found, wanted in zip(top, relevant, strict=True):
        hits = [rank for rank, row in enumerate(found, start=1) if row in wanted]
        reciprocal.append(1 / hits[0] if hits else 0.0)
        for k in RANKS:
            recall[k].append(sum(rank <= k for rank in hits) / len(wanted))
    return {"mrr10": float(np.mean(reciprocal)), **{f"recall{k}": float(np.mean(v)) for k, v in recall.items()},
            "queries": len(relevant), "corpus": len(corpus)}


def match_threshold(similarities: np.ndarray, matches: np.ndarray) -> float:
    """The cosine similarity from which a pair counts as a match that is right most often on these pairs (the
    midpoint between two neighbouring similarities)."""
    order = np.argsort(similarities)
    values, truth = similarities[order], matches[order].astype(int)
    # a threshold below values[i] answers "match" for i..end: right = no-matches before i + matches from i
    right = np.concatenate([[0], np.cumsum(1 - truth)]) + np.concatenate([np.cumsum(truth[::-1])[::-1], [0]])
    best = int(right.argmax())
    if best == 0:
        return float(values[0]) - 1e-6
    if best == len(values):
        return float(values[-1]) + 1e-6
    return float((values[best - 1] + values[best]) / 2)


def embedded(embed, texts) -> dict[str, np.ndarray]:
    """text -> its unit vector, each distinct text embedded once by `embed` (texts -> unit vectors)."""
    distinct = list(dict.fromkeys(texts))
    return dict(zip(distinct, embed(distinct), strict=True))


def pair_similarities(vectors: dict[str, np.ndarray], pairs: list[tuple[str, str, bool]]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarity, matches?) of each pair, from the unit vectors of its texts."""
    similarities = np.array([float(vectors[a] @ vectors[b]) for a, b, _ in pairs])
    return similarities, np.array([m for _, _, m in pairs])


def search_metrics(embed, problem: SearchProblem, threshold: float | None) -> dict[str, Any]:
    """Ranking metrics of `problem` and, with a threshold, the accuracy of deciding each pair by it; every text
    embedded once."""
    vectors = embedded(embed, [*problem.queries, *problem.corpus, *(a for a, _, _ in problem.pairs)])
    metrics: dict[str, Any] = ranking_metrics(np.stack([vectors[q] for q in problem.queries]),
                                              np.stack([vectors[d] for d in problem.corpus]), problem.relevant)
    if threshold is not None:
        similarities, matches = pair_similarities(vectors, problem.pairs)
        metrics["pair_accuracy"] = float(((similarities >= threshold) == matches).mean())
        metrics["match_threshold"] = threshold
    return metrics


@TASKS.register("retrieval")
class Retrieval(SequenceClassification):
    """A bi-encoder: texts in, unit-length embeddings out; pairs scored by cosine similarity."""

    name = "retrieval"
    kinds = (DataKind.PAIR,)
    peft_task_type = "FEATURE_EXTRACTION"
    default_head_init = "random"
    default_ema_decay = None
    trains_itself = True  # goldmine.training.retrieval, not the classification Trainer recipe
    pairs_optional = True  # predict: single texts (their embeddings) or pairs (their similarity)

    @classmethod
    def labels_from(cls, data: LabeledData) -> list[str]:
        return [SIMILARITY]

    @property
    def problem_type(self) -> str:
        return "regression"  # one output (unused): transformers refuses a single-label head of one class

    @property
    def default_metric(self) -> str:
        return "mrr10"

    # ---- answers ----
    def predict(self, model, texts: list[str], texts_b: list[str] | None) -> list[tuple[dict[str, Any], int]]:
        """Pairs: {"similarity", "match"} (match: similarity ≥ the threshold fitted on dev); single texts:
        {"embedding"} (unit length). Billed tokens: each text's, both texts' for a pair."""
        features = model.features(texts)
        vectors = unit(model.embed_features(features)) if texts else np.zeros((0, 0))
        counts = [len(f["input_ids"]) for f in features]
        if texts_b is None:
            return [({"embedding": [round(float(x), 7) for x in v]}, n) for v, n in zip(vectors, counts, strict=True)]
        features_b = model.features(texts_b)
        vectors_b = unit(model.embed_features(features_b))
        threshold = model.meta.extra.get("retrieval", {}).get("match_threshold")
        results = []
        for v, w, n, f in zip(vectors, vectors_b, counts, features_b, strict=True):
            similarity = float(v @ w)
            answer: dict[str, Any] = {"similarity": round(similarity, 6)}
            if threshold is not None:
                answer["match"] = similarity >= threshold
            results.append((answer, n + len(f["input_ids"])))
        return results

    # ---- evaluation: the pairs as a search problem ----
    evaluates_itself = True

    def evaluate_data(self, model, data: LabeledData) -> dict[str, Any]:
        """`goldmine eval` of a retrieval model: ranking metrics and pair accuracy through the model's runtime."""
        settings = model.meta.extra.get("retrieval", {})
        labels = data.label_names()
        positive = settings.get("positive_label")
        if positive not in labels:
            positive = positive_label(labels, None, data.path)
        problem = SearchProblem.from_pairs(data, positive)
        if not problem.queries:
            raise DataError([DataIssue(data.path, 0, f"no pair is labeled {positive!r} (a match): nothing to "
                                                     "search for")])
        metrics = search_metrics(lambda texts: unit(model.embed(texts)), problem,
                                 settings.get("match_threshold"))
        return {**metrics, "positive_label": positive}

    def encode(self, data: LabeledData) -> Encoded:
        """Every distinct text of the pairs as a single-text input, unlabeled: what the parity gate runs through
        each runtime (its figures compare these texts' embeddings)."""
        texts = list(dict.fromkeys(t for ex in data.examples for t in (ex.text, ex.text_b)))
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        features = [{k: enc[k][i] for k in enc} for i in range(len(texts))]
        return Encoded(features, sum(len(f["input_ids"]) >= self.max_length for f in features))

    def agreement(self, reference: np.ndarray, other: np.ndarray, feature: dict) -> tuple[int, int]:
        """Two runtimes agree on a text when its embeddings point the same way (cosine ≥ AGREEMENT_COSINE)."""
        cosine = float(unit(reference[None])[0] @ unit(other[None])[0])
        return int(cosine >= AGREEMENT_COSINE), 1

    # ---- the classification Trainer recipe's hooks: a retrieval model never goes through it ----

    def loss_function(self, class_weights: torch.Tensor | None, label_smoothing: float):
        raise ConfigError("task retrieval trains with sentence-transformers (goldmine.training.retrieval)")

    def majority_metrics(self, train: LabeledData, test: LabeledData) -> dict:
        raise ConfigError("task retrieval has no majority class")
