"""What the model scores *before* fine-tuning, measured honestly.

- majority: always the most frequent training label (for NER: every word `O`, entity F1 0).
- linear probe: the pretrained encoder, frozen, with a logistic-regression head fitted on the
  training set. This is what the base model already knows; an untrained random head would
  only measure chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.multiclass import OneVsRestClassifier

from goldmine.data.schema import LabeledData
from goldmine.inference.batching import length_sorted_batches
from goldmine.tasks.base import Encoded, Task

PROBE_MAX_EXAMPLES = 20_000  # enough for a stable probe, bounded in time on a CPU


def majority_baseline(task: Task, train: LabeledData, test: LabeledData) -> dict:
    """The scores on `test` of always answering what is most frequent in `train` (as the task defines it)."""
    return task.majority_metrics(train, test)


@torch.inference_mode()
def frozen_features(backbone, task: Task, data: LabeledData, pooling: str, batch_size: int = 64,
                    encoded: Encoded | None = None) -> tuple[list[np.ndarray], list[np.ndarray], Encoded]:
    """Frozen representations of each example's units: a pooled vector per text, or a vector per labeled word.

    Returns (vectors (U, H) per example, targets per example as `task.targets` gives them, encoded); `backbone`
    is a transformers encoder (`AutoModel`), used in eval mode. `encoded` is `task.encode(data)` where the caller
    already has it (the trainer does).
    """
    was_training = backbone.training
    backbone.eval()
    encoded = encoded if encoded is not None else task.encode(data)
    vectors, targets = [None] * len(data), [None] * len(data)
    for idx, batch in length_sorted_batches(encoded.features, task.tokenizer, batch_size):
        out = backbone(**task.base_model_inputs(batch))
        hidden = out.last_hidden_state  # (B, T, H)
        pooler = getattr(out, "pooler_output", None)
        for row, i in enumerate(idx):
            feature = encoded.features[i]
            vectors[i] = task.probe_vectors(hidden[row], batch["attention_mask"][row],
                                            pooler[row] if pooler is not None else None, feature, pooling)
            targets[i] = task.targets(feature)
    backbone.train(was_training)
    return vectors, targets, encoded


@dataclass
class LinearProbe:
    """A logistic-regression head fitted on frozen features of the training set's units.

    It is both a baseline (what the base model already knows) and, for `training.head_init: probe`, the
    starting point of the fine-tuned head (LP-FT).
    """

    task: Task
    pooling: str
    classifier: object  # the task's `probe_classifier()`: LogisticRegression, or OneVsRestClassifier (multi-label)

    def head_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight (num_labels, H), bias (num_labels,)) of a linear layer computing the probe's logits.

        A label the probe never saw (a tag absent from train tokens) gets zero weights and a bias far below
        the others, so the initial head never predicts it; training can still raise it.
        """
        clf = self.classifier
        if isinstance(clf, OneVsRestClassifier):  # one binary classifier per label: one logit each
            rows = [_binary_row(e, clf.n_features_in_) for e in clf.estimators_]
            return np.stack([w for w, _ in rows]), np.array([b for _, b in rows])
        coef, intercept = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2 and coef.shape[0] == 1:  # binary: one logit, softmax over (-z/2, z/2)
            coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        weight = np.zeros((self.task.num_labels, coef.shape[1]))
        bias = np.full(self.task.num_labels, intercept.min() - 10.0)
        weight[clf.classes_], bias[clf.classes_] = coef, intercept
        return weight, bias

    def score(self, backbone, test: LabeledData, encoded: Encoded | None = None) -> dict:
        """The probe's metrics on `test`, as the fine-tuned model is scored (`encoded`: `task.encode(test)`)."""
        x_test, _, encoded = frozen_features(backbone, self.task, test, self.pooling, encoded=encoded)
        units = np.cumsum([len(x) for x in x_test])[:-1]  # where each example's units end
        predicted = self.classifier.predict(np.concatenate(x_test))
        return self.task.metrics(test, encoded, np.split(predicted, units))


def _binary_row(estimator, n_features: int) -> tuple[np.ndarray, float]:
    """(weight, bias) of one one-vs-rest label; a label on (off) in every training example got a constant
    predictor, which becomes a zero weight and a bias of +10 (-10)."""
    if hasattr(estimator, "coef_"):
        return estimator.coef_[0], float(estimator.intercept_[0])
    always = estimator.predict_proba(np.zeros((1, n_features)))[0, 1] > 0.5
    return np.zeros(n_features), 10.0 if always else -10.0


def fit_probe(task: Task, backbone, pooling: str, train: LabeledData, seed: int = 0,
              encoded: Encoded | None = None) -> LinearProbe:
    """Fit the task's probe classifier on frozen features of `train`'s units (from a seeded sample of at most
    PROBE_MAX_EXAMPLES examples).

    `encoded` (`task.encode(train)`) is used when the whole of train is; a sample is encoded anew, since NER
    document context depends on which sentences are its neighbours."""
    rng = np.random.default_rng(seed)
    if len(train) > PROBE_MAX_EXAMPLES:
        train = train.subset(np.sort(rng.choice(len(train), PROBE_MAX_EXAMPLES, replace=False)))
        encoded = None
    x_train, y_train, _ = frozen_features(backbone, task, train, pooling, encoded=encoded)
    classifier = task.probe_classifier()
    classifier.fit(np.concatenate(x_train), np.concatenate(y_train))
    return LinearProbe(task, pooling, classifier)

def linear_probe(task: Task, base: str, pooling: str, train: LabeledData, test: LabeledData, seed: int = 0) -> dict:
    """Fit logistic regression on frozen pretrained features of `train`; score on `test`."""
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(base).eval()
    return fit_probe(task, backbone, pooling, train, seed).score(backbone, test)
