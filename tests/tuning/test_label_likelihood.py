"""Label-likelihood classification: a decoder scores each label's reply; the run loads, predicts and evaluates like
any classification run. Exact values come from a plain forward pass over the whole rendered conversation, one
(text, reply) at a time, on the tiny random Llama."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import goldmine
from goldmine.cli import app
from goldmine.config import load_config
from goldmine.data.readers import read_file
from goldmine.errors import ConfigError, DataError, ModelError
from goldmine.inference.model import Model
from goldmine.tuning.label_likelihood import RECORD_FILE, pick_examples
from goldmine.tuning.zeroshot import CONTENT_FREE, LabelSpec

ROWS = [("great film", "positive"), ("awful film", "negative"), ("you are kind", "positive"),
        ("it is awful", "negative"), ("hello how are you", "positive"), ("my parcel is awful", "negative")]
TEXTS = ["great film", "awful", "where is my parcel today", "hi"]


def write_csv(path: Path, rows) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    return path


def label_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def build(tmp_path: Path, decoder: Path, **overrides) -> Path:
    out = tmp_path / "ll"
    goldmine.train(load_config(None, {"task": "classification", "tuning.strategy": "label_likelihood",
                                      "model.name": str(decoder), "output_dir": str(out),
                                      "training.linear_probe": False, **overrides}))
    return out


def few_shot(tmp_path: Path, **overrides) -> dict:
    train = write_csv(tmp_path / "train.csv", ROWS)
    test = write_csv(tmp_path / "test.csv", ROWS[:4])
    return {"data.train": str(train), "data.dev": str(test), "data.test": str(test), **overrides}


def reference_log_likelihood(decoder, tokenizer, messages: list[dict], reply: str) -> float:
    """log P(reply + end of turn | conversation): one plain forward pass over the whole rendered conversation."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": reply}], tokenize=False)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    end = ids.index(tokenizer.eos_token_id, start) + 1
    with torch.no_grad():
        log_probs = decoder(input_ids=torch.tensor([ids[:end]])).logits[0].log_softmax(-1)
    return sum(float(log_probs[t - 1, ids[t]]) for t in range(start, end))


def expected_scores(model: Model, texts: list[str]) -> np.ndarray:
    """(N, L) label scores recomputed from the record's conversation with a plain forward pass per reply."""
    from goldmine.tuning.label_likelihood import InContextExample, conversation

    record = model.network.record
    specs = [LabelSpec(label["name"], label["description"], tuple(label["templates"])) for label in record["labels"]]
    examples = [InContextExample(e["text"], e["label"]) for e in record["examples"]]
    decoder, tokenizer = model.network.decoder, model.task.tokenizer
    scores = np.zeros((len(texts), len(specs)))
    for i, text in enumerate(texts):
        messages = conversation(record["instruction"], specs, examples, text)
        for k, label in enumerate(record["labels"]):
            values = np.array([reference_log_likelihood(decoder, tokenizer, messages, reply)
                               for reply in label["replies"]])
            if record["score"] == "mean":
                lengths = [len(tokenizer(r + tokenizer.eos_token, add_special_tokens=False)["input_ids"])
                           for r in label["replies"]]
                values = values / np.array(lengths)
            scores[i, k] = np.log(np.exp(values).mean())
    return scores


def softmax(x: np.ndarray) -> np.ndarray:
    return torch.tensor(x).softmax(-1).numpy()


# --- the scores --------------------------------------------------------------------------------------------------


def test_scores_are_the_replies_log_likelihoods_of_a_plain_forward_pass(tmp_path, tiny_decoder_dir):
    """The cached prefix, the packing of texts and replies into one pass and its block mask change nothing: the
    predicted probabilities are the softmax of the log-likelihoods a full forward pass gives (few-shot prompt)."""
    out = build(tmp_path, tiny_decoder_dir, **few_shot(tmp_path, **{"tuning.label_likelihood.calibrate": False}))
    model = Model.load(out, runtime="torch")
    assert model.labels == ["negative", "positive"] and model.meta.strategy == "label_likelihood"
    expected = expected_scores(model, TEXTS)
    probs = np.array([[p["scores"][name] for name in model.labels] for p in model.predict(TEXTS)])
    np.testing.assert_allclose(probs, softmax(expected), atol=1e-5)
    tokenizer = model.task.tokenizer
    ids = [tokenizer(t)["input_ids"] for t in TEXTS]
    packed = model.network.label_scores(ids)  # all four texts in one pass
    model.network.pack_tokens = 1  # one text per pass
    np.testing.assert_allclose(model.network.label_scores(ids).numpy(), packed.numpy(), atol=1e-5)
    np.testing.assert_allclose(packed.numpy(), expected, atol=1e-4)


def test_a_label_with_templates_scores_the_mean_likelihood_of_its_replies_and_mean_is_per_token(tmp_path,
                                                                                                tiny_decoder_dir):
    labels = label_file(tmp_path, "labels:\n  - name: pos\n    description: positive\n"
                                  "    templates: ['{description}', 'great film']\n  - name: neg\n"
                                  "    description: negative\n")
    out = build(tmp_path, tiny_decoder_dir, **{"tuning.label_likelihood.labels": str(labels),
                                               "tuning.label_likelihood.calibrate": False,
                                               "tuning.label_likelihood.score": "mean"})
    model = Model.load(out)
    assert model.network.record["labels"][0]["replies"] == ["positive", "great film"]
    assert model.network.prompt.owners == [0, 0, 1]
    ids = [model.task.tokenizer(t)["input_ids"] for t in TEXTS]
    np.testing.assert_allclose(model.network.label_scores(ids).numpy(), expected_scores(model, TEXTS), atol=1e-4)


def test_calibration_divides_each_label_by_its_mean_probability_on_content_free_inputs(tmp_path, tiny_decoder_dir):
    out = build(tmp_path, tiny_decoder_dir, **few_shot(tmp_path))
    model = Model.load(out)
    raw_free = expected_scores(model, list(CONTENT_FREE))
    bias = -np.log(softmax(raw_free).mean(axis=0))
    np.testing.assert_allclose(model.network.record["bias"], bias, atol=1e-4)
    assert abs(bias[0] - bias[1]) > 1e-3  # the tiny model does prefer one reply: the shift is real
    probs = np.array([[p["scores"][name] for name in model.labels] for p in model.predict(TEXTS)])
    np.testing.assert_allclose(probs, softmax(expected_scores(model, TEXTS) + bias), atol=1e-4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


# --- in-context examples -----------------------------------------------------------------------------------------


def test_in_context_examples_are_class_balanced_seeded_and_shuffled(tmp_path):
    rows = [(f"a{i}", "a") for i in range(10)] + [(f"b{i}", "b") for i in range(5)] + [("c0", "c")]
    data = read_file(write_csv(tmp_path / "train.csv", rows))
    specs = [LabelSpec("a"), LabelSpec("b"), LabelSpec("c")]
    picked = pick_examples(data, specs, 2, seed=0)
    assert sorted(e.label for e in picked) == ["a", "a", "b", "b", "c"]  # c has only one
    assert all(e.text.startswith(e.label) for e in picked)
    assert picked == pick_examples(data, specs, 2, seed=0)
    draws = {tuple(e.text for e in pick_examples(data, specs, 2, seed=s)) for s in range(5)}
    assert len(draws) == 5  # the seed decides the sample and its order
    assert picked[0].source.endswith(f":{[r[0] for r in rows].index(picked[0].text) + 2}")  # file:line kept
    orders = {tuple(e.label for e in pick_examples(data, specs, 2, seed=s)) for s in range(5)}
    assert len(orders) > 1  # not grouped by label


def test_the_examples_are_earlier_turns_of_the_conversation(tmp_path, tiny_decoder_dir):
    out = build(tmp_path, tiny_decoder_dir, **few_shot(tmp_path, **{"tuning.label_likelihood.examples_per_label": 2}))
    record = json.loads((out / RECORD_FILE).read_text())
    assert sorted(e["label"] for e in record["examples"]) == ["negative", "negative", "positive", "positive"]
    prefix = record["prompt"]["prefix"]
    first = record["examples"][0]
    assert prefix.count("<|im_start|>assistant") == 4 and prefix.endswith("<|im_start|>user ")
    assert "options: negative, positive" not in prefix and "categories: negative, positive." in prefix
    assert f"<|im_start|>user {record['instruction'].format(options='negative, positive')}\n{first['text']}" in prefix
    assert record["prompt"]["replies"] == ["negative<|im_end|>", "positive<|im_end|>"]
    assert record["base_model"] == str(Path(tiny_decoder_dir).resolve())
    assert not list(out.glob("*.safetensors"))  # a reference to the decoder, not a copy


# --- the run directory -------------------------------------------------------------------------------------------


def test_the_cli_builds_it_and_eval_and_predict_take_it(tmp_path, tiny_decoder_dir):
    labels = label_file(tmp_path, "labels: [negative, positive]\n")
    settings = few_shot(tmp_path)
    out = tmp_path / "cli-run"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--strategy", "label_likelihood", "--labels", str(labels), "--model",
                                 str(tiny_decoder_dir), "--train", settings["data.train"], "--test",
                                 settings["data.test"], "--dev", settings["data.dev"], "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "label_likelihood" in result.output and "majority class" in result.output  # before vs after
    metrics = json.loads((out / "metrics.json").read_text())  # before: the decoder's mean-pooled features + a probe
    assert list(metrics["before_after"]) == ["majority class", "pretrained + linear probe", "label_likelihood"]
    result = runner.invoke(app, ["eval", str(out), settings["data.test"], "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    evaluated = goldmine.evaluate(out, settings["data.test"])
    assert {"accuracy", "macro_f1", "confusion_matrix", "calibration"} <= set(evaluated)
    assert evaluated["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    result = runner.invoke(app, ["predict", str(out), "--text", "great film", "--text", "awful"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["text"] for line in lines] == ["great film", "awful"]
    assert all(abs(sum(line["scores"].values()) - 1) < 1e-5 for line in lines)
    assert lines == [{"text": t, **p} for t, p in zip(["great film", "awful"],
                                                        Model.load(out).predict(["great film", "awful"]),
                                                        strict=True)]


def test_export_refuses_it(tmp_path, tiny_decoder_dir):
    from goldmine.export import export_model

    out = build(tmp_path, tiny_decoder_dir, **few_shot(tmp_path))
    with pytest.raises(ConfigError, match=f"^{out}: cannot export a label_likelihood run: .*torch runtime"):
        export_model(out)


def test_a_missing_base_decoder_fails_to_load_with_the_run_named(tmp_path, tiny_decoder_dir):
    decoder = tmp_path / "decoder"
    shutil.copytree(tiny_decoder_dir, decoder)
    out = build(tmp_path, decoder, **few_shot(tmp_path))
    shutil.rmtree(decoder)
    with pytest.raises(ModelError, match=f"{out} scores with the decoder '{decoder}', which cannot be loaded"):
        Model.load(out)


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_settings_fail_before_anything_loads(tmp_path, tiny_decoder_dir):
    with pytest.raises(ConfigError, match="'labels' must be a non-empty list"):
        build(tmp_path, tiny_decoder_dir, **{"tuning.label_likelihood.labels": str(label_file(tmp_path,
                                                                                             "labels: []\n"))})
    with pytest.raises(ConfigError, match="needs a label file .* or training data"):
        build(tmp_path, tiny_decoder_dir)
    with pytest.raises(ConfigError, match="is for task classification"):
        build(tmp_path, tiny_decoder_dir, **{"task": "multilabel", **few_shot(tmp_path)})
    with pytest.raises(ConfigError, match="instruction.*may only use {options}"):
        load_config(None, {"tuning.label_likelihood.instruction": "about {topic}"})


def test_training_data_with_one_label_is_refused(tmp_path, tiny_decoder_dir):
    train = write_csv(tmp_path / "one.csv", [("great film", "positive")] * 3)
    with pytest.raises(DataError, match="needs at least two labels"):
        build(tmp_path, tiny_decoder_dir, **{"data.train": str(train), "data.test": str(train),
                                             "data.dev": str(train)})


def test_labels_the_label_file_lacks_are_reported_at_their_lines(tmp_path, tiny_decoder_dir):
    labels = label_file(tmp_path, "labels: [negative, positive]\n")
    train = write_csv(tmp_path / "greeting.csv", [*ROWS, ("hi", "greeting")])
    with pytest.raises(DataError) as err:
        build(tmp_path, tiny_decoder_dir, **{"tuning.label_likelihood.labels": str(labels),
                                             "data.train": str(train), "data.dev": str(train),
                                             "data.test": str(train)})
    assert [(i.line, i.reason.split(" (")[0]) for i in err.value.issues] == [
        (8, f"label 'greeting' is not in the label file {labels}")]
    out = build(tmp_path, tiny_decoder_dir, **few_shot(tmp_path))  # evaluated on data with a label it lacks
    with pytest.raises(DataError) as err:
        goldmine.evaluate(out, train)
    assert [i.line for i in err.value.issues] == [8] and "'greeting' is not one of" in err.value.issues[0].reason


def test_an_in_context_example_longer_than_the_limit_is_reported_at_its_line(tmp_path, tiny_decoder_dir):
    rows = [*ROWS[:3], (" ".join(["film"] * 20), "negative"), *ROWS[3:]]
    train = write_csv(tmp_path / "train.csv", rows)
    settings = {"data.train": str(train), "data.dev": str(train), "data.test": str(train), "model.max_length": 16,
                "tuning.label_likelihood.examples_per_label": 4}  # every negative example
    with pytest.raises(DataError) as err:
        build(tmp_path, tiny_decoder_dir, **settings)
    assert [(i.line, i.reason) for i in err.value.issues] == [
        (5, "the in-context example is 20 tokens; the limit is 16 (model.max_length)")]


def test_a_prompt_beyond_the_context_window_is_refused_and_long_texts_are_truncated(tmp_path, tiny_decoder_dir):
    with pytest.raises(ConfigError, match=r"the model reads at most 256\. Lower tuning.label_likelihood"):
        build(tmp_path, tiny_decoder_dir, **few_shot(tmp_path, **{"model.max_length": 250}))
    out = build(tmp_path, tiny_decoder_dir, **few_shot(tmp_path, **{"model.max_length": 12}))
    long = write_csv(tmp_path / "long.csv", [(" ".join(["great"] * 40), "positive"), ("awful", "negative")])
    assert goldmine.evaluate(out, long)["truncated"] == 1  # counted, as for every classifier
    model = Model.load(out)
    np.testing.assert_allclose(list(model.predict([" ".join(["great"] * 40)])[0]["scores"].values()),
                               list(model.predict([" ".join(["great"] * 12)])[0]["scores"].values()), atol=1e-6)


# --- the real bundled decoder --------------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_bundled_decoder_scores_as_a_plain_forward_pass_and_splices_texts_as_the_template_does(tmp_path):
    """SmolLM2-135M-Instruct (converted into the cache once): a text's tokens spliced between the prompt's prefix and
    suffix are those of the whole rendered conversation, and the packed scores are a plain forward pass's."""
    from goldmine.tuning.label_likelihood import conversation

    labels = label_file(tmp_path, "labels: {'0': negative, '1': positive}\n")
    test = write_csv(tmp_path / "test.csv", [("I loved this movie, it was wonderful.", "1"),
                                             ("a terrible, boring film. I hated it.", "0")])
    out = build(tmp_path, Path("smollm2"), **{"model.name": "smollm2", "tuning.label_likelihood.labels": str(labels),
                                              "data.test": str(test), "data.dev": str(test)})
    model = Model.load(out)
    assert model.network.record["base_model"] == "smollm2"
    network, tokenizer = model.network, model.task.tokenizer
    specs = [LabelSpec("0", "negative"), LabelSpec("1", "positive")]
    texts = ["it 's a charming and often affecting journey .", "Net sales fell by 5 % to EUR 10.5 mn .",
             "I loved this movie, it was wonderful."]
    for text in texts:
        rendered = tokenizer.apply_chat_template(conversation(network.record["instruction"], specs, [], text),
                                                 tokenize=False, add_generation_prompt=True)
        spliced = network.prompt.prefix + tokenizer(text)["input_ids"] + network.prompt.suffix
        assert spliced == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    np.testing.assert_allclose(network.label_scores([tokenizer(t)["input_ids"] for t in texts]).numpy(),
                               expected_scores(model, texts), atol=1e-3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n_examples"] == 2
