"""Evaluating a trained run directory on labeled files, and the before-fine-tuning baselines."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import goldmine
from goldmine.data.readers import read_file
from goldmine.data.schema import DataKind, LabeledData, TextExample, TokenExample
from goldmine.errors import DataError
from goldmine.evaluation.baselines import linear_probe, majority_baseline
from goldmine.evaluation.evaluate import evaluate, headline
from goldmine.evaluation.metrics import entity_metrics
from goldmine.inference.model import Model
from goldmine.modeling.backbone import load_tokenizer
from goldmine.tasks.sequence_classification import MultiLabelClassification, SequenceClassification
from goldmine.tasks.token_classification import TokenClassification

PNG = b"\x89PNG\r\n\x1a\n"
CLASSIFICATION_KEYS = {"accuracy", "macro_f1", "micro_f1", "weighted_f1", "per_class", "confusion_matrix"}
ENTITY_KEYS = {"precision", "recall", "f1", "support", "per_type", "token_accuracy"}


@pytest.fixture(scope="module")
def classifier(tiny_run) -> Model:
    return Model.load(tiny_run("classification"))


@pytest.fixture(scope="module")
def tagger(tiny_run) -> Model:
    return Model.load(tiny_run("ner"))


@pytest.fixture(scope="module")
def intents(demo_files) -> LabeledData:
    return read_file(demo_files.intents)


@pytest.fixture(scope="module")
def entities(demo_files) -> LabeledData:
    return read_file(demo_files.ner)


# ------------------------------------------------------------------------------------------------- classification


def test_classification_metrics_agree_with_predict(classifier, intents, tmp_path):
    intents = intents.subset(range(200))
    metrics = evaluate(classifier, intents, tmp_path, prefix="demo_")

    assert set(metrics) >= CLASSIFICATION_KEYS
    assert (metrics["n_examples"], metrics["truncated"], metrics["data"]) == (len(intents), 0, intents.path)
    assert 50 < metrics["peak_rss_mb"] < 64 * 1024  # this process's high-water mark, in MiB
    # The evaluation path and the serving path see the same predictions.
    predicted = [r["label"] for r in classifier.predict([ex.text for ex in intents.examples])]
    truth = [ex.labels[0] for ex in intents.examples]
    assert metrics["accuracy"] == sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(intents)
    index = {name: i for i, name in enumerate(classifier.labels)}
    matrix = np.zeros((10, 10), dtype=int)
    for p, t in zip(predicted, truth, strict=True):
        matrix[index[t], index[p]] += 1
    assert metrics["confusion_matrix"] == matrix.tolist()
    assert list(metrics["per_class"]) == classifier.labels
    assert 0.0 <= metrics["macro_f1"] <= 1.0

    calibration = metrics["calibration"]
    assert 0.0 <= calibration["ece"] <= 1.0
    assert calibration["count"] == len(intents)
    assert calibration["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-12)

    assert json.loads((tmp_path / "demo_metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for plot in ("demo_reliability.png", "demo_confusion_matrix.png"):
        assert (tmp_path / plot).read_bytes()[:8] == PNG
    assert headline(metrics) == {k: metrics[k] for k in ("accuracy", "macro_f1", "micro_f1")}


def test_without_out_dir_nothing_is_written(classifier, intents, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evaluate(classifier, intents.subset(range(5)))
    assert list(tmp_path.iterdir()) == []


def test_unknown_label_raises_naming_the_line(classifier, tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("text,label\nwhere is my order,track_order\nI want a discount,discount_request\n"
                    "hi,talk_to_human\n")
    with pytest.raises(DataError) as err:
        evaluate(classifier, read_file(path))
    assert [(issue.path, issue.line) for issue in err.value.issues] == [(str(path), 3)]
    assert f"{path}:3" in str(err.value) and "'discount_request'" in str(err.value)


def test_api_evaluate_reads_the_file_and_reports_the_line(tiny_run, demo_files, tmp_path):
    run = tiny_run("classification")
    path = tmp_path / "new.csv"
    path.write_text("text,label\nwhere is my order,track_order\nhi,talk_to_humans\n")
    with pytest.raises(DataError, match=f"{path}:3: label 'talk_to_humans'"):
        goldmine.evaluate(run, path)
    path.write_text("text,label\nwhere is my order,track_order\nhi,talk_to_human\n")
    metrics = goldmine.evaluate(run, path, tmp_path / "out")
    assert metrics["n_examples"] == 2
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_token_data_is_rejected_by_a_classifier(classifier, entities):
    with pytest.raises(DataError, match="task 'classification' needs text or pair data, this file holds tokens"):
        evaluate(classifier, entities)


# ------------------------------------------------------------------------------------------------------------ NER


def test_ner_metrics_and_files(tagger, entities, tmp_path):
    entities = entities.subset(range(120))
    metrics = evaluate(tagger, entities, tmp_path)

    assert set(metrics) >= ENTITY_KEYS
    assert "confusion_matrix" not in metrics
    assert set(metrics["per_type"]) <= {"LOC", "ORG", "PER", "PRODUCT"}
    assert metrics["support"] == sum(entities.label_counts().values())
    for key in ("f1", "precision", "recall", "token_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert (metrics["n_examples"], metrics["truncated"]) == (len(entities), 0)
    # Nothing truncated: every word is scored once, and per-word correctness is the token accuracy.
    calibration = metrics["calibration"]
    assert calibration["count"] == sum(len(ex.tokens) for ex in entities.examples)
    assert calibration["accuracy"] == pytest.approx(metrics["token_accuracy"], abs=1e-12)
    assert 0.0 <= calibration["ece"] <= 1.0

    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert (tmp_path / "reliability.png").read_bytes()[:8] == PNG
    assert not (tmp_path / "confusion_matrix.png").exists()
    assert headline(metrics) == {k: metrics[k] for k in ("f1", "precision", "recall", "token_accuracy")}


def served_tags(model: Model, data: LabeledData) -> list[list[str]]:
    """Each document of `data` sent to `predict` as one text, a sentence a line, its words joined by spaces; the
    entities that come back written as IOB2 tags of the words again (an entity must start and end on words)."""
    documents: dict[int, list[TokenExample]] = {}
    for ex in data.examples:
        documents.setdefault(ex.document, []).append(ex)
    texts, word_spans = [], []  # per document: its text; per sentence: each word's [start, end) in its text
    for sentences in documents.values():
        offset, lines = 0, []
        for ex in sentences:
            spans = []
            for word in ex.tokens:
                spans.append((offset, offset + len(word)))
                offset += len(word) + 1  # the space after the word, or the line break after the last
            word_spans.append(spans)
            lines.append(" ".join(ex.tokens))
        texts.append("\n".join(lines))
    tags = [["O"] * len(spans) for spans in word_spans]
    sentence = 0
    for sentences, prediction in zip(documents.values(), model.predict(texts), strict=True):
        first = {start: (sentence + s, k) for s, spans in enumerate(word_spans[sentence:sentence + len(sentences)])
                 for k, (start, _) in enumerate(spans)}
        for entity in prediction["entities"]:
            s, k = first[entity["start"]]
            end = next(j for j, (_, stop) in enumerate(word_spans[s]) if stop == entity["end"])
            tags[s][k: end + 1] = [f"B-{entity['type']}"] + [f"I-{entity['type']}"] * (end - k)
        sentence += len(sentences)
    return tags


def test_ner_evaluation_scores_the_entities_predict_returns(tagger, entities):
    """What is measured is what is served: documents sent to `predict` come back with the very entities whose
    score `evaluate` reports (each sentence with its document context, decoded by the one decoder)."""
    entities = LabeledData(DataKind.TOKENS, [ex for ex in entities.examples if ex.document < 6], entities.path)
    metrics = evaluate(tagger, entities)
    truth = [list(ex.tags) for ex in entities.examples]
    served = served_tags(tagger, entities)
    headline_keys = ("precision", "recall", "f1", "support", "per_type", "entities")
    # (not token accuracy or the strict figures: served entities come back as tags normalised to B- I-)
    from_served = entity_metrics(truth, served)
    assert {k: from_served[k] for k in headline_keys} == {k: metrics[k] for k in headline_keys}
    assert metrics["entities"]["predicted"] > 0  # the 2-step model tags entities: the comparison is not empty


def test_ner_unknown_tag_raises_naming_the_token_line(tagger, tmp_path):
    path = tmp_path / "new.conll"
    path.write_text("Anna B-PER\nlives O\n\nin O\nthe O\nShire B-REALM\n. O\n")
    with pytest.raises(DataError) as err:
        evaluate(tagger, read_file(path))
    assert [(issue.path, issue.line) for issue in err.value.issues] == [(str(path), 6)]
    assert f"{path}:6" in str(err.value) and "'B-REALM'" in str(err.value)


# ------------------------------------------------------------------------------------------------------ baselines


def test_majority_baseline_predicts_the_most_frequent_training_label(classifier):
    def data(*labels: str) -> LabeledData:
        return LabeledData(DataKind.TEXT, [TextExample(f"text {i}", (label,)) for i, label in enumerate(labels)])

    train = data("card_lost", "card_lost", "card_lost", "track_order", "refund_request")
    test = data("track_order", "card_lost", "track_order", "refund_request", "track_order")
    metrics = majority_baseline(classifier.task, train, test)
    assert set(metrics) >= CLASSIFICATION_KEYS
    assert metrics["accuracy"] == 1 / 5  # the training majority (card_lost), not the test majority
    assert metrics["per_class"]["card_lost"] == {"precision": 0.2, "recall": 1.0, "f1": pytest.approx(1 / 3),
                                                 "support": 1}
    card_lost = classifier.labels.index("card_lost")
    assert all(row[card_lost] == sum(row) for row in metrics["confusion_matrix"])  # every prediction is card_lost
    assert sum(row[card_lost] for row in metrics["confusion_matrix"]) == len(test)


def test_majority_accuracy_is_the_share_of_the_majority_label(classifier, intents):
    metrics = majority_baseline(classifier.task, intents, intents)
    ((_, count),) = Counter(ex.labels[0] for ex in intents.examples).most_common(1)
    assert metrics["accuracy"] == count / len(intents)


def test_majority_baseline_for_ner_tags_everything_outside(tagger, entities):
    metrics = majority_baseline(tagger.task, entities, entities)
    assert set(metrics) >= ENTITY_KEYS
    assert (metrics["f1"], metrics["precision"], metrics["recall"]) == (0.0, 0.0, 0.0)
    tags = [tag for ex in entities.examples for tag in ex.tags]
    assert metrics["token_accuracy"] == tags.count("O") / len(tags)


def test_majority_baseline_multilabel(tiny_model_dir):
    examples = [TextExample("a", ("x", "y")), TextExample("b", ("y",)), TextExample("c", ("z",))]
    data = LabeledData(DataKind.TEXT, examples, multi_label=True)
    task = MultiLabelClassification(["x", "y", "z"], load_tokenizer(str(tiny_model_dir)))
    metrics = majority_baseline(task, data, data)
    # always {y}: right for "b" only; per label: x never predicted, y always, z never
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["per_class"]["y"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["y"]["recall"] == 1.0


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_linear_probe_classification(tiny_model_dir, intents, pooling):
    task = SequenceClassification(intents.label_names(), load_tokenizer(str(tiny_model_dir)))
    train, test = intents.subset(range(0, 100)), intents.subset(range(100, 140))
    metrics = linear_probe(task, str(tiny_model_dir), pooling, train, test)
    assert set(metrics) >= CLASSIFICATION_KEYS
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert sum(map(sum, metrics["confusion_matrix"])) == len(test)
    assert sum(row["support"] for row in metrics["per_class"].values()) == len(test)


def test_linear_probe_ner(tiny_model_dir, entities):
    task = TokenClassification(entities.label_names(), load_tokenizer(str(tiny_model_dir)))
    train, test = entities.subset(range(0, 40)), entities.subset(range(40, 60))
    metrics = linear_probe(task, str(tiny_model_dir), "mean", train, test)
    assert set(metrics) >= ENTITY_KEYS
    assert metrics["support"] == sum(test.label_counts().values())
    for key in ("f1", "precision", "recall", "token_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0


def test_linear_probe_ner_fits_a_separable_tagging(tiny_model_dir):
    # Every sentence is "anna lives ." tagged B-PER O O: the probe must learn it back exactly.
    examples = [TokenExample(("Anna", "lives", "."), ("B-PER", "O", "O"), i, f"x.conll:{4 * i + 1}") for i in range(8)]
    data = LabeledData(DataKind.TOKENS, examples, "x.conll")
    task = TokenClassification(data.label_names(), load_tokenizer(str(tiny_model_dir)))
    metrics = linear_probe(task, str(tiny_model_dir), "mean", data, data)
    assert (metrics["f1"], metrics["token_accuracy"]) == (1.0, 1.0)


# ------------------------------------------------------------------------------------------------------ multi-label


def test_multilabel_evaluation_with_a_hand_wired_head(tiny_model_dir, tmp_path):
    import torch

    from goldmine.inference.model import RunMeta

    task = MultiLabelClassification(["x", "y", "z"], load_tokenizer(str(tiny_model_dir)))
    network = task.build_model(str(tiny_model_dir), {"goldmine_pooling": "mean"})
    with torch.no_grad():  # sigmoid(2) = 0.88 -> x always on; y (0.12) and z (exactly 0.5) always off
        network.classifier.weight.zero_()
        network.classifier.bias.copy_(torch.tensor([2.0, -2.0, 0.0]))
    model = Model(network, task, RunMeta("multilabel", ["x", "y", "z"], str(tiny_model_dir)), batch_size=2)
    examples = [TextExample("where is my order", ("x",), source="m.csv:2"),
                TextExample("refund", ("x", "y"), source="m.csv:3"),
                TextExample("hello there", ("z",), source="m.csv:4")]
    metrics = evaluate(model, LabeledData(DataKind.TEXT, examples, "m.csv", multi_label=True), tmp_path)

    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["per_class"]["x"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                         "f1": pytest.approx(0.8), "support": 2}
    assert metrics["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))  # tp 2, fp 1, fn 2
    # 9 label decisions, 6 right; confidence max(p, 1 - p) is sigmoid(2) for x and y, 0.5 for z
    sig = 1 / (1 + np.exp(-2.0))
    calibration = metrics["calibration"]
    assert calibration["count"] == 9
    assert calibration["accuracy"] == pytest.approx(6 / 9)
    assert calibration["mean_confidence"] == pytest.approx((6 * sig + 3 * 0.5) / 9, abs=1e-6)
    assert (tmp_path / "metrics.json").is_file() and not (tmp_path / "confusion_matrix.png").exists()
    assert model.predict(["anything"]) == [
        {"labels": ["x"], "scores": {"x": pytest.approx(sig, abs=1e-6), "y": pytest.approx(1 - sig, abs=1e-6),
                                     "z": 0.5}}
    ]
