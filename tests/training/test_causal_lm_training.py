"""`task: causal_lm` through goldmine.train: full fine-tuning and LoRA on chat data, a run directory that
Model.load answers from and plain transformers/peft load, a before-vs-after table of the pretrained and the trained
decoder."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM

import goldmine
from goldmine.errors import ConfigError, DataError

REVIEWS = [("great film", "positive"), ("awful film", "negative"), ("great", "positive"), ("awful", "negative")]


@pytest.fixture
def chats(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"prompt": a, "response": b}) + "\n" for a, b in REVIEWS * 6))
    return path


def train(tiny_decoder_dir, chats, out, **settings):
    return goldmine.train(None, **{"task": "causal_lm", "data.train": chats, "data.test": chats,
                                   "model.name": str(tiny_decoder_dir), "output_dir": out, "model.max_length": 32,
                                   "training.max_steps": 40, "training.learning_rate": 3e-2,
                                   "training.batch_size": 8, "training.eval_strategy": "none", **settings})


def test_full_fine_tuning_learns_the_replies_and_reports_before_vs_after(tiny_decoder_dir, chats, tmp_path):
    result = train(tiny_decoder_dir, chats, tmp_path / "run")
    assert list(result.before_after) == ["pretrained", "fine-tuned"]
    before, after = result.before_after["pretrained"], result.before_after["fine-tuned"]
    assert set(after) == {"loss", "perplexity", "rouge_l", "exact_match"}
    assert after["loss"] < before["loss"] and after["exact_match"] == 1.0
    model = goldmine.Model.load(tmp_path / "run")
    assert model.predict(["awful film"])[0]["text"] == "negative"
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "run")  # a normal transformers directory
    assert plain.config.model_type == "llama"


def test_lora_adapts_the_projections_and_leaves_the_output_layer(tiny_decoder_dir, chats, tmp_path):
    from peft import PeftConfig

    result = train(tiny_decoder_dir, chats, tmp_path / "lora", **{"tuning.strategy": "lora", "tuning.lora.r": 4,
                                                                   "training.max_steps": 60})
    adapter = PeftConfig.from_pretrained(tmp_path / "lora")
    assert set(adapter.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj"}
    assert not adapter.modules_to_save
    assert result.before_after["fine-tuned"]["loss"] < result.before_after["pretrained"]["loss"]
    assert goldmine.Model.load(tmp_path / "lora").predict(["great film"])[0]["text"] in ("positive", "negative")


def test_bad_chat_input_is_refused_before_training(tiny_decoder_dir, chats, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "response": "hello"}) + "\n" +
                   json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match="end with the assistant"):
        train(tiny_decoder_dir, bad, tmp_path / "r")
    texts = tmp_path / "texts.csv"
    texts.write_text("text,label\na,b\nc,d\n")
    with pytest.raises(DataError, match="needs chat data"):
        train(tiny_decoder_dir, texts, tmp_path / "r2")
    with pytest.raises(ConfigError, match="class weights"):
        train(tiny_decoder_dir, chats, tmp_path / "r3", **{"training.class_weights": "balanced"})
    assert not (tmp_path / "r3" / "goldmine.json").exists()


def test_eval_cli_shows_replies_beside_their_references(tiny_decoder_dir, chats, tmp_path):
    from typer.testing import CliRunner

    from goldmine.cli import app

    train(tiny_decoder_dir, chats, tmp_path / "run", **{"training.max_steps": 5})
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), str(chats), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "rouge_l" in result.output and "reference: positive" in result.output
    written = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert written["n_examples"] == len(REVIEWS) * 6 and len(written["examples"]) == 5


def test_early_stopping_on_dev_token_accuracy_ends_training_once_it_stops_improving(tiny_decoder_dir, chats,
                                                                                   tmp_path):
    result = train(tiny_decoder_dir, chats, tmp_path / "run", **{
        "data.dev": chats, "training.max_steps": 400, "training.eval_strategy": "steps", "training.eval_steps": 5,
        "training.early_stopping_patience": 2})
    assert result.global_step < 400  # the replies are learned long before: dev token accuracy stops rising
    history = json.loads((tmp_path / "run" / "log_history.json").read_text())
    accuracies = [row["eval_token_accuracy"] for row in history if "eval_token_accuracy" in row]
    assert accuracies[-1] == max(accuracies) == 1.0
