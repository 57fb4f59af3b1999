"""Out-of-scope: scores from logits, a threshold fitted on dev to a target in-scope precision, an explicit class,
and the rule carried by the run directory into predictions and evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import goldmine
from goldmine.config import load_config
from goldmine.errors import ConfigError, ModelError
from goldmine.inference.model import Model
from goldmine.inference.out_of_scope import (
    PROTOTYPES_FILE,
    SCORES,
    OutOfScopeRule,
    Outputs,
    Prototypes,
    fit_rule,
    in_scope_scores,
    out_of_scope_metrics,
    precision_threshold,
)

# --- the pieces ---------------------------------------------------------------------------------------------------


def test_the_scores_are_the_top_probability_and_the_log_partition():
    logits = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(in_scope_scores(logits, "max_probability"),
                               [np.exp(2) / (np.exp(2) + 2), 1 / 3])
    np.testing.assert_allclose(in_scope_scores(logits, "energy"), [np.log(np.exp(2) + 2), 1 + np.log(3)])


def test_the_threshold_answers_as_much_as_the_target_precision_allows():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    right = np.array([True, True, False, True, False, False])
    assert precision_threshold(scores, right, 0.75) == 0.6  # 3 right of the 4 answered
    assert precision_threshold(scores, right, 1.0) == 0.8
    assert precision_threshold(scores, right, 0.55) == 0.5  # 3 of 5; the sixth would make it 3 of 6
    assert precision_threshold(scores, right, 0.5) == 0.4  # 3 of 6 is still 0.5
    tied = np.array([0.9, 0.7, 0.7, 0.1])
    assert precision_threshold(tied, np.array([True, True, False, False]), 0.9) == 0.9  # never cut inside a tie


def test_auto_keeps_the_score_that_separates_better():
    rng = np.random.default_rng(0)
    inside = rng.normal(size=(200, 5)) + 6 * np.eye(5)[rng.integers(0, 5, 200)]
    labels = inside.argmax(axis=1)
    outside = inside[:100] - 4.0  # the same softmax as in-scope texts, lower logits: only energy sees the difference
    rule, report = fit_rule(inside, labels, outside, list("abcde"), "auto", 0.95, "oos", None)
    assert report["scores"]["energy"]["auroc"] > 0.95 > report["scores"]["max_probability"]["auroc"]
    assert rule.method == "energy" and rule.fallback_label == "oos" and not rule.explicit
    dev = report["dev"]
    # the threshold answers as much as a 0.95 precision allows: up to ~5% of its answers may go to oos texts
    assert dev["oos_recall"] >= 0.85 and dev["in_scope_accuracy"] > 0.9 and dev["oos_examples"] == 100


def clusters(rng, centres: np.ndarray, per_class: int, spread: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(centres)), per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), centres.shape[1])), labels


def test_prototype_scores_measure_how_far_a_text_lies_from_its_nearest_class():
    rng = np.random.default_rng(0)
    centres = 3 * np.eye(4, 16)
    train, labels = clusters(rng, centres, 50)
    prototypes = Prototypes.fit(train, labels)
    np.testing.assert_allclose(prototypes.means, centres, atol=0.15)
    near, far = centres[:2] + 0.1, centres[:2] + 2.5 * np.eye(2, 16, k=8)  # off every class, in unused directions
    assert (prototypes.mahalanobis(near) > prototypes.mahalanobis(far)).all()
    assert (prototypes.cosine(near) > prototypes.cosine(far)).all()
    # fewer texts than dimensions (8 per class x 2, 16 dims): the shrunk covariance still inverts
    few = Prototypes.fit(*clusters(rng, centres[:2], 4))
    assert np.isfinite(few.precision).all() and np.isfinite(few.mahalanobis(far)).all()
    # an explicit out-of-scope class is no prototype
    assert len(Prototypes.fit(train, labels, skip_class=3).means) == 3


def test_auto_keeps_an_embedding_score_when_the_logits_cannot_tell():
    rng = np.random.default_rng(2)
    centres = 3 * np.eye(3, 12)
    train, train_labels = clusters(rng, centres, 60)
    dev, dev_labels = clusters(rng, centres, 40)
    # out-of-scope texts: in directions no class uses, with the logits of confident in-scope answers
    outside = 0.3 * rng.normal(size=(60, 12)) + 3 * np.eye(3, 12, k=6)[rng.integers(0, 3, 60)]
    logits_in = 8 * np.eye(3)[dev_labels]
    logits_out = 8 * np.eye(3)[rng.integers(0, 3, 60)]
    rule, report = fit_rule(Outputs(logits_in, dev), dev_labels, Outputs(logits_out, outside), list("abc"), "auto",
                            0.95, "oos", None, Prototypes.fit(train, train_labels))
    assert set(report["scores"]) == set(SCORES)
    assert report["scores"]["mahalanobis"]["auroc"] > 0.99 and report["scores"]["max_probability"]["auroc"] <= 0.5
    assert rule.method in ("mahalanobis", "prototype") and rule.prototypes is not None
    # a 0.95 precision target lets up to ~5% of the answers go to oos texts: 6 of these 60
    assert report["dev"]["oos_recall"] >= 0.85 and report["dev"]["in_scope_accuracy"] > 0.95
    # without prototypes auto measures the logit scores only
    _, logit_only = fit_rule(logits_in, dev_labels, logits_out, list("abc"), "auto", 0.95, "oos", None)
    assert set(logit_only["scores"]) == {"max_probability", "energy"}


def test_a_minimum_share_sent_away_raises_the_threshold_where_dev_has_no_oos_texts():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 400)
    logits = 6 * np.eye(4)[labels] + rng.normal(size=(400, 4))  # nearly always right: precision alone keeps all
    none_out = np.zeros((0, 4))
    plain_rule, plain = fit_rule(logits, labels, none_out, list("abcd"), "max_probability", 0.95, None, None)
    rule, raised = fit_rule(logits, labels, none_out, list("abcd"), "max_probability", 0.95, None, None,
                            min_sent_away=0.05)
    assert plain["dev"]["in_scope_sent_away"] < 0.01
    assert 0.05 <= raised["dev"]["in_scope_sent_away"] <= 0.06 and rule.threshold > plain_rule.threshold


def test_an_explicit_class_is_out_of_scope_and_its_examples_are_the_ground_truth():
    names = ["oos", "refund", "track"]
    logits = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [0, 5.0, 0]])
    labels = np.array([0, 1, 2, 0])  # the last is an oos example answered as refund
    rule, report = fit_rule(logits, labels, np.zeros((0, 3)), names, "none", 0.95, "oos", "human")
    assert rule.explicit and rule.method is None and rule.fallback_label == "human"
    assert rule.decide(logits, names).tolist() == [True, False, False, False]
    metrics = out_of_scope_metrics(rule, logits, labels, np.zeros((0, 3)), names)
    assert metrics["oos_recall"] == 0.5 and metrics["oos_precision"] == 1.0 and metrics["in_scope_accuracy"] == 1.0


def test_a_rule_round_trips_through_its_record():
    rule = OutOfScopeRule("none", "oos", False, "energy", 3.25)
    assert OutOfScopeRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    assert OutOfScopeRule.from_dict(None) is None


# --- runs ---------------------------------------------------------------------------------------------------------

OUTSIDE = ["what is the weather tomorrow", "tell me a joke", "who won the game", "play some music",
           "how tall is the tower", "book a table for two"]


def with_out_of_scope(demo_intents: Path, path: Path, copies: int, every: int = 1) -> Path:
    rows = list(csv.DictReader(demo_intents.open(encoding="utf-8")))[::every]
    rows += [{"text": text, "label": "oos"} for text in OUTSIDE * copies]
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, ["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return path


def train_tiny(tmp_path, tiny, train, dev, **overrides):
    config = load_config(None, {"task": "classification", "model.name": str(tiny), "data.train": str(train),
                                "data.dev": str(dev), "data.test": str(dev), "output_dir": str(tmp_path / "run"),
                                "training.max_steps": 4, "training.eval_strategy": "none",
                                "training.linear_probe": False, **overrides})
    return config, goldmine.train(config)


def test_a_threshold_run_without_oos_training_examples(tmp_path, tiny_model_dir, demo_files):
    dev = with_out_of_scope(demo_files.intents, tmp_path / "dev.csv", copies=2, every=3)
    config, result = train_tiny(tmp_path, tiny_model_dir, demo_files.intents, dev, **{
        "out_of_scope.method": "auto", "out_of_scope.label": "oos", "out_of_scope.target_precision": 0.9})
    meta = json.loads((config.output_dir / "goldmine.json").read_text())
    rule = meta["out_of_scope"]
    assert rule["method"] in SCORES and rule["label"] == "oos" and not rule["explicit"]
    report = json.loads((config.output_dir / "out_of_scope.json").read_text())
    assert set(report["scores"]) == set(SCORES) and report["dev"]["oos_examples"] == 12
    assert "oos" not in meta["label_names"]
    tested = result.test_metrics["out_of_scope"]
    assert tested["oos_examples"] == 12 and 0 <= tested["oos_recall"] <= 1 and tested["auroc"] is not None
    model = Model.load(config.output_dir, runtime="torch")
    answers = model.predict(OUTSIDE + ["i want a refund for my order"])
    assert all(isinstance(a["out_of_scope"], bool) for a in answers)
    for answer in answers:
        if answer["out_of_scope"]:
            assert answer["label"] == "oos" and answer["closest_label"] in model.labels
        else:
            assert answer["label"] in model.labels and "closest_label" not in answer


def test_an_explicit_class_run_answers_with_the_fallback_label(tmp_path, tiny_model_dir, demo_files):
    train = with_out_of_scope(demo_files.intents, tmp_path / "train.csv", copies=6)
    config, result = train_tiny(tmp_path, tiny_model_dir, train, train, **{
        "out_of_scope.label": "oos", "out_of_scope.fallback_label": "hand_off", "training.max_steps": 30,
        "training.learning_rate": 0.003})
    rule = json.loads((config.output_dir / "goldmine.json").read_text())["out_of_scope"]
    assert rule == {"fallback_label": "hand_off", "label": "oos", "explicit": True, "method": None,
                    "threshold": None}
    model = Model.load(config.output_dir, runtime="torch")
    answers = model.predict(OUTSIDE)
    for answer in answers:  # predicting the oos class is answering "none of these", with the fallback label
        assert answer["out_of_scope"] == (answer.get("closest_label") == "oos")
        assert answer["label"] == ("hand_off" if answer["out_of_scope"] else answer["label"])
    assert sum(a["out_of_scope"] for a in answers) >= len(OUTSIDE) // 2  # 30 steps on them: most are learnt
    assert result.test_metrics["out_of_scope"]["oos_examples"] == len(OUTSIDE) * 6


def test_a_model_without_a_rule_answers_as_before(tiny_run):
    [answer] = Model.load(tiny_run("classification"), runtime="torch").predict(["refund please"])
    assert "out_of_scope" not in answer


def test_out_of_scope_is_for_single_label_classification(tmp_path):
    with pytest.raises(ConfigError, match="out_of_scope: is for single-label classification, not ner"):
        load_config(None, {"task": "ner", "out_of_scope.method": "energy"})


@pytest.mark.parametrize("method", ["energy", "mahalanobis"])
def test_the_rule_holds_on_onnx_and_in_the_cli(tmp_path, tiny_model_dir, demo_files, method):
    from typer.testing import CliRunner

    from goldmine.cli import app
    from goldmine.export import export_model

    dev = with_out_of_scope(demo_files.intents, tmp_path / "dev.csv", copies=2, every=3)
    config, _ = train_tiny(tmp_path, tiny_model_dir, demo_files.intents, dev, **{
        "out_of_scope.method": method, "out_of_scope.label": "oos", "out_of_scope.target_precision": 0.9})
    assert (config.output_dir / PROTOTYPES_FILE).is_file() == (method == "mahalanobis")
    export_model(config.output_dir, quantize=None, data=dev, threads=1, force=True)
    texts = OUTSIDE + ["i want a refund for my order", "where is my parcel"]
    on_torch = Model.load(config.output_dir, runtime="torch").predict(texts)
    on_onnx = Model.load(config.output_dir, runtime="onnx").predict(texts)
    assert [a["out_of_scope"] for a in on_onnx] == [a["out_of_scope"] for a in on_torch]
    assert [a["label"] for a in on_onnx] == [a["label"] for a in on_torch]
    result = CliRunner().invoke(app, ["eval", str(config.output_dir), str(dev), "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert "oos_recall" in result.output and "oos examples: 12" in result.output
    if method == "mahalanobis":  # a run copied without its prototypes says what is missing
        (config.output_dir / PROTOTYPES_FILE).unlink()
        with pytest.raises(ModelError, match="out_of_scope_prototypes.npz is missing"):
            Model.load(config.output_dir, runtime="torch")


def test_with_an_explicit_class_its_examples_are_what_auto_separates():
    rng = np.random.default_rng(1)
    names = ["oos", "a", "b"]
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 4 * np.eye(3)[labels]
    logits[labels == 0] -= 3.0  # oos texts: lower logits everywhere (energy sees it), the same argmax
    _, report = fit_rule(logits, labels, np.zeros((0, 3)), names, "auto", 0.95, "oos", None)
    assert {s["auroc_of"] for s in report["scores"].values()} == {"out-of-scope vs in-scope"}
    assert report["scores"]["energy"]["auroc"] > 0.9


def test_without_oos_dev_texts_auto_takes_the_mahalanobis_distance():
    """Wrong-vs-right separation is all such a dev set shows, and it is not out-of-scope detection."""
    rng = np.random.default_rng(4)
    centres = 3 * np.eye(3, 12)
    train, train_labels = clusters(rng, centres, 60)
    dev, dev_labels = clusters(rng, centres, 40)
    logits = 4 * np.eye(3)[dev_labels] + rng.normal(size=(120, 3))
    rule, report = fit_rule(Outputs(logits, dev), dev_labels, Outputs(np.zeros((0, 3)), np.zeros((0, 12))),
                            list("abc"), "auto", 0.95, "oos", None, Prototypes.fit(train, train_labels), 0.01)
    assert {s["auroc_of"] for s in report["scores"].values()} == {"wrong vs right"}
    assert rule.method == "mahalanobis" and "Mahalanobis" in report["chosen_by"]
    assert report["dev"]["in_scope_sent_away"] >= 0.01
