"""What the model scores *before* fine-tuning, measured honestly.

- majority: always the most frequent training label (for NER: every word `O`, entity F1 0).
- linear probe: the pretrained encoder, frozen, with a logistic-regression head fitted on the
  training set. This is what the base model already knows; an untrained random head would
  only measure chance.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from goldmine.data.schema import LabeledData
from goldmine.evaluation.metrics import classification_metrics, entity_metrics, multilabel_metrics
from goldmine.inference.batching import length_sorted_batches
from goldmine.modeling.pooled_classifier import mean_pool
from goldmine.tasks.base import Encoded, Task
from goldmine.tasks.token_classification import IGNORE

PROBE_MAX_EXAMPLES = 20_000  # enough for a stable probe, bounded in time on a CPU


def majority_baseline(task: Task, train: LabeledData, test: LabeledData) -> dict:
    if task.name == "ner":
        truth = [list(ex.tags) for ex in test.examples]
        return entity_metrics(truth, [["O"] * len(tags) for tags in truth])
    top = Counter(label for ex in train.examples for label in ex.labels).most_common(1)[0][0]
    if task.multi_label:
        y_true = np.asarray([f["labels"] for f in task.encode(test).features], dtype=np.int8)
        y_pred = np.zeros_like(y_true)
        y_pred[:, task.label2id[top]] = 1
        return multilabel_metrics(y_true, y_pred, task.label_names)
    y_true = [task.label2id[ex.labels[0]] for ex in test.examples]
    return classification_metrics(y_true, [task.label2id[top]] * len(y_true), task.label_names)


@torch.inference_mode()
def frozen_features(backbone, task: Task, data: LabeledData, pooling: str, batch_size: int = 64,
                    encoded: Encoded | None = None):
    """Frozen representations: one pooled vector per text, or one vector per labeled word (NER).

    Returns (vectors, targets, encoded); `backbone` is a transformers encoder (`AutoModel`), used in eval mode.
    `encoded` is `task.encode(data)` where the caller already has it (the trainer does).
    """
    was_training = backbone.training
    backbone.eval()
    encoded = encoded if encoded is not None else task.encode(data)
    vectors, targets = [None] * len(data), [None] * len(data)
    for idx, batch in length_sorted_batches(encoded.features, task.tokenizer, batch_size):
        if task.name == "ner":  # single sequences: type 0 throughout, as the base model read them (no case types)
            batch.pop("token_type_ids", None)
        out = backbone(**batch)
        hidden = out.last_hidden_state  # (B, T, H)
        for row, i in enumerate(idx):
            labels = np.asarray(encoded.features[i]["labels"])
            if task.name == "ner":
                positions = np.flatnonzero(labels != IGNORE)
                vectors[i] = hidden[row, positions].float().numpy()
                targets[i] = labels[positions]
            else:
                if pooling == "mean":
                    vec = mean_pool(hidden[row : row + 1], batch["attention_mask"][row : row + 1])[0]
                elif pooling == "pooler" and out.pooler_output is not None:
                    vec = out.pooler_output[row]
                else:
                    vec = hidden[row, 0]
                vectors[i] = vec.float().numpy()
                targets[i] = labels
    backbone.train(was_training)
    return vectors, targets, encoded


@dataclass
class LinearProbe:
    """A logistic-regression head fitted on frozen features of the training set.

    It is both a baseline (what the base model already knows) and, for `training.head_init: probe`, the
    starting point of the fine-tuned head (LP-FT).
    """

    task: Task
    pooling: str
    classifier: object  # LogisticRegression, or OneVsRestClassifier for multi-label

    def head_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight (num_labels, H), bias (num_labels,)) of a linear layer computing the probe's logits.

        A label the probe never saw (a tag absent from train tokens) gets zero weights and a bias far below
        the others, so the initial head never predicts it; training can still raise it.
        """
        clf = self.classifier
        if self.task.multi_label:
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
        task = self.task
        x_test, y_test, encoded = frozen_features(backbone, task, test, self.pooling, encoded=encoded)
        if task.name == "ner":
            pred_tags = []
            for i, ex in enumerate(test.examples):
                tags = ["O"] * len(ex.tokens)
                if len(x_test[i]):
                    for word, label in zip(encoded.alignment[i], self.classifier.predict(x_test[i]), strict=True):
                        tags[word] = task.label_names[label]
                pred_tags.append(tags)
            return entity_metrics([list(ex.tags) for ex in test.examples], pred_tags)
        y_pred = self.classifier.predict(np.stack(x_test))
        if task.multi_label:
            return multilabel_metrics(np.asarray(y_test, dtype=np.int8), y_pred, task.label_names)
        return classification_metrics([int(v) for v in y_test], y_pred.tolist(), task.label_names)


def _binary_row(estimator, n_features: int) -> tuple[np.ndarray, float]:
    """(weight, bias) of one one-vs-rest label; a label on (off) in every training example got a constant
    predictor, which becomes a zero weight and a bias of +10 (-10)."""
    if hasattr(estimator, "coef_"):
        return estimator.coef_[0], float(estimator.intercept_[0])
    always = estimator.predict_proba(np.zeros((1, n_features)))[0, 1] > 0.5
    return np.zeros(n_features), 10.0 if always else -10.0


def fit_probe(task: Task, backbone, pooling: str, train: LabeledData, seed: int = 0,
              encoded: Encoded | None = None) -> LinearProbe:
    """Fit logistic regression on frozen features of `train` (a seeded sample of at most PROBE_MAX_EXAMPLES).

    `encoded` (`task.encode(train)`) is used when the whole of train is; a sample is encoded anew, since NER
    document context depends on which sentences are its neighbours."""
    rng = np.random.default_rng(seed)
    if len(train) > PROBE_MAX_EXAMPLES:
        train = train.subset(np.sort(rng.choice(len(train), PROBE_MAX_EXAMPLES, replace=False)))
        encoded = None
    x_train, y_train, _ = frozen_features(backbone, task, train, pooling, encoded=encoded)
    if task.name == "ner":
        clf = LogisticRegression(max_iter=300, C=1.0)
        clf.fit(np.concatenate(x_train), np.concatenate(y_train))
    elif task.multi_label:
        clf = OneVsRestClassifier(LogisticRegression(max_iter=1000))
        clf.fit(np.stack(x_train), np.asarray(y_train, dtype=np.int8))
    else:
        clf = LogisticRegression(max_iter=1000)
        clf.fit(np.stack(x_train), np.asarray(y_train))
    return LinearProbe(task, pooling, clf)


def linear_probe(task: Task, base: str, pooling: str, train: LabeledData, test: LabeledData, seed: int = 0) -> dict:
    """Fit logistic regression on frozen pretrained features of `train`; score on `test`."""
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(base).eval()
    return fit_probe(task, backbone, pooling, train, seed).score(backbone, test)
