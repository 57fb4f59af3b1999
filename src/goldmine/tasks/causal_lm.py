"""Causal LM (`task: causal_lm`): a decoder fine-tuned on conversations to write the assistant's replies.

Encoding is the model's own chat template with the loss on the assistant's tokens only
(`goldmine.modeling.chat_encoding`). Evaluation reads a file of conversations as replies to write: each
conversation's last assistant turn is the reference, everything before it the prompt.

    loss, perplexity   teacher-forced next-token cross-entropy over every assistant token (exp of it)
    rouge_l            ROUGE-L F1 (rouge-score) of the greedy reply against the reference
    exact_match        share of replies equal to the reference after trimming and case folding: meaningful where
                       the expected answer is a label ("positive", an intent name)
    examples           the first few prompts with their reference and generated reply, side by side

`model.name: bundled` means the bundled SmolLM2-135M-Instruct here (`goldmine.modeling.decoder`). LoRA adapts the
attention and MLP projections and leaves the (tied) output layer alone. The serving routes and a fast decoding
runtime are issue 14's next parts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from goldmine.data.schema import DataKind, LabeledData
from goldmine.errors import ConfigError, DataError, DataIssue
from goldmine.modeling.chat_encoding import (
    IGNORE,
    ChatCollator,
    assistant_token_loss,
    encode_chats,
    messages_of,
    render_ids,
)
from goldmine.registry import TASKS
from goldmine.tasks.base import Encoded, Task

MAX_NEW_TOKENS = 128  # default reply length limit of evaluation and predict
SHOWN_EXAMPLES = 5


def normalised(text: str) -> str:
    return " ".join(text.strip().casefold().split())


def reply_metrics(references: list[str], replies: list[str]) -> dict[str, float]:
    """ROUGE-L F1 (mean) and exact match (after trimming and case folding) of replies against references."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(ref, reply)["rougeL"].fmeasure for ref, reply in zip(references, replies, strict=True)]
    exact = [normalised(ref) == normalised(reply) for ref, reply in zip(references, replies, strict=True)]
    return {"rouge_l": float(np.mean(rouge)) if rouge else 0.0, "exact_match": float(np.mean(exact)) if exact else 0.0}


@TASKS.register("causal_lm")
class CausalLM(Task):
    """A decoder that writes the assistant's reply to a conversation."""

    name = "causal_lm"
    kinds = (DataKind.CHAT,)
    auto_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    evaluates_itself = True
    lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora_trains_head = False  # the output layer is tied to the input embeddings: a full copy would train 28M weights

    @classmethod
    def resolve_base(cls, name: str) -> str:
        from goldmine.modeling.backbone import BUNDLED
        from goldmine.modeling.decoder import BUNDLED_DECODER, resolve_decoder

        return resolve_decoder(BUNDLED_DECODER if name == BUNDLED else name)

    @classmethod
    def labels_from(cls, data: LabeledData) -> list[str]:
        return []  # replies, not labels

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else \
            self.tokenizer.eos_token_id

    # ---- training ----
    def build_model(self, base: str, config_overrides: dict[str, Any]) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)

    def encode(self, data: LabeledData) -> Encoded:
        encoded = encode_chats(self.tokenizer, data, self.max_length)
        return Encoded(encoded.features, encoded.truncated)

    def collator(self):
        return ChatCollator(self.pad_id)

    def loss_function(self, class_weights: torch.Tensor | None, label_smoothing: float):
        if class_weights is not None or label_smoothing:
            raise ConfigError("task causal_lm: class weights and label smoothing are for classification")
        return lambda outputs, labels, num_items_in_batch=None: assistant_token_loss(outputs.logits, labels)

    def class_frequencies(self, data: LabeledData) -> np.ndarray:
        return np.zeros(0)

    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)  # (B, T) next-token guesses: what dev token accuracy needs

    def dev_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        """Share of assistant tokens the model predicts right from the tokens before them (teacher-forced)."""
        guesses, targets = predictions[:, :-1], label_ids[:, 1:]
        learned = targets != IGNORE
        return {"token_accuracy": float((guesses[learned] == targets[learned]).mean()) if learned.any() else 0.0}

    @property
    def default_metric(self) -> str:
        return "token_accuracy"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    # ---- answers ----
    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return render_ids(self.tokenizer, messages, generation_prompt=True)

    def generate(self, network, prompts: list[list[int]], max_new_tokens: int = MAX_NEW_TOKENS) -> list[list[int]]:
        """Greedy replies to token prompts; each stops at the end-of-turn token. They run through the serving
        runtime (`goldmine.inference.generation.DecodeEngine`, continuous batching), so evaluation measures the
        decoding the server does."""
        from goldmine.inference.generation import DecodeEngine, SamplingParams

        engine = DecodeEngine(network, self.tokenizer, max_batch=8, max_queue=max(64, len(prompts)),
                              max_queue_wait_s=float("inf"))
        try:
            return engine.generate(prompts, SamplingParams(max_tokens=max_new_tokens))
        finally:
            engine.close()

    def predict(self, model, texts: list[str], texts_b: list[str] | None) -> list[tuple[dict[str, Any], int]]:
        """Each text as a user message; the reply, and the prompt's tokens (what is billed as input)."""
        prompts = [self.prompt_ids([{"role": "user", "content": text}]) for text in texts]
        replies = self.generate(model.network, prompts)
        return [({"text": self.tokenizer.decode(reply, skip_special_tokens=True).strip(),
                  "completion_tokens": len(reply)}, len(prompt))
                for prompt, reply in zip(prompts, replies, strict=True)]

    # ---- evaluation ----
    def evaluate_data(self, model, data: LabeledData, max_new_tokens: int = MAX_NEW_TOKENS) -> dict[str, Any]:
        network = model.network
        if network is None:
            raise ConfigError("a causal LM is evaluated with its torch network")
        encoded = encode_chats(self.tokenizer, data, self.max_length)
        collate = ChatCollator(self.pad_id)
        total, count = 0.0, 0
        with torch.inference_mode():
            for start in range(0, len(encoded.features), 8):
                batch = collate(encoded.features[start:start + 8])
                logits = network(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                tokens = int((batch["labels"][:, 1:] != IGNORE).sum())
                total += float(assistant_token_loss(logits, batch["labels"])) * tokens
                count += tokens
        loss = total / count if count else float("nan")
        references, prompts = [], []
        for example in data.examples:
            messages = messages_of(example)
            references.append(messages[-1]["content"])
            prompts.append(self.prompt_ids(messages[:-1]))
        too_long = [DataIssue.at(ex.source, f"the prompt is {len(p)} tokens; the limit is {self.max_length}")
                    for ex, p in zip(data.examples, prompts, strict=True) if len(p) >= self.max_length]
        if too_long:
            raise DataError(too_long, header=f"{data.path}: prompts too long to answer")
        replies = [self.tokenizer.decode(r, skip_special_tokens=True).strip()
                   for r in self.generate(network, prompts, max_new_tokens)]
        return {"loss": loss, "perplexity": math.exp(loss) if count else float("nan"),
                **reply_metrics(references, replies),
                "assistant_tokens": count, "truncated": encoded.truncated,
                "examples": [{"prompt": messages_of(ex)[-2]["content"], "reference": ref, "generated": reply}
                             for ex, ref, reply in list(zip(data.examples, references, replies,
                                                            strict=True))[:SHOWN_EXAMPLES]]}

    # ---- unit-wise evaluation and the probe: not for a decoder ----
    def unit_probabilities(self, probs: np.ndarray, feature: dict) -> np.ndarray:
        raise ConfigError("task causal_lm is evaluated as a whole (evaluate_data)")

    def targets(self, feature: dict) -> np.ndarray:
        raise ConfigError("task causal_lm is evaluated as a whole (evaluate_data)")

    def metrics(self, data: LabeledData, encoded: Encoded, decided: list[np.ndarray]) -> dict:
        raise ConfigError("task causal_lm is evaluated as a whole (evaluate_data)")

    def majority_metrics(self, train: LabeledData, test: LabeledData) -> dict:
        raise ConfigError("task causal_lm has no majority class")

    def probe_vectors(self, hidden, attention_mask, pooler, feature, pooling) -> np.ndarray:
        raise ConfigError("task causal_lm has no linear probe")

    def probe_classifier(self):
        raise ConfigError("task causal_lm has no linear probe")
