"""Retrain's merge of the live training data and the feedback: duplicates merged, conflicts resolved (a correction
beats the training label, the latest feedback beats an earlier one), evaluation texts never trained on, a seeded
share of what the live version has not seen held out for the gate, all reported with counts."""

from __future__ import annotations

from datetime import datetime, timedelta

from goldmine.data.schema import DataKind, LabeledData, TextExample
from goldmine.serving.retrain import FeedbackRow, merge_feedback

T0 = datetime(2026, 12, 1)


def data(*pairs: tuple[str, str]) -> LabeledData:
    return LabeledData(DataKind.TEXT, [TextExample(t, (label,), source=f"train.csv:{i + 2}")
                                       for i, (t, label) in enumerate(pairs)], "train.csv")


def row(fid: int, text: str, label: str) -> FeedbackRow:
    return FeedbackRow(fid, text, label, T0 + timedelta(minutes=fid))


def test_merge_resolves_duplicates_and_conflicts_and_reports_them():
    train = data(("a", "x"), ("b", "y"), ("b", "y"), ("c", "x"))
    feedback = [row(2, "a", "y"), row(1, "a", "y"),  # a correction of a training label, given twice
                row(3, "d", "x"), row(4, "d", "y"),  # two corrections disagree: the latest (y) wins
                row(5, "b", "y"),  # what training says already
                row(6, "e", "z"),  # a label the model has no class for
                row(7, "t", "x")]  # a text of the evaluation data
    merged, report = merge_feedback(train, feedback, {"x", "y"}, never_train={"t"}, live_trained=set(),
                                    holdout_fraction=0.0)
    assert [(ex.text, ex.labels[0]) for ex in merged.examples] == [
        ("a", "y"), ("b", "y"), ("b", "y"), ("c", "x"), ("d", "y")]
    got = report.to_dict()
    assert {k: got[k] for k in ("training_examples", "feedback", "texts", "duplicates", "conflicts_between_feedback",
                                "conflicts_with_training", "relabeled_examples", "added", "not_trained_evaluation",
                                "not_trained_label", "held_out", "final_examples")} == {
        "training_examples": 4, "feedback": 7, "texts": 5, "duplicates": 2, "conflicts_between_feedback": 1,
        "conflicts_with_training": 1, "relabeled_examples": 1, "added": 1, "not_trained_evaluation": 1,
        "not_trained_label": 1, "held_out": 0, "final_examples": 5}
    assert report.trained_feedback == [1, 2, 3, 4, 5] and report.held_out_feedback == []
    assert "1 conflicts between feedback (latest won)" in report.summary()


def test_a_seeded_share_of_what_live_has_not_seen_is_held_out():
    train = data(("a", "x"), ("b", "y"))
    feedback = [row(i, f"text {i}", "x" if i % 2 else "y") for i in range(1, 11)]
    merged, report = merge_feedback(train, feedback, {"x", "y"}, set(), live_trained={1, 2}, holdout_fraction=0.2)
    again = merge_feedback(train, feedback, {"x", "y"}, set(), live_trained={1, 2}, holdout_fraction=0.2)[1]
    assert report.held_out == 2 and report.held_out_feedback == again.held_out_feedback  # round(0.2 * 8), seeded
    assert not set(report.held_out_feedback) & {1, 2}  # live trained on those: no fair comparison
    trained_texts = {ex.text for ex in merged.examples}
    assert not {f"text {i}" for i in report.held_out_feedback} & trained_texts
    assert sorted(report.trained_feedback + report.held_out_feedback) == list(range(1, 11))
    assert report.final_examples == 2 + 8
