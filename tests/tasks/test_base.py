"""The task contract: units, decisions and the parity gate's agreement rule, the same for every caller.

Exact small cases worked out by hand: which units agree between two runtimes' logits, and what each task
counts as one unit (a text; a label set; a labeled word, never a sub-token the labels ignore).
"""

from __future__ import annotations

import numpy as np
import pytest

from goldmine.modeling.backbone import load_tokenizer
from goldmine.tasks.sequence_classification import MultiLabelClassification, SequenceClassification
from goldmine.tasks.token_classification import IGNORE, TokenClassification


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def test_a_text_is_one_unit_that_agrees_when_the_argmax_does(tokenizer):
    task = SequenceClassification(["a", "b", "c"], tokenizer)
    feature = {"input_ids": [1, 2], "labels": 2}
    ref = np.array([0.1, 0.2, 3.0], dtype=np.float32)
    assert task.agreement(ref, np.array([0.0, 0.0, 0.5], dtype=np.float32), feature) == (1, 1)
    assert task.agreement(ref, np.array([0.0, 0.6, 0.5], dtype=np.float32), feature) == (0, 1)
    assert task.targets(feature).tolist() == [2]
    assert task.decide(task.unit_probabilities(np.array([0.2, 0.5, 0.3]), feature)).tolist() == [1]


def test_a_label_set_agrees_only_when_every_label_does(tokenizer):
    task = MultiLabelClassification(["a", "b", "c"], tokenizer)
    feature = {"input_ids": [1, 2], "labels": [1.0, 0.0, 1.0]}
    ref = np.array([2.0, -1.0, 0.5], dtype=np.float32)
    assert task.agreement(ref, np.array([0.1, -3.0, 4.0], dtype=np.float32), feature) == (1, 1)
    assert task.agreement(ref, np.array([0.1, -3.0, -0.1], dtype=np.float32), feature) == (0, 1)
    units = task.unit_probabilities(np.array([0.9, 0.2, 0.6]), feature)
    assert task.decide(units).tolist() == [[1, 0, 1]] == task.targets(feature).tolist()
    np.testing.assert_allclose(task.confidence(units), [[0.9, 0.8, 0.6]])


def test_ner_units_are_the_labeled_words_only(tokenizer):
    task = TokenClassification(["O", "B-PER", "I-PER"], tokenizer)
    feature = {"input_ids": [101, 7, 8, 9, 102], "labels": [IGNORE, 1, IGNORE, 0, IGNORE]}
    ref = np.zeros((5, 3), dtype=np.float32)
    ref[1, 1] = ref[3, 0] = 5.0  # word 0 -> B-PER, word 1 -> O
    other = ref.copy()
    other[2] = [0.0, 0.0, 9.0]  # a continuation sub-token: not a unit, its change does not count
    assert task.agreement(ref, other, feature) == (2, 2)
    other[3] = [0.0, 9.0, 0.0]  # word 1 now B-PER
    assert task.agreement(ref, other, feature) == (1, 2)
    assert task.targets(feature).tolist() == [1, 0]
    assert task.decide(task.unit_probabilities(ref, feature)).tolist() == [1, 0]
