"""Sequence classification: encoding (single-label, pairs, multi-label), losses, dev metrics, class weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import BertTokenizerFast

from goldmine.data.schema import DataKind, LabeledData, TextExample
from goldmine.errors import DataError
from goldmine.tasks import TASKS
from goldmine.tasks.base import balanced_weights
from goldmine.tasks.sequence_classification import MultiLabelClassification, SequenceClassification

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["where", "is", "my", "order", "refund", "please", "hello", "the", "parcel", "late", "?"]


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizerFast(vocab={piece: i for i, piece in enumerate(SPECIALS + WORDS)})


def ids(tokenizer, *tokens: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(list(tokens))


def text_data(*rows: tuple[str, tuple[str, ...]], multi_label: bool = False) -> LabeledData:
    examples = [TextExample(text, labels, source=f"intents.csv:{i + 2}") for i, (text, labels) in enumerate(rows)]
    return LabeledData(DataKind.TEXT, examples, "intents.csv", multi_label)


class Outputs:
    def __init__(self, logits: torch.Tensor):
        self.logits = logits


def test_registered_names():
    assert TASKS.get("classification") is SequenceClassification
    assert TASKS.get("multilabel") is MultiLabelClassification


def test_encode_single_label(tokenizer):
    data = text_data(("Where is my order?", ("track",)), ("refund please", ("refund",)))
    labels = SequenceClassification.labels_from(data)
    assert labels == ["refund", "track"]
    encoded = SequenceClassification(labels, tokenizer).encode(data)

    assert encoded.features == [
        {
            "input_ids": ids(tokenizer, "[CLS]", "where", "is", "my", "order", "?", "[SEP]"),
            "attention_mask": [1] * 7,
            "token_type_ids": [0] * 7,
            "labels": 1,
        },
        {
            "input_ids": ids(tokenizer, "[CLS]", "refund", "please", "[SEP]"),
            "attention_mask": [1] * 4,
            "token_type_ids": [0] * 4,
            "labels": 0,
        },
    ]
    assert encoded.truncated == 0
    assert encoded.alignment is None


def test_encode_truncates_to_max_length_and_counts(tokenizer):
    data = text_data(("where is my order", ("a",)), ("hello", ("a",)))
    encoded = SequenceClassification(["a"], tokenizer, max_length=4).encode(data)
    assert encoded.features[0]["input_ids"] == ids(tokenizer, "[CLS]", "where", "is", "[SEP]")
    assert encoded.features[1]["input_ids"] == ids(tokenizer, "[CLS]", "hello", "[SEP]")
    assert encoded.truncated == 1


def test_encode_pair_has_both_segments(tokenizer):
    data = LabeledData(DataKind.PAIR, [TextExample("where is my parcel", ("yes",), "the parcel is late", "p.csv:2")])
    encoded = SequenceClassification(["no", "yes"], tokenizer).encode(data)
    (feature,) = encoded.features
    assert feature["input_ids"] == ids(
        tokenizer, "[CLS]", "where", "is", "my", "parcel", "[SEP]", "the", "parcel", "is", "late", "[SEP]"
    )
    assert feature["token_type_ids"] == [0] * 6 + [1] * 5
    assert feature["labels"] == 1


def test_encode_multilabel_gives_multi_hot_float_vectors(tokenizer):
    data = text_data(
        ("where is my order", ("late", "track")), ("refund please", ("refund",)), ("hello", ("late",)),
        multi_label=True,
    )
    labels = MultiLabelClassification.labels_from(data)
    assert labels == ["late", "refund", "track"]
    encoded = MultiLabelClassification(labels, tokenizer).encode(data)
    assert [f["labels"] for f in encoded.features] == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    assert all(isinstance(v, float) for f in encoded.features for v in f["labels"])
    batch = MultiLabelClassification(labels, tokenizer).collator()(encoded.features)
    assert batch["labels"].dtype == torch.float32
    assert batch["input_ids"].shape == (3, 6)


@pytest.mark.parametrize("task_cls", [SequenceClassification, MultiLabelClassification])
def test_unknown_label_names_file_and_line(tokenizer, task_cls):
    data = text_data(("hello", ("track",)), ("where is my order", ("track", "cancel")), ("refund", ("refnud",)))
    with pytest.raises(DataError) as err:
        task_cls(["refund", "track"], tokenizer).encode(data)
    assert [(issue.path, issue.line) for issue in err.value.issues] == [("intents.csv", 3), ("intents.csv", 4)]
    message = str(err.value)
    assert "intents.csv:3" in message and "'cancel'" in message
    assert "intents.csv:4" in message and "'refnud'" in message


def test_check_kind_rejects_token_data():
    with pytest.raises(DataError, match="task 'classification' needs text or pair data, this file holds tokens"):
        SequenceClassification.check_kind(LabeledData(DataKind.TOKENS, [], "x.conll"))


def test_class_frequencies(tokenizer):
    data = text_data(("a", ("x", "y")), ("b", ("y",)), ("c", ("y",)), multi_label=True)
    assert MultiLabelClassification(["x", "y", "z"], tokenizer).class_frequencies(data).tolist() == [1.0, 3.0, 0.0]


# ---------------------------------------------------------------------------------------------------------- losses

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])
TARGETS = torch.tensor([0, 2, 1])


def nll(row: int, label: int) -> float:
    logits = LOGITS[row].tolist()
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def test_single_label_loss_without_weights_is_mean_cross_entropy(tokenizer):
    loss = SequenceClassification(["a", "b", "c"], tokenizer).loss_function(None, 0.0)(Outputs(LOGITS), TARGETS)
    assert loss.item() == pytest.approx((nll(0, 0) + nll(1, 2) + nll(2, 1)) / 3, rel=1e-6)


def test_class_weights_change_the_loss_as_weighted_cross_entropy(tokenizer):
    task = SequenceClassification(["a", "b", "c"], tokenizer)
    weights = torch.tensor([0.5, 2.0, 4.0])
    loss = task.loss_function(weights, 0.0)(Outputs(LOGITS), TARGETS)
    # torch's weighted mean: sum(w[y] * nll) / sum(w[y])
    expected = (0.5 * nll(0, 0) + 4.0 * nll(1, 2) + 2.0 * nll(2, 1)) / (0.5 + 4.0 + 2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(loss, torch.nn.functional.cross_entropy(LOGITS, TARGETS, weight=weights))
    unweighted = task.loss_function(None, 0.0)(Outputs(LOGITS), TARGETS)
    assert abs(loss.item() - unweighted.item()) > 0.1


def test_label_smoothing_is_passed_through(tokenizer):
    loss = SequenceClassification(["a", "b", "c"], tokenizer).loss_function(None, 0.3)(Outputs(LOGITS), TARGETS)
    # smoothed target: 0.7 on the label plus 0.1 (= 0.3 / 3) on every class
    rows = [(0, 0), (1, 2), (2, 1)]
    expected = sum(0.7 * nll(r, y) + 0.1 * sum(nll(r, c) for c in range(3)) for r, y in rows) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_multilabel_loss_with_pos_weight(tokenizer):
    task = MultiLabelClassification(["a", "b"], tokenizer)
    logits = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    pos_weight = torch.tensor([3.0, 0.5])

    def term(x: float, y: float, pw: float) -> float:
        sig = 1 / (1 + math.exp(-x))
        return -(pw * y * math.log(sig) + (1 - y) * math.log(1 - sig))

    expected = (term(1.0, 1, 3.0) + term(-2.0, 0, 0.5) + term(0.0, 1, 3.0) + term(0.5, 1, 0.5)) / 4
    loss = task.loss_function(pos_weight, 0.0)(Outputs(logits), targets)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    plain = (term(1.0, 1, 1) + term(-2.0, 0, 1) + term(0.0, 1, 1) + term(0.5, 1, 1)) / 4
    assert task.loss_function(None, 0.0)(Outputs(logits), targets.to(torch.int64)).item() == pytest.approx(
        plain, rel=1e-6
    )


# ----------------------------------------------------------------------------------------------------- dev metrics


def test_single_label_dev_metrics_and_reduction(tokenizer):
    task = SequenceClassification(["a", "b", "c"], tokenizer)
    metrics = task.dev_metrics(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    # F1: a = 1, b = 2/3 (precision 1/2), c = 2/3 (recall 1/2)
    assert metrics == {"accuracy": 0.75, "macro_f1": pytest.approx(7 / 9)}
    assert task.default_metric == "accuracy"
    assert task.reduce_logits(LOGITS).tolist() == [0, 2, 1]
    probs = task.probabilities(LOGITS)
    assert probs.sum(-1).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_multilabel_dev_metrics_and_reduction(tokenizer):
    task = MultiLabelClassification(["a", "b"], tokenizer)
    metrics = task.dev_metrics(np.array([[1, 0], [1, 1]], dtype=np.int8), np.array([[1.0, 0.0], [0.0, 1.0]]))
    # a: tp 1 fp 1 -> F1 2/3; b: tp 1 -> F1 1; micro: tp 2 fp 1 fn 0 -> F1 0.8; one row exactly right
    assert metrics == {"accuracy": 0.5, "macro_f1": pytest.approx(5 / 6), "micro_f1": pytest.approx(0.8)}
    assert task.default_metric == "micro_f1"
    reduced = task.reduce_logits(torch.tensor([[0.1, -0.1], [2.0, 0.0]]))
    assert reduced.dtype == torch.int8
    assert reduced.tolist() == [[1, 0], [1, 0]]  # sigmoid(0) = 0.5 is not above the threshold


def test_balanced_weights_exact():
    weights = balanced_weights(np.array([2, 6, 0, 4]))
    # n / (k * count) = 12 / (4 * count); an unseen class gets 1
    assert weights.dtype == torch.float32
    assert weights.tolist() == [1.5, 0.5, 1.0, 0.75]
    assert balanced_weights(np.array([5, 5])).tolist() == [1.0, 1.0]
