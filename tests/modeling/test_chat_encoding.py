"""Conversations through a chat template: loss on the assistant's tokens only, end-of-turn included; a prompt too
long for the model reported at its line; padding that the loss ignores."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from goldmine.data.readers import read_file
from goldmine.errors import DataError
from goldmine.modeling.chat_encoding import IGNORE, ChatCollator, assistant_token_loss, encode_chats


@pytest.fixture(scope="module")
def tokenizer(tiny_decoder_dir):
    return AutoTokenizer.from_pretrained(tiny_decoder_dir)


def chats(tmp_path, rows):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_file(path)


def words(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens([i for i in ids if i != IGNORE])


def test_only_the_assistants_tokens_are_learned_end_of_turn_included(tokenizer, tmp_path):
    data = chats(tmp_path, [{"messages": [
        {"role": "system", "content": "you are kind"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello how can i help"}, {"role": "user", "content": "where is my parcel"},
        {"role": "assistant", "content": "it ships today"}]}])
    [feature] = encode_chats(tokenizer, data, max_length=64).features
    assert len(feature["input_ids"]) == len(feature["labels"]) == len(feature["attention_mask"])
    assert words(tokenizer, feature["labels"]) == ["hello", "how", "can", "i", "help", "<|im_end|>",
                                                   "it", "ships", "today", "<|im_end|>"]
    learned = [i for i, label in enumerate(feature["labels"]) if label != IGNORE]
    assert all(feature["input_ids"][i] == feature["labels"][i] for i in learned)


def test_a_prompt_that_does_not_fit_is_reported_at_its_line_and_a_long_reply_is_cut(tokenizer, tmp_path):
    data = chats(tmp_path, [{"prompt": "hi", "response": "hello"},
                            {"prompt": "where is my parcel " * 5, "response": "it ships today"},
                            {"prompt": "hi", "response": "hello how can i help " * 10}])
    with pytest.raises(DataError) as err:
        encode_chats(tokenizer, data, max_length=16)
    [issue] = err.value.issues
    assert issue.line == 2 and "the prompt is" in issue.reason and "limit is 16" in issue.reason
    fine = chats(tmp_path, [{"prompt": "hi", "response": "hello"}, {"prompt": "hi", "response": "hello " * 30}])
    encoded = encode_chats(tokenizer, fine, max_length=16)
    assert encoded.truncated == 1 and len(encoded.features[1]["input_ids"]) == 16


def test_padding_is_ignored_by_the_loss(tokenizer, tmp_path):
    data = chats(tmp_path, [{"prompt": "hi", "response": "hello"},
                            {"prompt": "where is my parcel", "response": "it ships today"}])
    features = encode_chats(tokenizer, data, max_length=64).features
    batch = ChatCollator(tokenizer.pad_token_id)(features)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][0, len(features[0]["labels"]):] == IGNORE).all()
    torch.manual_seed(0)
    logits = torch.randn(*batch["input_ids"].shape, len(tokenizer))
    whole = assistant_token_loss(logits, batch["labels"])
    # the same loss computed by hand over the learned positions
    targets = batch["labels"][:, 1:]
    picked = torch.log_softmax(logits[:, :-1], -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    assert whole.item() == pytest.approx(-(picked[targets != IGNORE]).mean().item(), rel=1e-5)
