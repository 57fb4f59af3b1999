"""Metric values checked against small cases computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from goldmine.evaluation.metrics import (
    CalibrationBins,
    calibration,
    classification_metrics,
    entity_metrics,
    multilabel_metrics,
)

# ---------------------------------------------------------------- single-label


def test_classification_hand_computed():
    # a: 1 of 2 recalled, b: 1 of 2 predictions right, c: perfect, d: never seen.
    result = classification_metrics([0, 0, 1, 2], [0, 1, 1, 2], ["a", "b", "c", "d"])
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["micro_f1"] == pytest.approx(0.75)
    # F1: a = 2/3, b = 2/3, c = 1; d is in neither array so it is not averaged.
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert result["weighted_f1"] == pytest.approx((2 * 2 / 3 + 1 * 2 / 3 + 1 * 1) / 4)
    assert result["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert result["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert result["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    json.dumps(result)  # plain Python types only


def test_classification_predicted_but_absent_label_lowers_macro():
    # "c" is predicted once but never true: its F1 is 0 and it counts in the macro average.
    result = classification_metrics([0, 1], [0, 2], ["a", "b", "c"])
    assert result["macro_f1"] == pytest.approx((1 + 0 + 0) / 3)
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_classification_rejects_bad_input():
    with pytest.raises(ValueError, match="items"):
        classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="label id 5"):
        classification_metrics([0, 5], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="no examples"):
        classification_metrics([], [], ["a"])


# ---------------------------------------------------------------- multi-label


def test_multilabel_hand_computed():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    result = multilabel_metrics(y_true, y_pred, ["x", "y", "z"])
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["hamming_loss"] == pytest.approx(1 / 9)
    assert result["macro_f1"] == pytest.approx(2 / 3)  # x = 1, y = 1, z = 0
    assert result["micro_f1"] == pytest.approx(0.8)  # tp 2, fp 0, fn 1
    # per example: 2/3, 1, and 1 for the correctly empty third row
    assert result["samples_f1"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert result["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    json.dumps(result)


def test_multilabel_unseen_label_not_averaged():
    y_true = np.array([[1, 0], [0, 0]])
    result = multilabel_metrics(y_true, y_true.copy(), ["x", "never"])
    assert result["macro_f1"] == 1.0
    assert result["per_class"]["never"]["support"] == 0
    nothing = multilabel_metrics(np.zeros((2, 2), dtype=int), np.zeros((2, 2), dtype=int), ["x", "y"])
    assert nothing["accuracy"] == 1.0 and nothing["samples_f1"] == 1.0 and nothing["macro_f1"] == 0.0


def test_multilabel_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 2)), ["x", "y", "z"])
    with pytest.raises(ValueError, match="label names"):
        multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 3)), ["x", "y"])
    with pytest.raises(ValueError, match="0/1"):
        multilabel_metrics(np.full((1, 1), 0.7), np.zeros((1, 1)), ["x"])


# ---------------------------------------------------------------- entities

TRUE = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "O"]]
PRED = [["B-PER", "O", "O", "B-LOC", "O"], ["I-ORG", "I-ORG", "O"]]


def test_entity_hand_computed_conlleval_and_strict():
    result = entity_metrics(TRUE, PRED)
    # Predicted entities: PER(0..0) has the wrong boundary, LOC is right, and I-ORG I-ORG opens ORG(0..1) by
    # conlleval's rules, which is right. So 2 correct of 3 predicted and of 3 true.
    assert (result["precision"], result["recall"], result["f1"]) == (pytest.approx(2 / 3),) * 3
    assert result["support"] == 3
    assert result["entities"] == {"correct": 2, "predicted": 3, "true": 3}
    assert result["per_type"] == {
        "LOC": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "ORG": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
    }
    # seqeval's strict mode drops the ORG that opens with I-: 1 correct of 2 predicted and of 3 true.
    assert result["precision_strict"] == pytest.approx(1 / 2)
    assert result["recall_strict"] == pytest.approx(1 / 3)
    assert result["f1_strict"] == pytest.approx(0.4)
    # 6 of 8 tokens agree: token accuracy looks far better than entity F1.
    assert result["token_accuracy"] == pytest.approx(0.75)
    assert result["token_accuracy"] != pytest.approx(result["f1"])
    json.dumps(result)


def test_entity_wrong_boundary_is_wrong():
    result = entity_metrics([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])
    assert result["f1"] == 0.0
    assert result["token_accuracy"] == pytest.approx(2 / 3)


def test_entity_lone_inside_tag_is_a_false_positive():
    lone_inside = entity_metrics([["O", "O"]], [["I-PER", "I-PER"]])
    assert lone_inside["per_type"] == {"PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}
    assert lone_inside["entities"] == {"correct": 0, "predicted": 1, "true": 0}
    hit = entity_metrics([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])
    assert (hit["f1"], hit["f1_strict"]) == (1.0, 0.0)


# conlleval's input format: word, true tag, predicted tag; sentences end at a blank line. Made by hand to hold each
# case where conlleval and seqeval's strict mode part: stray I- tags, a type switch inside a span, adjacent B-s.
CONLLEVAL_FILE = """\
Anna B-PER I-PER
Smith I-PER I-PER
lives O O
in O O
New B-LOC B-LOC
York I-LOC I-ORG
. O O

Bob B-PER B-PER
Alice B-PER B-PER
met O O
at O O
Acme B-ORG I-ORG
Corp I-ORG I-ORG
today O I-MISC

German B-MISC B-MISC
British B-MISC I-MISC
lamb O O
Peter B-PER B-PER
Blackburn I-PER B-PER
"""


def read_conlleval(path) -> tuple[list[list[str]], list[list[str]]]:
    true_tags, pred_tags = [], []
    for block in path.read_text().strip().split("\n\n"):
        rows = [line.split() for line in block.splitlines()]
        true_tags.append([row[1] for row in rows])
        pred_tags.append([row[2] for row in rows])
    return true_tags, pred_tags


def test_entity_metrics_match_conlleval_worked_by_hand(tmp_path):
    """Worked with conlleval's chunk rules (a chunk starts at B-X, at I-X after O or after another type; it
    ends before O, B- or an I- of another type), as (type, first word, last word):

    sentence 1  true: PER(0,1) LOC(4,5)
                pred: PER(0,1) (stray I-: counted)          right
                      LOC(4,4) (I-ORG switches type)        wrong
                      ORG(5,5)                              wrong
    sentence 2  true: PER(0,0) PER(1,1) ORG(4,5)
                pred: PER(0,0) PER(1,1) (adjacent B-s)      right, right
                      ORG(4,5) (stray I-)                   right
                      MISC(6,6) (I-MISC after I-ORG)        wrong
    sentence 3  true: MISC(0,0) MISC(1,1) PER(3,4)
                pred: MISC(0,1) (I-MISC continues B-MISC)   wrong
                      PER(3,3) PER(4,4) (B- after B-)       wrong, wrong

    found 10 phrases, correct 4, true 8: precision 4/10, recall 4/8, F1 2*0.4*0.5/0.9 = 4/9.
    Per type (correct, found, true): PER (3, 5, 4) -> P 3/5, R 3/4, F1 2/3; LOC (0, 1, 1); ORG (1, 2, 1) -> P 1/2,
    R 1, F1 2/3; MISC (0, 2, 2). Tokens: 13 of 19 tags agree.
    seqeval strict drops the entities that open with I- (PER(0,1) and ORG(5,5) of sentence 1, ORG and MISC of
    sentence 2): found 6, correct 2 -> precision 1/3, recall 2/8, F1 2/7.
    """
    path = tmp_path / "hand.conlleval"
    path.write_text(CONLLEVAL_FILE)
    true_tags, pred_tags = read_conlleval(path)
    result = entity_metrics(true_tags, pred_tags)

    assert result["entities"] == {"correct": 4, "predicted": 10, "true": 8}
    assert (result["precision"], result["recall"]) == (pytest.approx(0.4), pytest.approx(0.5))
    assert result["f1"] == pytest.approx(4 / 9)
    assert result["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2},
        "ORG": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
        "PER": {"precision": 0.6, "recall": 0.75, "f1": pytest.approx(2 / 3), "support": 4},
    }
    assert result["token_accuracy"] == pytest.approx(13 / 19)
    assert (result["precision_strict"], result["recall_strict"]) == (pytest.approx(1 / 3), pytest.approx(0.25))
    assert result["f1_strict"] == pytest.approx(2 / 7)

    # seqeval's default mode is its port of conlleval: it must agree, type by type.
    from seqeval.metrics import classification_report

    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0)
    assert report["micro avg"]["f1-score"] == pytest.approx(result["f1"])
    assert report["micro avg"]["precision"] == pytest.approx(result["precision"])
    assert report["micro avg"]["recall"] == pytest.approx(result["recall"])
    for name, row in result["per_type"].items():
        assert (report[name]["precision"], report[name]["recall"], report[name]["support"]) == (
            pytest.approx(row["precision"]), pytest.approx(row["recall"]), row["support"])


def test_entity_perfect_prediction():
    result = entity_metrics(TRUE, TRUE)
    assert result["precision"] == result["recall"] == result["f1"] == result["token_accuracy"] == 1.0


def test_entity_rejects_bad_input():
    with pytest.raises(ValueError, match="sentence 1"):
        entity_metrics([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="sentences"):
        entity_metrics([["O"]], [])
    with pytest.raises(ValueError, match="not an IOB2 tag"):
        entity_metrics([["PER"]], [["O"]])
    with pytest.raises(ValueError, match="not an IOB2 tag"):
        entity_metrics([["O"]], [["E-PER"]])


# ---------------------------------------------------------------- calibration


def test_ece_hand_computed_two_bins():
    # bin [0, .5): conf .3, acc 0 -> gap .3 (1 item); bin [.5, 1]: mean conf .8, acc 2/3 -> gap 2/15 (3 items)
    result = calibration(np.array([0.9, 0.8, 0.7, 0.3]), np.array([1, 1, 0, 0]), n_bins=2)
    assert result["ece"] == pytest.approx((0.3 * 1 + (0.8 - 2 / 3) * 3) / 4)  # = 0.175
    assert result["ece"] == pytest.approx(0.175)
    assert result["mce"] == pytest.approx(0.3)
    assert result["bin_lower"] == [0.0, 0.5]
    assert result["bin_upper"] == [0.5, 1.0]
    assert result["bin_count"] == [1, 3]
    assert result["bin_confidence"] == pytest.approx([0.3, 0.8])
    assert result["bin_accuracy"] == pytest.approx([0.0, 2 / 3])
    assert result["count"] == 4
    assert result["accuracy"] == pytest.approx(0.5)
    json.dumps(result)


def test_ece_ten_bins_and_empty_bins():
    result = calibration(np.array([0.95, 0.85, 0.75, 0.35]), np.array([True, True, False, False]), n_bins=10)
    assert result["ece"] == pytest.approx((0.05 + 0.15 + 0.75 + 0.35) / 4)
    assert result["mce"] == pytest.approx(0.75)
    assert result["bin_count"] == [0, 0, 0, 1, 0, 0, 0, 1, 1, 1]
    assert result["bin_accuracy"][0] is None and result["bin_confidence"][0] is None


def test_calibration_edges_and_perfect():
    result = calibration(np.array([0.0, 1.0]), np.array([0, 1]), n_bins=4)
    assert result["bin_count"] == [1, 0, 0, 1]
    assert result["ece"] == 0.0 and result["mce"] == 0.0
    empty = calibration(np.array([]), np.array([]))
    assert empty["count"] == 0 and empty["ece"] == 0.0 and len(empty["bin_count"]) == 15


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="within"):
        calibration(np.array([1.2]), np.array([1]))
    with pytest.raises(ValueError, match="correctness"):
        calibration(np.array([0.5, 0.6]), np.array([1]))
    with pytest.raises(ValueError, match="n_bins"):
        CalibrationBins(0)


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(0)
    confidences = rng.random(1000)
    correct = rng.random(1000) < confidences
    one_shot = calibration(confidences, correct, n_bins=15)
    bins = CalibrationBins(n_bins=15)
    for start in range(0, 1000, 97):
        bins.update(confidences[start : start + 97], correct[start : start + 97])
    streamed = bins.result()
    assert streamed["bin_count"] == one_shot["bin_count"]
    assert streamed["count"] == 1000
    for key in ("ece", "mce", "accuracy", "mean_confidence", "bin_confidence", "bin_accuracy"):
        assert streamed[key] == pytest.approx(one_shot[key]), key
