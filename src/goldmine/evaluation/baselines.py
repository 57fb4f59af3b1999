"""What the model scores *before* fine-tuning, measured honestly.

- majority: always the most frequent training label (for NER: every word `O`, entity F1 0).
- linear probe: the pretrained encoder, frozen, with a logistic-regression head fitted on the
  training set. This is what the base model already knows; an untrained random head would
  only measure chance.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from goldmine.data.schema import LabeledData
from goldmine.evaluation.metrics import classification_metrics, entity_metrics, multilabel_metrics
from goldmine.inference.batching import length_sorted_batches
from goldmine.modeling.pooled_classifier import mean_pool
from goldmine.tasks.base import Task
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
def _features(backbone, task: Task, data: LabeledData, pooling: str, batch_size: int = 64):
    """Frozen representations: one pooled vector per text, or one vector per labeled word (NER)."""
    encoded = task.encode(data)
    vectors, targets = [None] * len(data), [None] * len(data)
    for idx, batch in length_sorted_batches(encoded.features, task.tokenizer, batch_size):
        out = backbone(**batch)
        hidden = out.last_hidden_state  # (B, T, H)
        for row, i in enumerate(idx):
            labels = np.asarray(encoded.features[i]["labels"])
            if task.name == "ner":
                positions = np.flatnonzero(labels != IGNORE)
                vectors[i] = hidden[row, positions].numpy()
                targets[i] = labels[positions]
            else:
                if pooling == "mean":
                    vec = mean_pool(hidden[row : row + 1], batch["attention_mask"][row : row + 1])[0]
                elif pooling == "pooler" and out.pooler_output is not None:
                    vec = out.pooler_output[row]
                else:
                    vec = hidden[row, 0]
                vectors[i] = vec.numpy()
                targets[i] = labels
    return vectors, targets, encoded


def linear_probe(task: Task, base: str, pooling: str, train: LabeledData, test: LabeledData, seed: int = 0) -> dict:
    """Fit logistic regression on frozen pretrained features of `train`; score on `test`."""
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(base).eval()
    rng = np.random.default_rng(seed)
    if len(train) > PROBE_MAX_EXAMPLES:
        train = train.subset(np.sort(rng.choice(len(train), PROBE_MAX_EXAMPLES, replace=False)))
    x_train, y_train, _ = _features(backbone, task, train, pooling)
    x_test, y_test, encoded = _features(backbone, task, test, pooling)
    if task.name == "ner":
        clf = LogisticRegression(max_iter=300, C=1.0)
        clf.fit(np.concatenate(x_train), np.concatenate(y_train))
        pred_tags = []
        for i, ex in enumerate(test.examples):
            tags = ["O"] * len(ex.tokens)
            if len(x_test[i]):
                for word, label in zip(encoded.alignment[i], clf.predict(x_test[i]), strict=True):
                    tags[word] = task.label_names[label]
            pred_tags.append(tags)
        return entity_metrics([list(ex.tags) for ex in test.examples], pred_tags)
    if task.multi_label:
        y = np.asarray(y_train, dtype=np.int8)
        clf = OneVsRestClassifier(LogisticRegression(max_iter=1000))
        clf.fit(np.stack(x_train), y)
        y_pred = clf.predict(np.stack(x_test))
        return multilabel_metrics(np.asarray(y_test, dtype=np.int8), y_pred, task.label_names)
    clf = LogisticRegression(max_iter=1000)
    clf.fit(np.stack(x_train), np.asarray(y_train))
    y_pred = clf.predict(np.stack(x_test))
    return classification_metrics([int(v) for v in y_test], y_pred.tolist(), task.label_names)
