"""Few-shot: contrastive tuning on class-balanced batches (every pair inside a batch), a logistic-regression head,
a calibrated temperature, and an ordinary run directory that eval, export, predict and serve take unchanged."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel
from typer.testing import CliRunner

import goldmine
from goldmine.cli import app
from goldmine.config import load_config
from goldmine.data.readers import read_file
from goldmine.errors import ConfigError, DataError
from goldmine.inference.model import Model
from goldmine.modeling.backbone import load_tokenizer
from goldmine.modeling.sentence_embeddings import embed
from goldmine.registry import TASKS
from goldmine.training.trainer import check_config
from goldmine.tuning.fewshot import (
    auto_steps,
    class_balanced_batches,
    fit_head,
    fit_temperature_and_prior,
    label_sets,
    length_grouped_batches,
    out_of_fold_logits,
    pair_loss,
    pair_targets,
)


def few(demo_intents: Path, tmp_path: Path, per_label: int) -> Path:
    """The first `per_label` demo examples of each intent."""
    taken: Counter = Counter()
    path = tmp_path / f"few{per_label}.csv"
    with demo_intents.open(encoding="utf-8") as source, path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "label"])
        for row in csv.DictReader(source):
            if taken[row["label"]] < per_label:
                taken[row["label"]] += 1
                writer.writerow([row["text"], row["label"]])
    return path


def config_for(tmp_path: Path, tiny: Path, train: Path, test: Path, **overrides) -> goldmine.TrainConfig:
    return load_config(None, {"task": "classification", "tuning.strategy": "fewshot", "model.name": str(tiny),
                              "data.train": str(train), "data.dev": str(test), "data.test": str(test),
                              "output_dir": str(tmp_path / "fs"), "tuning.fewshot.steps": 8,
                              "tuning.fewshot.batch_size": 16, **overrides})


# --- the batches and the loss -------------------------------------------------------------------------------------


def test_batches_draw_labels_evenly_however_imbalanced_the_examples():
    sets = [frozenset({0})] * 200 + [frozenset({1})] * 4 + [frozenset({2})] * 4 + [frozenset({3})] * 4
    seen: Counter = Counter()
    for idx in class_balanced_batches(sets, 4, batch_size=8, per_label=4, steps=400,
                                      rng=np.random.default_rng(0)):
        assert len(set(idx.tolist())) == len(idx)  # no text twice in a batch (a pair with itself is no pair)
        seen.update(next(iter(sets[i])) for i in idx)
    assert max(seen.values()) / min(seen.values()) < 1.2  # the 200-example label gets no more than the 4-example ones


def test_few_labels_fill_the_batch_with_more_examples_of_each():
    sets = [frozenset({0})] * 8 + [frozenset({1})] * 8
    [idx] = list(class_balanced_batches(sets, 2, batch_size=16, per_label=4, steps=1, rng=np.random.default_rng(0)))
    assert sorted(idx.tolist()) == list(range(16))  # two labels, 8 each: the whole set, 120 pairs in one pass


def test_the_number_of_steps_is_bounded_whatever_the_number_of_labels():
    """setfit #249: 200 labels meant ~128M pairs; here the cost is the step count, never the pair count."""
    assert auto_steps(16, 32, 20.0) == 30
    assert auto_steps(120, 32, 20.0) == 75  # 20 passes of 120 examples in batches of 32
    assert auto_steps(200 * 10, 32, 20.0) == 100
    sets = [frozenset({k}) for k in range(200) for _ in range(10)]
    batches = list(class_balanced_batches(sets, 200, batch_size=32, per_label=4, steps=3,
                                          rng=np.random.default_rng(0)))
    assert [len(b) for b in batches] == [32, 32, 32]


def test_pair_targets_are_the_overlap_of_the_label_sets():
    targets = pair_targets([frozenset({0}), frozenset({0}), frozenset({1}), frozenset({0, 1})])
    np.testing.assert_allclose(targets[0], [1, 1, 0, 0.5])
    np.testing.assert_allclose(targets[3], [0.5, 0.5, 0.5, 1])


def test_the_loss_is_zero_at_its_targets_and_weighs_positives_and_negatives_alike():
    axes = torch.eye(3)
    perfect = torch.stack([axes[0], axes[0], axes[1], axes[2]])  # same label: cos 1, different: cos 0
    targets = torch.from_numpy(pair_targets([frozenset({0}), frozenset({0}), frozenset({1}), frozenset({2})]))
    assert pair_loss(perfect, targets).item() == pytest.approx(0.0)
    collapsed = torch.nn.functional.normalize(torch.ones(4, 3), dim=-1)  # everything alike: every negative wrong
    assert pair_loss(collapsed, targets).item() == pytest.approx(1.0)  # 0 on the 1 positive + 1 on the 5 negatives


def test_the_temperature_softens_a_head_that_is_surer_than_it_is_right():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    vectors = rng.normal(size=(90, 16)) + 0.4 * np.eye(16)[labels] * 3  # classes overlap: a fitted head overfits
    task = type("T", (), {"num_labels": 3, "multi_label": False,
                          "probe_classifier": staticmethod(lambda: __import__("sklearn.linear_model").linear_model
                                                           .LogisticRegression(C=100.0, max_iter=2000))})()
    sets = [frozenset({int(k)}) for k in labels]
    temperature, _ = fit_temperature_and_prior(out_of_fold_logits(task, vectors, sets, seed=0), None, labels)
    assert temperature > 1.5


# --- runs ---------------------------------------------------------------------------------------------------------


def test_a_few_shot_run_is_an_ordinary_run(tmp_path, tiny_model_dir, demo_files):
    train = few(demo_files.intents, tmp_path, 6)
    config = config_for(tmp_path, tiny_model_dir, train, demo_files.intents)
    result = goldmine.train(config)
    meta = json.loads((config.output_dir / "goldmine.json").read_text())
    assert meta["strategy"] == "fewshot"
    record = meta["extra"]["fewshot"]
    assert record["steps"] == 8 and record["examples"] == len(read_file(train)) and record["temperature"] > 0
    assert set(result.before_after) >= {"majority class", "pretrained + linear probe", "fewshot"}
    model = Model.load(config.output_dir, runtime="torch")
    [answer] = model.predict(["i want my money back"])
    assert answer["label"] in model.meta.label_names
    assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_the_encoder_moves_and_the_head_is_the_fitted_one(tmp_path, tiny_model_dir, demo_files):
    """The saved network without the end-to-end phase: tuned encoder weights (not the pretrained ones), and logits
    equal to the fitted logistic regression on its own normalised embeddings divided by the temperature."""
    train = few(demo_files.intents, tmp_path, 6)
    config = config_for(tmp_path, tiny_model_dir, train, demo_files.intents,
                        **{"tuning.fewshot.end_to_end_passes": 0})
    goldmine.train(config)
    network = Model.load(config.output_dir, runtime="torch").network
    pretrained = dict(AutoModel.from_pretrained(tiny_model_dir).named_parameters())
    tuned = dict(network.backbone.named_parameters())
    moved = [not torch.equal(tuned[name], pretrained[name]) for name in tuned]
    assert sum(moved) > len(moved) // 2
    data = read_file(train)
    task = TASKS.get("classification")(network.config.id2label.values(), load_tokenizer(str(config.output_dir)))
    vectors = embed(network, task.tokenizer, [ex.text for ex in data.examples], 128)
    weight, bias = fit_head(task, vectors, label_sets(task, data))
    temperature = json.loads((config.output_dir / "goldmine.json").read_text())["extra"]["fewshot"]["temperature"]
    np.testing.assert_allclose(network.classifier.weight.detach().numpy(), weight / temperature, rtol=1e-3,
                               atol=1e-4)


def test_the_end_to_end_phase_trains_encoder_and_head_on_the_task_loss(tmp_path, tiny_model_dir, demo_files):
    """After the head: `end_to_end_passes` passes over the examples in batches of `batch_size`; the loss over the
    examples falls, and the saved head is no longer the fitted logistic regression."""
    train = few(demo_files.intents, tmp_path, 6)
    config = config_for(tmp_path, tiny_model_dir, train, demo_files.intents,
                        **{"tuning.fewshot.end_to_end_passes": 4,
                           "tuning.fewshot.end_to_end_head_learning_rate": 0.01})
    goldmine.train(config)
    record = json.loads((config.output_dir / "goldmine.json").read_text())["extra"]["fewshot"]
    examples = len(read_file(train))
    assert record["end_to_end_steps"] == -(-4 * examples // 16)
    assert record["end_to_end_loss_after"] < record["end_to_end_loss_before"]  # over all the examples
    network = Model.load(config.output_dir, runtime="torch").network
    data = read_file(train)
    task = TASKS.get("classification")(network.config.id2label.values(), load_tokenizer(str(config.output_dir)))
    weight, _ = fit_head(task, embed(network, task.tokenizer, [ex.text for ex in data.examples], 128),
                         label_sets(task, data))
    assert not np.allclose(network.classifier.weight.detach().numpy(), weight / record["temperature"], atol=1e-3)


def test_length_grouped_batches_cover_every_example_once_a_pass():
    lengths = np.array([5, 40, 7, 33, 12, 9, 50, 21, 3, 18])
    batches = list(length_grouped_batches(lengths, batch_size=3, steps=8, rng=np.random.default_rng(0)))
    assert len(batches) == 8 and all(1 <= len(b) <= 3 for b in batches)
    first_pass = np.concatenate(batches[:4])  # 10 examples in batches of 3: 4 batches a pass
    assert sorted(first_pass.tolist()) == list(range(10))
    for batch in batches:  # sorted inside each group: a batch holds neighbours in length
        assert list(lengths[batch]) == sorted(lengths[batch], reverse=True)


def test_multi_label_few_shot(tmp_path, tiny_model_dir):
    rows = [("refund and where is my parcel", "refund|track"), ("money back please", "refund"),
            ("refund my order now", "refund"), ("where is my parcel", "track"), ("track my order", "track"),
            ("reset my password", "login"), ("i cannot log in", "login"), ("login broken and refund", "login|refund")]
    train = tmp_path / "ml.csv"
    train.write_text("text,labels\n" + "".join(f"{t},{labels}\n" for t, labels in rows))
    config = config_for(tmp_path, tiny_model_dir, train, train, task="multilabel")
    goldmine.train(config)
    [answer] = Model.load(config.output_dir, runtime="torch").predict(["refund please"])
    assert set(answer["scores"]) == {"refund", "track", "login"}
    meta = json.loads((config.output_dir / "goldmine.json").read_text())
    assert meta["extra"]["fewshot"]["temperature"] == 1.0  # one temperature is a single-label notion


def test_the_cli_trains_it_and_export_passes_the_parity_gate(tmp_path, tiny_model_dir, demo_files):
    train = few(demo_files.intents, tmp_path, 6)
    out = tmp_path / "cli-run"
    result = CliRunner().invoke(app, ["train", "--strategy", "fewshot", "--train", str(train), "--dev",
                                      str(demo_files.intents), "--test", str(demo_files.intents), "--model",
                                      str(tiny_model_dir), "-o", str(out), "--set", "tuning.fewshot.steps=4"])
    assert result.exit_code == 0, result.output
    from goldmine.export import export_model

    exported = export_model(out, quantize=None, data=demo_files.intents, threads=1, force=True)
    assert exported.report["runtimes"]["onnx"]["passed"]


# --- bad input ----------------------------------------------------------------------------------------------------


def test_a_label_with_one_example_is_reported_at_its_line(tmp_path, tiny_model_dir):
    train = tmp_path / "one.csv"
    train.write_text("text,label\nrefund my order,refund\nmoney back,refund\nwhere is my parcel,track\n")
    config = config_for(tmp_path, tiny_model_dir, train, train)
    with pytest.raises(DataError) as err:
        goldmine.train(config)
    assert [(i.line, i.reason.split(";")[0]) for i in err.value.issues] == [(4, "label 'track' has only this example")]
    assert not (config.output_dir / "goldmine.json").exists()  # nothing half-written


@pytest.mark.parametrize(("overrides", "message"), [
    ({"task": "ner"}, "fewshot: is for classification and multilabel, not ner"),
    ({"data.train": None}, "learns from labeled examples"),
])
def test_a_config_few_shot_cannot_honour_is_refused_before_anything_loads(tmp_path, overrides, message):
    base = {"tuning.strategy": "fewshot", "data.train": str(tmp_path / "x.csv"), "model.name": str(tmp_path)}
    config = load_config(None, {**base, **{k: v for k, v in overrides.items() if v is not None}})
    if "data.train" in overrides:
        config.data.train = None
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_a_label_file_joins_the_head_as_a_fitted_prior(tmp_path, tiny_model_dir, demo_files):
    train = few(demo_files.intents, tmp_path, 6)
    names = sorted({ex.labels[0] for ex in read_file(train).examples})
    labels = tmp_path / "labels.yaml"
    labels.write_text("labels:\n" + "".join(f"  {n}: \"a message about {n.replace('_', ' ')}\"\n" for n in names))
    config = config_for(tmp_path, tiny_model_dir, train, demo_files.intents,
                        **{"tuning.fewshot.labels": str(labels), "tuning.fewshot.end_to_end_passes": 0})
    goldmine.train(config)
    record = json.loads((config.output_dir / "goldmine.json").read_text())["extra"]["fewshot"]
    assert 0.0 <= record["label_prior_weight"] <= 2.0 and record["label_file"] == str(labels)
    network = Model.load(config.output_dir, runtime="torch").network
    task = TASKS.get("classification")(names, load_tokenizer(str(config.output_dir)))
    from goldmine.tuning.fewshot import FewShot

    data = read_file(train)
    vectors = embed(network, task.tokenizer, [ex.text for ex in data.examples], 128)
    weight, _ = fit_head(task, vectors, label_sets(task, data))
    prior_rows, _ = FewShot._prior(network, task, config.tuning.fewshot, data)
    expected = weight / record["temperature"] + record["label_prior_weight"] * prior_rows
    np.testing.assert_allclose(network.classifier.weight.detach().numpy(), expected, rtol=1e-3, atol=1e-4)


def test_a_label_file_missing_a_label_is_refused(tmp_path, tiny_model_dir, demo_files):
    train = few(demo_files.intents, tmp_path, 6)
    labels = tmp_path / "labels.yaml"
    first = sorted({ex.labels[0] for ex in read_file(train).examples})[:2]
    labels.write_text("labels: [" + ", ".join(first) + "]\n")
    config = config_for(tmp_path, tiny_model_dir, train, demo_files.intents, **{"tuning.fewshot.labels": str(labels)})
    with pytest.raises(DataError, match="label file"):
        goldmine.train(config)
    assert not (config.output_dir / "goldmine.json").exists()


def test_the_heads_l2_strength_is_head_c_for_single_and_multi_label():
    """scikit-learn's default C=1 shrinks a head on unit-length embeddings hard (an uneven banking77 sample fell to
    0.465 on held-out texts, 0.742 with C=10): the head takes `tuning.fewshot.head_c`, for one-vs-rest too."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(24, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for name, sets in (("classification", [frozenset({i % 3}) for i in range(24)]),
                       ("multilabel", [frozenset({i % 3, (i + 1) % 3}) for i in range(24)])):
        task = TASKS.get(name)(["a", "b", "c"], None)
        loose, tight = fit_head(task, vectors, sets, c=100.0)[0], fit_head(task, vectors, sets, c=0.1)[0]
        assert np.linalg.norm(loose) > 5 * np.linalg.norm(tight)
