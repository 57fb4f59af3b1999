"""The training recipe end to end on a tiny random BERT: every task, every tuning strategy, the run directory.

Each run trains for a handful of steps; the assertions are about what the recipe does (which weights move,
how many optimizer steps run, what is written and how it loads), not about accuracy.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback

import goldmine
from goldmine.config import load_config
from goldmine.data.splits import load_splits
from goldmine.errors import ConfigError, DataError
from goldmine.inference.model import Model
from goldmine.tasks.base import balanced_weights
from goldmine.tasks.sequence_classification import MultiLabelClassification, SequenceClassification

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INTENT_TEXTS = ["where is my order 48213?", "please cancel the headphones I ordered", "my card was stolen"]
NER_TEXTS = ["Anna Schmidt from Berlin ordered a Pixel 8", "DHL lost my parcel"]


def _config(tiny: Path, train: Path, out: Path, **overrides):
    settings = {
        "task": "classification", "data.train": str(train), "model.name": str(tiny), "output_dir": str(out),
        "training.max_steps": 3, "training.batch_size": 16, "training.eval_strategy": "none",
        "training.linear_probe": False, "training.logging_steps": 1,
    }
    return load_config(None, {**settings, **overrides})


class InitialWeights(TrainerCallback):
    """Keeps a copy of every weight as training starts (after the tuning strategy was applied)."""

    def __init__(self):
        self.state: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _saved_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def _logits(network, tokenizer, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return network.eval()(**batch).logits


def _write_multilabel(path: Path) -> Path:
    combos = ["billing", "shipping", "billing|shipping", "account", "account|billing", "shipping|account"]
    words = ["invoice", "parcel", "login", "refund", "courier", "password", "charge", "address"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(60):
            writer.writerow([f"{words[i % 8]} {words[(i * 3) % 8]} number {i}", combos[i % len(combos)]])
    return path


# ---- classification, full fine-tuning: the run directory and how it loads -------------------------------------


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, demo_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    config = _config(tiny_model_dir, demo_files.intents, out, **{
        "training.max_steps": 4, "training.eval_strategy": "steps", "training.eval_steps": 2,
    })
    initial = InitialWeights()
    result = goldmine.train(config, callbacks=[initial])
    return config, result, initial.state


def test_full_run_directory(full_run):
    config, result, _ = full_run
    out = result.output_dir
    assert out == config.output_dir
    assert result.global_step == 4
    for name in ("config.yaml", "goldmine.json", "labels.json", "metrics.json", "data_report.json",
                 "training_curve.png", "test_confusion_matrix.png", "test_reliability.png", "model.safetensors",
                 "pooled_classifier.py", "tokenizer.json"):
        assert (out / name).is_file(), name
    for png in ("training_curve.png", "test_confusion_matrix.png", "test_reliability.png"):
        assert (out / png).read_bytes().startswith(PNG_MAGIC)
    assert list((out / "logs").glob("events.out.tfevents.*"))
    assert load_config(out / "config.yaml") == config
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["name"] == config.model.name

    splits = load_splits(config.data)
    names = sorted({ex.labels[0] for ex in splits["train"].examples})
    meta = json.loads((out / "goldmine.json").read_text())
    assert (meta["task"], meta["strategy"], meta["adapter"], meta["label_names"]) == (
        "classification", "full", False, names)
    assert meta["extra"]["global_step"] == 4
    assert meta["extra"]["trainable_parameters"] == meta["extra"]["total_parameters"]
    assert 50 < meta["extra"]["peak_rss_mb"] < 64 * 1024  # MiB, the training process's high-water mark
    labels = json.loads((out / "labels.json").read_text())
    assert labels == {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in
                                                                                          enumerate(names)}}
    report = json.loads((out / "data_report.json").read_text())
    assert isinstance(report, dict) and report

    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["before_after"]) == ["majority class", "fine-tuned"]
    assert metrics["before_after"] == result.before_after
    assert metrics["metric_for_best"] == "accuracy"
    assert metrics["test"]["accuracy"] == result.test_metrics["accuracy"]
    assert metrics["before_after"]["fine-tuned"]["accuracy"] == result.test_metrics["accuracy"]
    test = splits["test"]
    top = Counter(ex.labels[0] for ex in splits["train"].examples).most_common(1)[0][0]
    expected = sum(ex.labels[0] == top for ex in test.examples) / len(test)
    assert metrics["before_after"]["majority class"]["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert result.test_metrics["n_examples"] == len(test)
    # eval every 2 steps: two dev evaluations are in the history and the best one is recorded
    evals = [e for e in json.loads((out / "log_history.json").read_text()) if "eval_accuracy" in e]
    assert [e["step"] for e in evals] == [2, 4]
    assert metrics["best_dev"] == max(e["eval_accuracy"] for e in evals)


def test_full_strategy_trains_the_backbone(full_run):
    _, result, initial = full_run
    saved = _saved_weights(result.output_dir)
    assert set(saved) == set(initial)
    moved = [k for k in saved if not torch.equal(saved[k], initial[k])]
    assert "classifier.weight" in moved
    assert any(k.startswith("backbone.encoder.") for k in moved)


def test_full_model_loads_with_plain_transformers(full_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = full_run[1].output_dir
    plain = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    assert type(plain).__name__ == "PooledEncoderForSequenceClassification"
    assert not type(plain).__module__.startswith("goldmine")  # the copy in the run directory, not goldmine's
    served = Model.load(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    expected = _logits(served.network, served.task.tokenizer, INTENT_TEXTS)
    torch.testing.assert_close(_logits(plain, tokenizer, INTENT_TEXTS), expected, rtol=0, atol=1e-6)
    predictions = served.predict(INTENT_TEXTS)
    assert [p["label"] for p in predictions] == [served.labels[i] for i in expected.argmax(-1).tolist()]
    probs = expected.softmax(-1).max(-1).values.tolist()
    assert [p["score"] for p in predictions] == pytest.approx(probs, abs=1e-6)


# ---- the other tasks -------------------------------------------------------------------------------------------


def test_multilabel(tiny_model_dir, tmp_path):
    data = _write_multilabel(tmp_path / "multi.csv")
    result = goldmine.train(_config(tiny_model_dir, data, tmp_path / "run", task="multilabel"))
    out = result.output_dir
    meta = json.loads((out / "goldmine.json").read_text())
    assert (meta["task"], meta["label_names"]) == ("multilabel", ["account", "billing", "shipping"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["before_after"]) == ["majority class", "fine-tuned"]
    assert set(metrics["before_after"]["fine-tuned"]) == {"accuracy", "macro_f1", "micro_f1"}
    model = Model.load(out)
    assert model.network.config.problem_type == "multi_label_classification"
    predictions = model.predict(["refund for the parcel"])
    assert set(predictions[0]) == {"labels", "scores"}
    scores = predictions[0]["scores"]
    assert list(scores) == ["account", "billing", "shipping"]
    assert predictions[0]["labels"] == [name for name, s in scores.items() if s > 0.5]


@pytest.fixture(scope="module")
def ner_run(tiny_model_dir, demo_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("ner") / "run"
    return goldmine.train(_config(tiny_model_dir, demo_files.ner, out, task="ner"))


def test_ner_run(ner_run, demo_files):
    out = ner_run.output_dir
    meta = json.loads((out / "goldmine.json").read_text())
    assert meta["task"] == "ner"
    assert meta["label_names"] == ["O"] + [f"{p}-{t}" for t in ("LOC", "ORG", "PER", "PRODUCT") for p in "BI"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["before_after"]) == ["majority class", "fine-tuned"]
    assert metrics["before_after"]["majority class"]["f1"] == 0.0  # every word `O` finds no entity
    assert set(metrics["before_after"]["fine-tuned"]) == {"f1", "precision", "recall", "token_accuracy"}
    assert (out / "test_reliability.png").is_file()
    assert not (out / "pooled_classifier.py").exists()  # token classification needs no custom code


def test_ner_model_loads_with_plain_transformers(ner_run):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    out = ner_run.output_dir
    plain = AutoModelForTokenClassification.from_pretrained(out)
    served = Model.load(out)
    assert type(plain) is type(served.network)
    tokenizer = AutoTokenizer.from_pretrained(out)
    torch.testing.assert_close(_logits(plain, tokenizer, NER_TEXTS), _logits(served.network, tokenizer, NER_TEXTS),
                               rtol=0, atol=1e-6)
    for prediction in served.predict(NER_TEXTS):
        assert set(prediction) == {"entities"}


# ---- tuning strategies ---------------------------------------------------------------------------------------


def test_freeze_trains_only_the_head(tiny_model_dir, demo_files, tmp_path):
    from transformers import AutoModel

    initial = InitialWeights()
    config = _config(tiny_model_dir, demo_files.intents, tmp_path / "run", **{"tuning.strategy": "freeze"})
    result = goldmine.train(config, callbacks=[initial])
    saved = _saved_weights(result.output_dir)
    assert set(saved) == set(initial.state)
    moved = sorted(k for k in saved if not torch.equal(saved[k], initial.state[k]))
    assert moved == ["classifier.bias", "classifier.weight"]
    pretrained = AutoModel.from_pretrained(tiny_model_dir, add_pooling_layer=False).state_dict()
    for key, value in pretrained.items():
        assert torch.equal(saved[f"backbone.{key}"], value), key
    extra = json.loads((result.output_dir / "goldmine.json").read_text())["extra"]
    n_labels = len(json.loads((result.output_dir / "labels.json").read_text())["id2label"])
    assert extra["trainable_parameters"] == 32 * n_labels + n_labels  # the linear head on 32-wide states
    assert extra["total_parameters"] == extra["trainable_parameters"] + sum(v.numel() for v in pretrained.values())


def _plain_peft(run_dir: Path, task: str):
    """The loading recipe in goldmine/training/artifacts.py's docstring, verbatim: transformers + peft only."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoConfig, AutoModelForTokenClassification
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    config = AutoConfig.from_pretrained(run_dir, trust_remote_code=True)
    if task == "ner":
        cls = AutoModelForTokenClassification
    else:
        cls = get_class_from_dynamic_module(config.auto_map["AutoModelForSequenceClassification"], run_dir)
    base = cls.from_pretrained(PeftConfig.from_pretrained(run_dir).base_model_name_or_path, config=config)
    return PeftModel.from_pretrained(base, run_dir)


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, demo_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "run"
    config = _config(tiny_model_dir, demo_files.intents, out, **{
        "tuning.strategy": "lora", "tuning.lora.merge": True, "training.learning_rate": 0.01,
    })
    return goldmine.train(config)


def test_lora_run_directory(lora_run, tiny_model_dir):
    out = lora_run.output_dir
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # only the adapter, not a copy of the base model
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert adapter["r"] == 16
    assert sorted(adapter["target_modules"]) == ["dense", "key", "query", "value"]
    meta = json.loads((out / "goldmine.json").read_text())
    assert (meta["strategy"], meta["adapter"]) == ("lora", True)
    extra = meta["extra"]
    n_labels = len(meta["label_names"])
    # rank 16 on query/key/value/attention-output (32->32), intermediate (32->64), output (64->32), 2 layers,
    # plus the head trained in full
    lora = 2 * (4 * 16 * (32 + 32) + 16 * (32 + 64) * 2)
    assert extra["trainable_parameters"] == lora + 32 * n_labels + n_labels
    assert extra["trainable_parameters"] / extra["total_parameters"] < 1
    assert list(json.loads((out / "metrics.json").read_text())["before_after"]) == ["majority class", "fine-tuned"]


def test_lora_loads_with_goldmine_and_plain_peft(lora_run):
    from transformers import AutoTokenizer

    out = lora_run.output_dir
    served = Model.load(out)
    assert type(served.network).__name__ == "PooledEncoderForSequenceClassification"  # merged for speed
    tokenizer = AutoTokenizer.from_pretrained(out)
    expected = _logits(served.network, tokenizer, INTENT_TEXTS)
    plain = _plain_peft(out, "classification")
    torch.testing.assert_close(_logits(plain, tokenizer, INTENT_TEXTS), expected, rtol=0, atol=1e-5)
    # the adapter really moved the model: the same network without the adapter scores differently
    with plain.disable_adapter():
        assert not torch.allclose(_logits(plain, tokenizer, INTENT_TEXTS), expected, atol=1e-4)
    assert [p["label"] for p in served.predict(INTENT_TEXTS)] == [
        served.labels[i] for i in expected.argmax(-1).tolist()
    ]


def test_lora_merged_model_loads_without_peft(lora_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = lora_run.output_dir
    merged = AutoModelForSequenceClassification.from_pretrained(out / "merged", trust_remote_code=True)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(out / "merged")
    expected = _logits(_plain_peft(out, "classification"), tokenizer, INTENT_TEXTS)
    got = _logits(merged, tokenizer, INTENT_TEXTS)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert got.argmax(-1).tolist() == expected.argmax(-1).tolist()


def test_lora_ner_without_merge(tiny_model_dir, demo_files, tmp_path):
    from transformers import AutoTokenizer

    config = _config(tiny_model_dir, demo_files.ner, tmp_path / "run", task="ner", **{"tuning.strategy": "lora"})
    out = goldmine.train(config).output_dir
    assert (out / "adapter_config.json").is_file()
    assert not (out / "merged").exists()
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "TOKEN_CLS"
    served = Model.load(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    torch.testing.assert_close(_logits(_plain_peft(out, "ner"), tokenizer, NER_TEXTS),
                               _logits(served.network, tokenizer, NER_TEXTS), rtol=0, atol=1e-5)


# ---- training options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_balanced_class_weights(task, tiny_model_dir, demo_files, tmp_path, monkeypatch):
    cls = SequenceClassification if task == "classification" else MultiLabelClassification
    seen = []
    original = cls.loss_function

    def spy(self, class_weights, label_smoothing):
        seen.append(class_weights)
        return original(self, class_weights, label_smoothing)

    monkeypatch.setattr(cls, "loss_function", spy)
    data = demo_files.intents if task == "classification" else _write_multilabel(tmp_path / "multi.csv")
    config = _config(tiny_model_dir, data, tmp_path / "run", task=task, **{"training.class_weights": "balanced"})
    result = goldmine.train(config)

    train = load_splits(config.data, multi_label=task == "multilabel" or None)["train"]
    names = train.label_names()
    counts = np.array([sum(name in ex.labels for ex in train.examples) for name in names], dtype=float)
    if task == "classification":
        expected = balanced_weights(counts)
        torch.testing.assert_close(expected, torch.tensor(len(train) / (len(names) * counts), dtype=torch.float32))
    else:  # per-label positive weight: negatives / positives
        expected = torch.tensor((len(train) - counts) / counts, dtype=torch.float32)
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected)
    losses = [e["loss"] for e in json.loads((result.output_dir / "log_history.json").read_text()) if "loss" in e]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def test_early_stopping(tiny_model_dir, demo_files, tmp_path):
    epochs, batch = 4, 64
    config = _config(tiny_model_dir, demo_files.intents, tmp_path / "run", **{
        "training.max_steps": -1, "training.epochs": epochs, "training.batch_size": batch,
        "training.eval_strategy": "epoch", "training.early_stopping_patience": 1, "training.learning_rate": 1e-9,
    })
    per_epoch = math.ceil(len(load_splits(config.data)["train"]) / batch)
    result = goldmine.train(config)
    assert result.global_step < epochs * per_epoch
    assert result.global_step % per_epoch == 0  # stopped at the end of an epoch, after its evaluation
    history = json.loads((result.output_dir / "log_history.json").read_text())
    evals = [e for e in history if "eval_accuracy" in e]
    assert [e["step"] for e in evals] == [per_epoch * (i + 1) for i in range(result.global_step // per_epoch)]
    # patience 1: the run stopped at the first evaluation that did not beat the best before it
    assert evals[-1]["eval_accuracy"] <= max(e["eval_accuracy"] for e in evals[:-1])
    assert all(b["eval_accuracy"] > a["eval_accuracy"] for a, b in zip(evals[:-2], evals[1:-1], strict=True))


def test_gradient_accumulation_step_count(tiny_model_dir, demo_files, tmp_path):
    batch, accumulation, epochs = 16, 4, 2
    config = _config(tiny_model_dir, demo_files.intents, tmp_path / "run", **{
        "training.max_steps": -1, "training.epochs": epochs, "training.batch_size": batch,
        "training.gradient_accumulation": accumulation,
    })
    n_train = len(load_splits(config.data)["train"])
    assert (n_train // batch) % accumulation != 0  # the last accumulation of each epoch is partial
    result = goldmine.train(config)
    assert result.global_step == math.ceil(n_train / (batch * accumulation)) * epochs


def test_logged_loss_does_not_grow_with_gradient_accumulation(tiny_model_dir, demo_files, tmp_path):
    """The loss of an accumulated step is the mean over its batches, as without accumulation: a random head's
    first loss is about ln(classes) whatever the accumulation (it was multiplied by the accumulation steps)."""
    losses = {}
    for accumulation in (1, 4):
        config = _config(tiny_model_dir, demo_files.intents, tmp_path / f"run-{accumulation}", **{
            "training.max_steps": 1, "training.batch_size": 8, "training.gradient_accumulation": accumulation,
            "training.logging_steps": 1, "training.learning_rate": 1e-9,
        })
        result = goldmine.train(config)
        history = json.loads((result.output_dir / "log_history.json").read_text())
        losses[accumulation] = next(e["loss"] for e in history if "loss" in e)
    n_labels = len(json.loads((tmp_path / "run-1" / "labels.json").read_text())["id2label"])
    assert losses[1] == pytest.approx(math.log(n_labels), rel=0.25)
    assert losses[4] == pytest.approx(losses[1], rel=0.25)


def test_training_prints_nothing_unless_a_display_is_attached(tiny_model_dir, demo_files, tmp_path, capfd):
    """The library never prints: no raw `{'loss': ...}` dicts, no tqdm bar; the logs still reach TensorBoard."""
    from rich.console import Console

    from goldmine.training.progress import TrainingDisplay

    config = _config(tiny_model_dir, demo_files.intents, tmp_path / "run", **{
        "training.max_steps": 2, "training.eval_strategy": "steps", "training.eval_steps": 2,
        "training.head_init": "probe",
    })
    capfd.readouterr()
    result = goldmine.train(config)
    assert capfd.readouterr().out == ""
    assert list((result.output_dir / "logs").glob("events.out.tfevents.*"))
    shown = io.StringIO()
    display = TrainingDisplay(Console(file=shown, width=100, color_system=None))
    goldmine.train(config.model_copy(update={"output_dir": tmp_path / "shown"}), callbacks=[display])
    text = shown.getvalue()
    for line in ("probe fit", "step 1/2  epoch", "step 2/2  dev accuracy", "done: 2 steps", "test evaluation"):
        assert line in text, text
    assert "{'loss'" not in text


def test_linear_probe_row(tiny_model_dir, demo_files, tmp_path):
    config = _config(tiny_model_dir, demo_files.intents, tmp_path / "run", **{
        "training.max_steps": 1, "training.linear_probe": True,
    })
    result = goldmine.train(config)
    assert list(result.before_after) == ["majority class", "pretrained + linear probe", "fine-tuned"]
    probe = result.before_after["pretrained + linear probe"]
    assert set(probe) == {"accuracy", "macro_f1", "micro_f1"}
    assert 0 <= probe["accuracy"] <= 1
    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert list(metrics["before_after"]) == list(result.before_after)


def test_unknown_dev_label_fails_before_training(tiny_model_dir, demo_files, tmp_path):
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\nwhere is my parcel,track_order\nI want a pony,buy_pony\n")
    out = tmp_path / "run"
    config = _config(tiny_model_dir, demo_files.intents, out, **{"data.dev": str(dev)})
    with pytest.raises(DataError, match=r"dev\.csv:3: label 'buy_pony' is not one of") as info:
        goldmine.train(config)
    assert len(info.value.issues) == 1
    assert not (out / "checkpoints").exists()
    assert not out.exists()


@pytest.mark.parametrize(("settings", "message"), [
    ({"training.eval_strategy": "epoch", "training.save_steps": 2}, "with eval_strategy=epoch checkpoints are"),
    ({"training.eval_strategy": "steps", "training.eval_steps": 2, "training.save_steps": 3},
     r"must be a multiple of training.eval_steps \(2\) .* got 3"),
])
def test_checkpoints_must_follow_evaluations(settings, message, tiny_model_dir, demo_files, tmp_path):
    # keeping the best dev model needs a checkpoint at every evaluation: a config error, found before any work
    config = _config(tiny_model_dir, demo_files.intents, tmp_path / "run", **settings)
    with pytest.raises(ConfigError, match=f"training.save_steps: .*{message}"):
        goldmine.train(config)
    assert not (tmp_path / "run").exists()
