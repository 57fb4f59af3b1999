"""LP-FT: the head starts as the linear probe, so before any step the model predicts what the probe predicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import goldmine
from goldmine.config import load_config
from goldmine.data.readers import read_file
from goldmine.data.schema import DataKind, LabeledData, TextExample
from goldmine.errors import ConfigError
from goldmine.evaluation.baselines import fit_probe, frozen_features
from goldmine.modeling.backbone import load_tokenizer
from goldmine.tasks.sequence_classification import MultiLabelClassification, SequenceClassification
from goldmine.tasks.token_classification import TokenClassification
from goldmine.training.head_init import init_head_from_probe


def _head_logits(model, features: list[np.ndarray]) -> np.ndarray:  # (U, H) per example
    with torch.no_grad():
        return model.classifier(torch.as_tensor(np.concatenate(features), dtype=torch.float32)).numpy()


@pytest.mark.parametrize("n_labels", [2, 5])
def test_single_label_head_reproduces_the_probe(tiny_model_dir, demo_files, n_labels):
    data = read_file(demo_files.intents)
    names = data.label_names()[:n_labels]
    data = data.subset([i for i, ex in enumerate(data.examples) if ex.labels[0] in names])
    task = SequenceClassification(names, load_tokenizer(str(tiny_model_dir)))
    model = task.build_model(str(tiny_model_dir), {"goldmine_pooling": "mean"})
    probe = fit_probe(task, model.base_model, "mean", data)
    init_head_from_probe(model, probe)
    x, _, _ = frozen_features(model.base_model, task, data, "mean")
    logits = _head_logits(model, x)
    expected = probe.classifier.predict_proba(np.concatenate(x))
    np.testing.assert_allclose(torch.as_tensor(logits).softmax(-1).numpy(), expected, atol=1e-5)
    assert (logits.argmax(1) == probe.classifier.predict(np.concatenate(x))).all()


def _multilabel_from_probe(tiny_model_dir, texts: list[str], labels: list[tuple[str, ...]]):
    """A multi-label model over cancel/refund/track whose head was set from the probe: (model, probe, features)."""
    data = LabeledData(DataKind.TEXT, [TextExample(t, ls) for t, ls in zip(texts, labels, strict=True)],
                       multi_label=True)
    task = MultiLabelClassification(["cancel", "refund", "track"], load_tokenizer(str(tiny_model_dir)))
    model = task.build_model(str(tiny_model_dir), {"goldmine_pooling": "mean"})
    probe = fit_probe(task, model.base_model, "mean", data)
    init_head_from_probe(model, probe)
    x, _, _ = frozen_features(model.base_model, task, data, "mean")
    return model, probe, x


def test_multilabel_head_reproduces_the_probe(tiny_model_dir):
    texts = ["refund my order", "cancel it", "refund and cancel", "where is it", "refund please", "cancel now"]
    labels = [("refund",), ("cancel",), ("refund", "cancel"), ("track",), ("refund",), ("cancel",)]
    model, probe, x = _multilabel_from_probe(tiny_model_dir, texts, labels)
    expected = np.stack([e.predict_proba(np.concatenate(x))[:, 1] for e in probe.classifier.estimators_], axis=1)
    probs = torch.as_tensor(_head_logits(model, x)).sigmoid().numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_ner_head_reproduces_the_probe_and_never_predicts_an_unseen_tag(tiny_model_dir, demo_files):
    data = read_file(demo_files.ner)
    names = [*data.label_names(), "B-NEVER", "I-NEVER"]
    task = TokenClassification(names, load_tokenizer(str(tiny_model_dir)), document_context=False)
    model = task.build_model(str(tiny_model_dir), {})
    probe = fit_probe(task, model.base_model, "mean", data)
    init_head_from_probe(model, probe)
    x, _, _ = frozen_features(model.base_model, task, data, "mean")
    words = np.concatenate(x)
    logits = _head_logits(model, x)
    assert (logits.argmax(1) == probe.classifier.predict(words)).all()
    assert not np.isin(logits.argmax(1), [names.index("B-NEVER"), names.index("I-NEVER")]).any()


def test_a_head_that_is_not_linear_is_refused(tiny_model_dir, demo_files):
    data = read_file(demo_files.intents)
    task = SequenceClassification(data.label_names(), load_tokenizer(str(tiny_model_dir)))
    model = task.build_model(str(tiny_model_dir), {"goldmine_pooling": "mean"})
    probe = fit_probe(task, model.base_model, "mean", data.subset(range(60)))
    model.classifier = torch.nn.Sequential(model.classifier)
    with pytest.raises(ConfigError, match="head_init"):
        init_head_from_probe(model, probe)


def test_training_from_the_probe_reports_that_probe_as_the_baseline(tiny_model_dir, demo_files, tmp_path):
    common = {"data.train": demo_files.intents, "model.name": str(tiny_model_dir), "training.batch_size": 16,
              "training.eval_strategy": "none", "training.linear_probe": True}
    # a learning rate too small to move anything: the "fine-tuned" model is the probe's head on the frozen encoder
    lpft = goldmine.train(None, **common, **{"output_dir": tmp_path / "lpft", "training.head_init": "probe",
                                             "training.max_steps": 1, "training.learning_rate": 1e-12,
                                             "training.warmup_ratio": 0.0, "model.classifier_dropout": 0.0})
    table = lpft.before_after
    assert table["fine-tuned"]["accuracy"] == pytest.approx(table["pretrained + linear probe"]["accuracy"])
    random_head = goldmine.train(None, **common, **{"output_dir": tmp_path / "random", "training.max_steps": 1})
    # the same probe row whether it was fitted before training (LP-FT) or after it (the baseline alone)
    assert random_head.before_after["pretrained + linear probe"] == table["pretrained + linear probe"]


def test_multilabel_probe_with_a_label_on_everywhere_and_one_never_seen(tiny_model_dir):
    texts = ["refund my order", "refund it", "refund and cancel", "refund where is it"]
    labels = [("refund",), ("refund",), ("refund", "cancel"), ("refund",)]
    model, probe, x = _multilabel_from_probe(tiny_model_dir, texts, labels)
    probs = torch.as_tensor(_head_logits(model, x)).sigmoid().numpy()
    assert (probs[:, 1] > 0.99).all() and (probs[:, 2] < 0.01).all()  # refund always on, track never seen
    cancel = probe.classifier.estimators_[0].predict_proba(np.concatenate(x))[:, 1]
    np.testing.assert_allclose(probs[:, 0], cancel, atol=1e-5)


def test_auto_head_init_is_the_probe_for_classification_and_random_for_ner(tiny_model_dir):
    from goldmine.training.trainer import _head_init

    config = load_config(None, {})
    assert config.training.head_init == "auto"
    tok = load_tokenizer(str(tiny_model_dir))
    assert _head_init(config.training, SequenceClassification(["a", "b"], tok)) == "probe"
    assert _head_init(config.training, TokenClassification(["O", "B-X"], tok)) == "random"


def test_a_single_label_training_set_is_refused(tiny_model_dir, tmp_path):
    from goldmine.errors import DataError

    train = tmp_path / "one.csv"
    train.write_text("text,label\nhello,greet\nhi there,greet\n")
    with pytest.raises(DataError, match=r"one\.csv:0: classification needs at least two labels"):
        goldmine.train(None, **{"data.train": train, "data.dev": train, "data.test": train,
                                "model.name": str(tiny_model_dir), "output_dir": tmp_path / "run"})
