"""The `goldmine` command line through typer's CliRunner: exit codes, what is printed and what is written."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldmine import cli
from goldmine.data.readers import read_file

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich wraps at 80 columns when not on a terminal; long tmp paths would be split across lines."""
    monkeypatch.setattr(cli.console, "width", 400)
    monkeypatch.setattr(cli.err_console, "width", 400)


def invoke(*args: str):
    return runner.invoke(cli.app, [str(a) for a in args])


def _train_args(tiny: Path, train: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--train", train, "--model", tiny, "-o", out, "--max-steps", "2",
            "--set", "training.eval_strategy=none", "--set", "training.linear_probe=false", *extra]


def test_help():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "eval", "predict", "data", "demo"):
        assert command in result.output


def test_data_check_ok(demo_files, tmp_path):
    result = invoke("data", "check", demo_files.intents, "--json", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert "Data quality" in result.output
    assert f"ok: {len(read_file(demo_files.intents))} examples read, nothing dropped" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert isinstance(report, dict) and report


def test_data_check_bad_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,greet\n,greet\nbye,\n")
    result = invoke("data", "check", bad)
    assert result.exit_code == 2
    assert f"{bad}:3: empty 'text'" in result.output
    assert f"{bad}:4: empty label in 'label'" in result.output
    assert "ok:" not in result.output


def test_data_check_labels_column(tmp_path):
    data = tmp_path / "tags.jsonl"
    data.write_text('{"text": "late parcel", "labels": ["shipping", "complaint"]}\n'
                    '{"text": "thanks!", "labels": ["praise"]}\n')
    result = invoke("data", "check", data)
    assert result.exit_code == 0, result.output
    assert f"{data}: labels read from column 'labels' (no 'label' column" in result.output
    both = tmp_path / "both.csv"
    both.write_text("text,label,labels\nlate parcel,shipping,shipping|complaint\n")
    result = invoke("data", "check", both)
    assert result.exit_code == 2
    assert f"{both}:1: columns 'label' and 'labels' both found" in result.output
    assert invoke("data", "check", both, "--label-column", "labels").exit_code == 0


def test_data_check_unknown_dev_label(demo_files, tmp_path):
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\nwhere is my parcel,track_ordr\n")
    result = invoke("data", "check", demo_files.intents, "--dev", dev)
    assert result.exit_code == 2
    assert f"{dev}:2: label 'track_ordr' is not one of" in result.output
    assert "did you mean 'track_order'?" in result.output


def test_data_split(demo_files, tmp_path):
    out = tmp_path / "split"
    result = invoke("data", "split", demo_files.intents, "--out", out)
    assert result.exit_code == 0, result.output
    parts = {name: read_file(out / f"{name}.csv") for name in ("train", "dev", "test")}
    original = read_file(demo_files.intents)
    assert sum(len(p) for p in parts.values()) == len(original) == 933
    assert (len(parts["dev"]), len(parts["test"])) == (93, 93)
    rows = Counter((ex.text, ex.labels) for p in parts.values() for ex in p.examples)
    assert rows == Counter((ex.text, ex.labels) for ex in original.examples)
    for name, part in parts.items():
        assert f"{name}: {len(part)} examples -> {out / f'{name}.csv'}" in result.output


def test_data_split_bad_ratios(demo_files, tmp_path):
    result = invoke("data", "split", demo_files.intents, "--out", tmp_path, "--ratios", "0.8,x,0.1")
    assert result.exit_code == 2
    assert "--ratios must be three numbers" in result.output


# ---- train, eval, predict on one tiny run ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tiny_model_dir, demo_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli.console, "width", 400)
        result = runner.invoke(cli.app, [str(a) for a in _train_args(tiny_model_dir, demo_files.intents, out)])
    return out, result


def test_train(cli_run):
    out, result = cli_run
    assert result.exit_code == 0, result.output
    assert "classification: before vs after fine-tuning" in result.output  # (rich wraps the title to the table)
    table = json.loads((out / "metrics.json").read_text())["before_after"]
    assert list(table) == ["majority class", "fine-tuned"]
    for name, values in table.items():
        assert name in result.output
        assert f"{values['accuracy']:.4f}" in result.output
    assert f"model saved to {out} (2 steps" in result.output
    meta = json.loads((out / "goldmine.json").read_text())
    assert meta["extra"]["global_step"] == 2


# a metric line per log ("step 1/2  epoch 0.01  loss 2.2937  lr 0.00e+00") and per evaluation ("step 2/2  dev ...")
TRAIN_LINE = re.compile(r"^step 1/2  epoch \d\.\d\d  loss \d+\.\d{4}  lr \d\.\d\de[-+]\d\d$", re.MULTILINE)
DEV_LINE = re.compile(r"^step 2/2  dev accuracy (\d\.\d{4}) \(best \1\)  dev loss \d+\.\d{4}$", re.MULTILINE)
RAW_LOG = "{'loss': '"  # transformers' PrinterCallback / tqdm output of a log


def _shown_train(tiny: Path, train: Path, out: Path, *flags: str):
    args = ["train", "--train", train, "--model", tiny, "-o", out, "--max-steps", "2", "--batch-size", "8",
            "--set", "training.logging_steps=1", "--set", "training.eval_strategy=steps",
            "--set", "training.eval_steps=2", "--set", "training.linear_probe=false",
            "--set", "training.head_init=random"]
    return invoke(*flags, *args)


def test_train_shows_progress_not_raw_logs(tiny_model_dir, demo_files, tmp_path):
    result = _shown_train(tiny_model_dir, demo_files.intents, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert RAW_LOG not in result.output and "'eval_loss'" not in result.output
    assert "Loading weights" not in result.output and "it/s]" not in result.output  # transformers' tqdm bars
    assert TRAIN_LINE.search(result.output), result.output
    assert DEV_LINE.search(result.output), result.output
    assert re.search(r"^done: 2 steps in \d+\.\ds, mean loss \d+\.\d{4}$", result.output, re.MULTILINE)
    assert re.search(r"^training +━+ 2/2 \d:\d\d:\d\d$", result.output, re.MULTILINE), result.output
    assert re.search(r"^test evaluation +━+ 2/2 \d:\d\d:\d\d$", result.output, re.MULTILINE), result.output
    assert result.output.index("test evaluation") < result.output.index("before vs after fine-tuning")


def test_train_verbose_brings_the_raw_logs_back(tiny_model_dir, demo_files, tmp_path):
    result = _shown_train(tiny_model_dir, demo_files.intents, tmp_path / "run", "--verbose")
    assert result.exit_code == 0, result.output
    assert result.output.count(RAW_LOG) == 2 and "'eval_loss'" in result.output
    assert "Loading weights" in result.output
    assert TRAIN_LINE.search(result.output) and DEV_LINE.search(result.output)  # the display stays
    assert "already one" not in result.output  # the Trainer did not warn of a second PrinterCallback


@pytest.mark.parametrize(("flag", "message"), [
    ("training.learning_rate=-1", "training.learning_rate: Input should be greater than 0"),
    ("training.batch_size=0", "training.batch_size: Input should be greater than 0"),
    ("training.no_such_field=1", "training.no_such_field: Extra inputs are not permitted"),
])
def test_train_invalid_value(flag, message, tiny_model_dir, demo_files, tmp_path):
    result = invoke("train", "--train", demo_files.intents, "--model", tiny_model_dir, "-o", tmp_path / "run",
                    "--set", flag)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_train_bad_set_syntax(tmp_path):
    result = invoke("train", "-o", tmp_path / "run", "--set", "training.epochs")
    assert result.exit_code == 2
    assert "--set expects key=value, got 'training.epochs'" in result.output


def test_train_unknown_task(demo_files, tmp_path):
    result = invoke("train", "--task", "clasification", "--train", demo_files.intents, "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert "did you mean 'classification'?" in result.output


def test_eval(cli_run, demo_files, tmp_path):
    out, _ = cli_run
    result = invoke("eval", out, demo_files.intents, "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_examples"] == len(read_file(demo_files.intents))
    assert f"accuracy: {metrics['accuracy']:.4f}" in result.output
    assert f"macro_f1: {metrics['macro_f1']:.4f}" in result.output
    assert f"ECE: {metrics['calibration']['ece']:.4f}   ({metrics['n_examples']} examples)" in result.output
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()
    assert (tmp_path / "eval" / "reliability.png").is_file()


def test_eval_unknown_label_is_exit_2(cli_run, tmp_path):
    out, _ = cli_run
    data = tmp_path / "other.csv"
    data.write_text("text,label\nhello there,greeting\n")
    result = invoke("eval", out, data)
    assert result.exit_code == 2
    assert f"{data}:2: label 'greeting' is not one of the model's labels" in result.output


def test_predict_classification(cli_run, tmp_path):
    out, _ = cli_run
    texts = ["where is my order 48213?", "my card was stolen"]
    result = invoke("predict", out, "--text", texts[0], "-t", texts[1])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["text"] for line in lines] == texts
    labels = json.loads((out / "labels.json").read_text())["label2id"]
    for line in lines:
        assert set(line) == {"text", "label", "score", "scores"}
        assert list(line["scores"]) == list(labels)
        assert line["label"] == max(line["scores"], key=line["scores"].get)
        assert line["score"] == pytest.approx(line["scores"][line["label"]], abs=1e-6)
        assert math.fsum(line["scores"].values()) == pytest.approx(1.0, abs=1e-5)

    file = tmp_path / "texts.jsonl"
    file.write_text(json.dumps({"text": texts[0]}) + "\n\n" + texts[1] + "\n")
    result = invoke("predict", out, "--file", file, "--output", tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert f"2 predictions -> {tmp_path / 'out.jsonl'}" in result.output
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written == lines


def test_predict_pairs(tiny_run, cli_run, tmp_path):
    run = tiny_run("pair")
    result = invoke("predict", run, "-t", "where is my order", "--text-b", "my parcel is late")
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert (line["text"], line["text_b"], set(line["scores"])) == (
        "where is my order", "my parcel is late", {"same", "different"})
    file = tmp_path / "pairs.jsonl"
    file.write_text(json.dumps({"text": "where is my order", "text_b": "my parcel is late"}) + "\n")
    result = invoke("predict", run, "--file", file)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == line
    result = invoke("predict", run, "-t", "where is my order")
    assert result.exit_code == 2 and "trained on text pairs" in result.output
    result = invoke("predict", cli_run[0], "-t", "a", "--text-b", "b")
    assert result.exit_code == 2 and "reads single texts" in result.output


def test_predict_needs_input(cli_run):
    result = invoke("predict", cli_run[0])
    assert result.exit_code == 2
    assert "nothing to predict: give --text or --file" in result.output


def test_predict_not_a_model_dir(tmp_path):
    result = invoke("predict", tmp_path, "--text", "hello")
    assert result.exit_code == 2
    assert f"{tmp_path} is not a goldmine model directory (no goldmine.json)" in result.output


def test_predict_ner_entities(tiny_model_dir, demo_files, tmp_path):
    import torch
    from transformers import AutoModelForTokenClassification

    import goldmine

    run = goldmine.train(None, **{
        "task": "ner", "data.train": str(demo_files.ner), "model.name": str(tiny_model_dir),
        "output_dir": str(tmp_path / "ner"), "training.max_steps": 1, "training.eval_strategy": "none",
        "training.linear_probe": False,
    }).output_dir
    # Make the tagger deterministic: every word B-LOC, so each word is its own entity with known offsets.
    model = AutoModelForTokenClassification.from_pretrained(run)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[model.config.label2id["B-LOC"]] = 5.0
    model.save_pretrained(run)
    score = math.exp(5) / (math.exp(5) + model.config.num_labels - 1)

    text = "Anna, Berlin now"
    result = invoke("predict", run, "--text", text)
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["text"] == text
    entities = line["entities"]
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in entities] == [
        ("LOC", "Anna", 0, 4), ("LOC", ",", 4, 5), ("LOC", "Berlin", 6, 12), ("LOC", "now", 13, 16),
    ]
    for e in entities:
        assert text[e["start"]:e["end"]] == e["text"]
        assert e["score"] == pytest.approx(score, abs=1e-5)


@pytest.mark.integration
def test_demo_quick(tmp_path):
    """Trains the bundled MiniLM for 4 steps per task (cannot use the tiny model)."""
    out = tmp_path / "demo"
    result = invoke("demo", "--quick", "-o", out)
    assert result.exit_code == 0, result.output
    assert RAW_LOG not in result.output and "Loading weights" not in result.output
    assert len(re.findall(r"^training +━+ 4/4 ", result.output, re.MULTILINE)) == 2  # goldmine's bar, once per task
    for name in ("intents", "entities"):
        assert (out / name / "goldmine.json").is_file()
        assert json.loads((out / name / "goldmine.json").read_text())["extra"]["global_step"] == 4
        assert f"{name}: before vs after fine-tuning" in result.output
    assert (out / "data" / "support_intents.csv").is_file()
    from goldmine.demo.run import SAMPLE_REQUESTS, SAMPLE_TICKETS

    labels = json.loads((out / "intents" / "labels.json").read_text())["label2id"]
    for text in SAMPLE_REQUESTS:  # each sample prediction was printed: text -> label (score)
        label = result.output.split(f"{text!r} -> ", 1)[1].split(" ", 1)[0]
        assert label in labels
    for text in SAMPLE_TICKETS:
        assert f"{text!r}\n   -> " in result.output
