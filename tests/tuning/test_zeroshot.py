"""Zero-shot: a classification run built from a label file, whose logits are scale x cosine similarity to the
label prototypes (minus the content-free similarity), loaded, evaluated and exported like any run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import goldmine
from goldmine.cli import app
from goldmine.config import load_config
from goldmine.errors import ConfigError, DataError
from goldmine.inference.model import Model
from goldmine.modeling.sentence_embeddings import embed, unit
from goldmine.training.trainer import check_config
from goldmine.tuning.zeroshot import CONTENT_FREE, LabelSpec, read_label_file

DESCRIPTIONS = {
    "refund_request": "i want my money back for this order",
    "track_order": "where is my parcel , when does it arrive ?",
    "reset_password": "i cannot log in , reset my password",
}


def label_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def mapping_file(tmp_path: Path) -> Path:
    return label_file(tmp_path, "labels:\n" + "".join(f"  {k}: \"{v}\"\n" for k, v in DESCRIPTIONS.items()))


def build(tmp_path: Path, tiny: Path, labels: Path, **overrides) -> goldmine.TrainConfig:
    config = load_config(None, {"task": "classification", "tuning.strategy": "zeroshot", "model.name": str(tiny),
                                "tuning.zeroshot.labels": str(labels), "output_dir": str(tmp_path / "zs"),
                                **overrides})
    goldmine.train(config)
    return config


# --- the label file -------------------------------------------------------------------------------------------


def test_the_three_forms_of_a_label_file(tmp_path):
    assert read_label_file(label_file(tmp_path, "labels: [a, b]\n")) == [LabelSpec("a"), LabelSpec("b")]
    assert read_label_file(label_file(tmp_path, "labels: {a: first, b: second}\ntemplates: ['about {label}']\n")) == [
        LabelSpec("a", "first", ("about {label}",)), LabelSpec("b", "second", ("about {label}",))]
    specs = read_label_file(label_file(tmp_path, (
        "labels:\n  - name: a\n    description: the first\n    templates: ['{description}', 'a {label} text']\n"
        "  - b\n")))
    assert specs[0].texts() == ["the first", "a a text"] and specs[1].texts() == ["b"]


@pytest.mark.parametrize(("text", "message"), [
    ("labels: [a]\n", "a classifier needs 2 to 1000 labels, got 1"),
    ("labels: [a, a, b]\n", "labels named more than once: ['a']"),
    ("labels:\n  - name: a\n    colour: red\n  - b\n", "label 1 ('a') has unknown keys ['colour']"),
    ("labels: [a, b]\ntemplates: ['about {topic}']\n", "templates: 'about {topic}' may only use {label} and "
                                                       "{description}"),
    ("labels: {a: '', b: x}\n", "label 'a': description must be a non-empty string"),
    ("names: [a, b]\n", "expected a mapping with a 'labels' entry"),
    ("labels: [a, [b]]\n", "label 2 must be a name or a mapping with 'name'"),
])
def test_a_bad_label_file_names_the_file_and_the_problem(tmp_path, text, message):
    path = label_file(tmp_path, text)
    with pytest.raises(ConfigError, match=f"^{path}: .*") as err:
        read_label_file(path)
    assert message in str(err.value)


def test_zero_shot_is_checked_before_anything_loads(tmp_path):
    labels = label_file(tmp_path, "labels: [a, b]\n")
    with pytest.raises(ConfigError, match="zero-shot needs a label file"):
        check_config(load_config(None, {"tuning.strategy": "zeroshot"}))
    with pytest.raises(ConfigError, match="is for task classification .* not multilabel"):
        check_config(load_config(None, {"tuning.strategy": "zeroshot", "task": "multilabel",
                                        "tuning.zeroshot.labels": str(labels)}))
    with pytest.raises(ConfigError, match="label file not found"):
        check_config(load_config(None, {"tuning.strategy": "zeroshot", "tuning.zeroshot.labels": "nope.yaml"}))


# --- the model it builds ---------------------------------------------------------------------------------------


def test_logits_are_scaled_cosines_to_the_prototypes_minus_the_content_free_ones(tmp_path, tiny_model_dir):
    config = build(tmp_path, tiny_model_dir, mapping_file(tmp_path))
    model = Model.load(config.output_dir, runtime="torch")
    assert model.labels == list(DESCRIPTIONS) and model.meta.strategy == "zeroshot"  # the label file's order
    texts = ["my parcel is late", "refund please", "password reset"]
    network, tokenizer = model.network, model.task.tokenizer
    prototypes = unit(embed(network, tokenizer, [DESCRIPTIONS[name] for name in model.labels], 128))
    content_free = embed(network, tokenizer, list(CONTENT_FREE), 128)
    expected = 20.0 * (embed(network, tokenizer, texts, 128) @ prototypes.T
                       - (content_free @ prototypes.T).mean(axis=0))
    probs = np.array([[p["scores"][name] for name in model.labels] for p in model.predict(texts)])
    np.testing.assert_allclose(probs, torch.tensor(expected).softmax(-1).numpy(), atol=1e-5)
    record = model.meta.extra["zeroshot"]
    assert (record["scale"], record["calibrate"], record["examples"]) == (20.0, True, 0)


def test_without_calibration_each_description_is_its_own_label(tmp_path, tiny_model_dir):
    config = build(tmp_path, tiny_model_dir, mapping_file(tmp_path), **{"tuning.zeroshot.calibrate": False})
    model = Model.load(config.output_dir)
    names = sorted(DESCRIPTIONS)
    assert [p["label"] for p in model.predict([DESCRIPTIONS[n] for n in names])] == names  # cosine 1 to itself


def test_examples_join_their_label_texts_in_the_prototype(tmp_path, tiny_model_dir):
    train = tmp_path / "few.csv"
    rows = [("refund my order", "refund_request"), ("i want a refund", "refund_request"),
            ("track my order", "track_order"), ("reset password", "reset_password")] * 3
    with train.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    test = tmp_path / "test.csv"
    test.write_text("text,label\nrefund my order,refund_request\ntrack my order,track_order\n")
    config = build(tmp_path, tiny_model_dir, mapping_file(tmp_path), **{
        "data.train": str(train), "data.dev": str(test), "data.test": str(test), "tuning.zeroshot.calibrate": False})
    model = Model.load(config.output_dir, runtime="torch")
    network, tokenizer = model.network, model.task.tokenizer
    for k, name in enumerate(model.labels):
        texts = [DESCRIPTIONS[name], *(t for t, label in rows if label == name)]
        expected = unit(embed(network, tokenizer, texts, 128).sum(axis=0))
        weight = network.classifier.weight[k].detach().numpy() / 20.0
        np.testing.assert_allclose(weight, expected, atol=1e-5)
    assert model.meta.extra["zeroshot"]["examples"] == len(rows)
    metrics = __import__("json").loads((config.output_dir / "metrics.json").read_text())
    assert list(metrics["before_after"]) == ["majority class", "pretrained + linear probe", "zeroshot"]


def test_an_example_label_missing_from_the_label_file_is_reported_at_its_line(tmp_path, tiny_model_dir):
    train = tmp_path / "few.csv"
    train.write_text("text,label\nrefund my order,refund_request\nhello there,greeting\n")
    with pytest.raises(DataError) as err:
        build(tmp_path, tiny_model_dir, mapping_file(tmp_path), **{"data.train": str(train), "data.dev": str(train),
                                                                    "data.test": str(train)})
    assert [(i.line, i.reason.split(" (")[0]) for i in err.value.issues] == [
        (3, f"label 'greeting' is not in the label file {tmp_path / 'labels.yaml'}")]
    assert not (tmp_path / "zs" / "goldmine.json").exists()  # nothing half-written


def test_the_cli_builds_it_and_export_serves_it(tmp_path, tiny_model_dir):
    labels = mapping_file(tmp_path)
    test = tmp_path / "test.csv"
    test.write_text("text,label\n" + "".join(f"{v.replace(',', '')},{k}\n" for k, v in DESCRIPTIONS.items()) * 4)
    out = tmp_path / "cli-run"
    result = CliRunner().invoke(app, ["train", "--strategy", "zeroshot", "--labels", str(labels), "--model",
                                      str(tiny_model_dir), "--test", str(test), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from goldmine.export import export_model

    exported = export_model(out, quantize="int8", data=test, threads=1, force=True)
    torch_probs = [p["scores"] for p in Model.load(out, runtime="torch").predict(list(DESCRIPTIONS.values()))]
    onnx_probs = [p["scores"] for p in Model.load(out, runtime="onnx").predict(list(DESCRIPTIONS.values()))]
    for a, b in zip(torch_probs, onnx_probs, strict=True):
        np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-4)
    assert exported.report["runtimes"]["onnx"]["passed"]


# --- labels given with the request -----------------------------------------------------------------------------


def test_a_request_label_list_scores_like_a_model_built_from_those_labels(tmp_path, tiny_model_dir):
    """Labels sent with a request are embedded as a label file's names are: the answer equals that of a run built
    from a label file holding just those names."""
    config = build(tmp_path, tiny_model_dir, mapping_file(tmp_path))
    other = build(tmp_path / "b", tiny_model_dir, label_file(tmp_path, "labels: [refund, delivery, login]\n"))
    texts = ["my parcel is late", "refund please"]
    asked = Model.load(config.output_dir).predict(texts, labels=["refund", "delivery", "login"])
    built = Model.load(other.output_dir).predict(texts)
    for a, b in zip(asked, built, strict=True):
        assert a["label"] == b["label"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)


def test_request_labels_through_onnx_match_torch(tmp_path, tiny_model_dir):
    from goldmine.export import export_model

    config = build(tmp_path, tiny_model_dir, mapping_file(tmp_path))
    test = tmp_path / "test.csv"
    test.write_text("text,label\n" + "".join(f"{v.replace(',', '')},{k}\n" for k, v in DESCRIPTIONS.items()))
    export_model(config.output_dir, data=test, threads=1, force=True)
    labels, texts = ["refund", "delivery", "login"], ["my parcel is late", "refund please"]
    by_torch = Model.load(config.output_dir, runtime="torch").predict(texts, labels=labels)
    by_onnx = Model.load(config.output_dir, runtime="onnx").predict(texts, labels=labels)
    for a, b in zip(by_torch, by_onnx, strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
    np.testing.assert_allclose(Model.load(config.output_dir, runtime="onnx").embed(texts),
                               Model.load(config.output_dir, runtime="torch").embed(texts), atol=1e-4)


@pytest.mark.parametrize(("labels", "message"), [
    (["only"], "give 2 to 100 label names, got 1"),
    ([f"l{i}" for i in range(101)], "give 2 to 100 label names, got 101"),
    (["a", " "], "a label name is empty"),
    (["a", "a"], "named more than once: ['a']"),
    (["a", "x" * 201], "longer than 200 characters"),
])
def test_a_bad_request_label_list_is_an_input_error(tmp_path, tiny_model_dir, labels, message):
    from goldmine.errors import InputError

    config = build(tmp_path, tiny_model_dir, mapping_file(tmp_path))
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Model.load(config.output_dir).predict(["hello"], labels=labels)


def test_a_trained_model_refuses_a_request_label_list(tiny_run):
    from goldmine.errors import InputError

    with pytest.raises(InputError, match="a label list per request is for zero-shot models"):
        Model.load(tiny_run("classification")).predict(["hello"], labels=["a", "b"])
