"""Conversations as decoder training inputs: the model's own chat template, loss on the assistant's tokens only.

A conversation is rendered by the tokenizer's chat template (so training sees exactly the format the model was
instruction-tuned on and will be prompted with). Which tokens are the assistant's is found by rendering the
conversation up to each assistant turn twice: the prefix with the generation prompt (what the model reads before it
answers), and the prefix with the reply. The tokens between the two are the reply, end-of-turn marker included (the
model must learn to stop). Everything else (system, user turns, the template's own markers) gets label -100, which
the loss ignores. This works for any template whose rendering of a longer conversation starts with that of a shorter
one (ChatML and the common templates do); one that does not is refused with the line of the first conversation where
it failed, rather than training on misplaced labels.

Length: a conversation whose prompt (everything before its last reply) does not fit in `max_length` tokens is
reported at its line, since cutting a prompt silently changes what is learned; one whose reply runs past the limit
is cut there and counted (`EncodedChats.truncated`).

This is the first piece of `task: causal_lm` (issue 14); the task, its training and its evaluation build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from goldmine.data.schema import ChatExample, LabeledData
from goldmine.errors import DataError, DataIssue

IGNORE = -100  # the label the loss skips


@dataclass
class EncodedChats:
    features: list[dict[str, Any]]  # input_ids, attention_mask, labels (-100 outside the assistant's replies)
    truncated: int = 0


def messages_of(example: ChatExample) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in example.messages]


def render_ids(tokenizer, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                        return_dict=False)
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def encode_chat(tokenizer, example: ChatExample, max_length: int) -> tuple[dict[str, Any], bool]:
    """(features, truncated) of one conversation; raises ValueError with the reason when it cannot be encoded."""
    messages = messages_of(example)
    ids: list[int] = []
    labels: list[int] = []
    for end, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render_ids(tokenizer, messages[:end], generation_prompt=True)
        full = render_ids(tokenizer, messages[: end + 1], generation_prompt=False)
        if full[: len(prompt)] != prompt or prompt[: len(ids)] != ids:
            raise ValueError("the tokenizer's chat template does not render a conversation as a prefix of its "
                             "continuation; goldmine cannot tell the assistant's tokens apart")
        labels += [IGNORE] * (len(prompt) - len(ids)) + full[len(prompt):]
        ids = full
    last_prompt = len(labels) - len([t for t in reversed(labels) if t != IGNORE]) if labels else 0
    if last_prompt >= max_length:
        raise ValueError(f"the prompt is {last_prompt} tokens; the limit is {max_length} (model.max_length), "
                         "so no token of the reply would be learned")
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}, truncated


def encode_chats(tokenizer, data: LabeledData, max_length: int) -> EncodedChats:
    """Every conversation of `data` encoded; every one that cannot be is reported at its line in one DataError."""
    features, issues, truncated = [], [], 0
    for example in data.examples:
        try:
            feature, cut = encode_chat(tokenizer, example, max_length)
        except ValueError as err:
            issues.append(DataIssue.at(example.source, str(err)))
            continue
        features.append(feature)
        truncated += cut
    if issues:
        raise DataError(issues, header=f"{data.path}: conversations that cannot be trained on")
    return EncodedChats(features, truncated)


class ChatCollator:
    """Pads a batch to its longest conversation: input ids with the pad token, labels with -100 (right padding, as
    training wants; generation pads on the left itself)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)

        def padded(key: str, value: int) -> torch.Tensor:
            return torch.tensor([list(f[key]) + [value] * (longest - len(f[key])) for f in features])

        return {"input_ids": padded("input_ids", self.pad_token_id), "attention_mask": padded("attention_mask", 0),
                "labels": padded("labels", IGNORE)}


def assistant_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the assistant's tokens (labels shifted by one: position t predicts
    token t + 1)."""
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shifted_labels = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE)
