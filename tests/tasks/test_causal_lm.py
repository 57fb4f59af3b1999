"""The causal LM task (issue 14, in progress): chat encoding through its template, a loss the Trainer can call,
greedy replies that stop at the end of the turn, and evaluation (loss, perplexity, ROUGE-L, exact match) that
measures what a model learned."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from goldmine.data.readers import read_file
from goldmine.inference.model import Model, RunMeta
from goldmine.modeling.chat_encoding import IGNORE
from goldmine.tasks.causal_lm import CausalLM

REVIEWS = [("great film", "positive"), ("awful film", "negative"), ("great", "positive"), ("awful", "negative")]


def sentiment_chats(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"prompt": text, "response": label}) + "\n" for text, label in REVIEWS))
    return read_file(path)


def trained(task, data, steps: int):
    """The tiny decoder trained with the task's own encoding, collator and loss (a plain loop)."""
    network = task.build_model(str(task.source), {})
    batch = task.collator()(task.encode(data).features)
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-2)
    loss_of = task.loss_function(None, 0.0)
    network.train()
    for _ in range(steps):
        loss = loss_of(network(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]), batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return network.eval()


@pytest.fixture
def task(tiny_decoder_dir):
    task = CausalLM([], AutoTokenizer.from_pretrained(tiny_decoder_dir), max_length=64)
    task.source = tiny_decoder_dir
    return task


def as_model(network, task):
    return Model(network, task, RunMeta(task="causal_lm", label_names=[], base_model="tiny"))


def test_evaluation_sees_what_training_taught(task, tmp_path):
    data = sentiment_chats(tmp_path)
    before = task.evaluate_data(as_model(AutoModelForCausalLM.from_pretrained(task.source), task), data,
                                max_new_tokens=4)
    after = task.evaluate_data(as_model(trained(task, data, 60), task), data, max_new_tokens=4)
    assert after["loss"] < before["loss"] and after["perplexity"] == pytest.approx(math.exp(after["loss"]))
    assert after["exact_match"] == 1.0 and after["rouge_l"] == 1.0 and before["exact_match"] < 1.0
    assert after["assistant_tokens"] == 2 * len(REVIEWS)  # the label and the end-of-turn token of each reply
    assert after["examples"][0] == {"prompt": "great film", "reference": "positive", "generated": "positive"}


def test_predict_answers_a_user_message_and_counts_prompt_and_reply_tokens(task, tmp_path):
    model = as_model(trained(task, sentiment_chats(tmp_path), 60), task)
    [(answer, prompt_tokens)] = task.predict(model, ["awful film"], None)
    assert answer == {"text": "negative", "completion_tokens": 1}
    assert prompt_tokens == len(task.prompt_ids([{"role": "user", "content": "awful film"}]))


def test_dev_token_accuracy_reads_only_the_assistants_positions(task):
    labels = np.array([[IGNORE, IGNORE, 5, 6], [IGNORE, 7, IGNORE, IGNORE]])
    guesses = np.array([[0, 5, 9, 0], [7, 0, 0, 0]])  # position t guesses token t + 1: two of three right
    assert task.dev_metrics(guesses, labels)["token_accuracy"] == pytest.approx(2 / 3)
