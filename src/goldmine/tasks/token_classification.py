"""Token classification (NER) with sub-word alignment and document context.

Alignment: each word's label goes on its first sub-token; the other sub-tokens get -100 and
are ignored by the loss and by evaluation. Predictions are read from first sub-tokens and
mapped back to words, then to character spans of the original text.

Document context: CoNLL sentences are short and their documents say who is who ("Leicester"
is an ORG in a football report). When `document_context` is on, each sentence is encoded
with neighbouring sentences of the same document filling the rest of `context_length`
sub-tokens (default: `max_length`); only the sentence's own words carry labels. The fill costs
compute on every example, so the training default (`data.context_length`, 64) is below
`max_length`: a long sentence alone still gets all of `max_length`.

Case types: an uncased checkpoint (all-MiniLM-L6-v2 is one) lower-cases every word before it sees it,
so "Bush" and "bush", "US" and "us" reach it as the same tokens, yet capitalisation is one of the
strongest cues for names. With `case_features` on, each sub-token's token type says how its word was
written (lower, Title, UPPER, mIxed): the encoder's token-type embedding table gets three more rows,
initialised as copies of row 0 (so the pretrained model starts unchanged) and learned in fine-tuning.
Row 1, BERT's second segment, is left as it was. The saved model is a plain BERT with
`type_vocab_size` 5 that loads with `AutoModelForTokenClassification`; goldmine computes the types
from the original text wherever the model reads input (train, eval, predict, the server, ONNX).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, DataCollatorForTokenClassification

from goldmine.data.schema import DataKind, LabeledData, TokenExample
from goldmine.data.tags import split_tag
from goldmine.errors import ConfigError, DataError, DataIssue
from goldmine.tasks import TASKS
from goldmine.tasks.base import Encoded, Task

IGNORE = -100
LOWER, TITLE, UPPER, MIXED = 0, 2, 3, 4  # token types of a word's capitalisation; 1 stays BERT's second segment
CASE_TYPE_VOCAB = 5


def word_case(word: str) -> int:
    """The token type of a word's capitalisation: LOWER (also no letters), TITLE ("Bush", "I"), UPPER ("EU"),
    MIXED ("McDonald", "iPhone")."""
    letters = [c for c in word if c.isalpha()]
    if not any(c.isupper() for c in letters):
        return LOWER
    if all(c.isupper() for c in letters):
        return UPPER if len(letters) > 1 else TITLE
    if letters[0].isupper() and not any(c.isupper() for c in letters[1:]):
        return TITLE
    return MIXED


def case_types_pay_off(tokenizer, base: str) -> bool:
    """Whether case types add information: the tokenizer lower-cases ("A" and "a" encode alike) and the encoder
    has a token-type table to carry them (BERT-style; DistilBERT has none). conll2003 dev entity F1 with the
    bundled uncased MiniLM: 0.9354 with them, 0.9111 without (bench/results/accuracy.md)."""
    upper, lower = (tokenizer(c, add_special_tokens=False)["input_ids"] for c in ("A", "a"))
    return upper == lower and getattr(AutoConfig.from_pretrained(base), "type_vocab_size", 0) > 0


def add_case_type_rows(model: nn.Module) -> None:
    """Grow the encoder's token-type embeddings to CASE_TYPE_VOCAB rows, new rows copied from row 0."""
    embeddings = getattr(model.base_model, "embeddings", None)
    table = getattr(embeddings, "token_type_embeddings", None)
    if not isinstance(table, nn.Embedding):
        raise ConfigError(f"data.case_features: needs an encoder with token-type embeddings (BERT-style); "
                          f"{model.config.model_type} has none")
    if table.num_embeddings >= CASE_TYPE_VOCAB:
        return
    grown = nn.Embedding(CASE_TYPE_VOCAB, table.embedding_dim, dtype=table.weight.dtype)
    with torch.no_grad():
        grown.weight[: table.num_embeddings] = table.weight
        grown.weight[table.num_embeddings :] = table.weight[0]
    embeddings.token_type_embeddings = grown
    model.config.type_vocab_size = CASE_TYPE_VOCAB


@dataclass(frozen=True)
class Entity:
    """A predicted entity: its type, surface text and [start, end) character offsets."""

    type: str
    text: str
    start: int
    end: int
    score: float


def decode_entities(tags: list[str], scores: list[float], spans: list[tuple[int, int]], text: str) -> list[Entity]:
    """IOB2 word tags -> entities. A stray I- (continuing nothing) opens an entity, as seqeval's lenient mode."""
    entities: list[Entity] = []
    current: list[int] = []
    kind = ""

    def close() -> None:
        if current:
            start, end = spans[current[0]][0], spans[current[-1]][1]
            score = float(np.mean([scores[i] for i in current]))
            entities.append(Entity(kind, text[start:end], start, end, score))

    for i, tag in enumerate(tags):
        prefix, tag_kind = split_tag(tag)
        if prefix == "I" and current and tag_kind == kind:
            current.append(i)
            continue
        close()
        current, kind = ([i], tag_kind) if prefix in ("B", "I") else ([], "")
    close()
    return entities


@TASKS.register("ner")
class TokenClassification(Task):
    name = "ner"
    kinds = (DataKind.TOKENS,)
    auto_class = "AutoModelForTokenClassification"

    @property
    def document_context(self) -> bool:
        return bool(self.options.get("document_context", True))

    @property
    def case_features(self) -> bool:
        return bool(self.options.get("case_features", False))

    @property
    def context_length(self) -> int:
        """Sub-tokens (special ones included) that neighbouring sentences may fill an input up to."""
        return min(self.options.get("context_length") or self.max_length, self.max_length)

    def build_model(self, base: str, config_overrides: dict[str, Any]) -> nn.Module:
        overrides = {k: v for k, v in config_overrides.items() if k != "goldmine_pooling"}
        config = AutoConfig.from_pretrained(
            base, num_labels=self.num_labels, id2label=dict(enumerate(self.label_names)), label2id=self.label2id,
            **overrides,
        )
        model = AutoModelForTokenClassification.from_pretrained(base, config=config)
        if self.case_features:
            add_case_type_rows(model)
        return model

    def case_types(self, word_ids: list[int | None], cases: list[int] | dict[int, int]) -> list[int]:
        """Token types for one encoding: the case of each sub-token's word (`cases[word id]`), 0 elsewhere."""
        return [LOWER if wid is None else cases[wid] for wid in word_ids]

    def case_types_of_text(self, text: str, word_ids: list[int | None], offsets) -> list[int]:
        """`case_types` for raw text: each word is the span from its first sub-token's start to its last's end."""
        spans: dict[int, tuple[int, int]] = {}
        for wid, (start, end) in zip(word_ids, offsets, strict=True):
            if wid is not None:
                spans[wid] = (spans.get(wid, (start, end))[0], end)
        return self.case_types(word_ids, {wid: word_case(text[a:b]) for wid, (a, b) in spans.items()})

    def _subword_counts(self, examples: list[TokenExample]) -> dict[str, int]:
        words = sorted({w for ex in examples for w in ex.tokens})
        ids = self.tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
        return {w: len(i) for w, i in zip(words, ids, strict=True)}

    @staticmethod
    def _context(examples: list[TokenExample], i: int, step: int, room: int, counts: dict[str, int]) -> list[str]:
        """Words of the sentences after (step=1) or before (step=-1) sentence i in its document, nearest
        first, until `room` sub-tokens are used."""
        words: list[str] = []
        j = i + step
        while 0 <= j < len(examples) and examples[j].document == examples[i].document:
            for w in examples[j].tokens if step > 0 else reversed(examples[j].tokens):
                if counts[w] > room:
                    return words
                words.append(w)
                room -= counts[w]
            j += step
        return words

    def _windows(self, examples: list[TokenExample], counts: dict[str, int]) -> list[tuple[list[str], int]]:
        """For each sentence: the words to encode and the index of the sentence's first word in them.

        Spare room is shared between the sentences before and after; what one side cannot use
        (at the start or end of a document) goes to the other.
        """
        if not self.document_context:
            return [(list(ex.tokens), 0) for ex in examples]
        budget = self.context_length - self.tokenizer.num_special_tokens_to_add()
        windows = []
        for i, ex in enumerate(examples):
            room = budget - sum(counts[w] for w in ex.tokens)
            if room <= 0:
                windows.append((list(ex.tokens), 0))
                continue
            right = self._context(examples, i, 1, room // 2, counts)
            left = self._context(examples, i, -1, room - sum(counts[w] for w in right), counts)
            right = self._context(examples, i, 1, room - sum(counts[w] for w in left), counts)
            windows.append((left[::-1] + list(ex.tokens) + right, len(left)))
        return windows

    def encode(self, data: LabeledData) -> Encoded:
        unknown = [
            DataIssue.at(ex.source, f"tag {tag!r} is not one of the model's tags {self.label_names}", offset=k)
            for ex in data.examples for k, tag in enumerate(ex.tags) if tag not in self.label2id
        ]
        if unknown:
            raise DataError(unknown, header=f"{data.path} has tags the model does not know")
        examples = data.examples
        counts = self._subword_counts(examples)
        windows = self._windows(examples, counts)
        enc = self.tokenizer([w for w, _ in windows], is_split_into_words=True, truncation=True,
                             max_length=self.max_length)
        features, alignment, truncated = [], [], 0
        for i, (ex, (_, offset)) in enumerate(zip(examples, windows, strict=True)):
            word_ids = enc.word_ids(i)
            labels, words = [], []
            previous = None
            for wid in word_ids:
                target = wid is not None and offset <= wid < offset + len(ex.tokens) and wid != previous
                labels.append(self.label2id[ex.tags[wid - offset]] if target else IGNORE)
                if target:
                    words.append(wid - offset)
                previous = wid
            # A word that tokenizes to nothing (e.g. a soft hyphen) has no position but was not cut off.
            kept = set(words)
            truncated += any(counts[w] and k not in kept for k, w in enumerate(ex.tokens))
            feature = {k: enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
            if self.case_features:
                feature["token_type_ids"] = self.case_types(word_ids, [word_case(w) for w in windows[i][0]])
            feature["labels"] = labels
            features.append(feature)
            alignment.append(words)
        return Encoded(features, truncated, alignment)

    def collator(self):
        return DataCollatorForTokenClassification(self.tokenizer, label_pad_token_id=IGNORE)

    def class_frequencies(self, data: LabeledData) -> np.ndarray:
        counts = np.zeros(self.num_labels)
        for ex in data.examples:
            for tag in ex.tags:
                counts[self.label2id[tag]] += 1
        return counts

    def loss_function(self, class_weights: torch.Tensor | None, label_smoothing: float):
        def loss(outputs, labels, num_items_in_batch=None):
            logits = outputs.logits  # (B, T, C)
            return nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), weight=class_weights,
                ignore_index=IGNORE, label_smoothing=label_smoothing,
            )

        return loss

    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def dev_metrics(self, predictions: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
        from seqeval.metrics import f1_score
        from seqeval.scheme import IOB2

        true_tags, pred_tags = [], []
        for pred_row, label_row in zip(predictions, label_ids, strict=True):
            keep = label_row != IGNORE
            true_tags.append([self.label_names[i] for i in label_row[keep]])
            pred_tags.append([self.label_names[i] for i in pred_row[keep]])
        return {"f1": float(f1_score(true_tags, pred_tags, mode="strict", scheme=IOB2))}

    @property
    def default_metric(self) -> str:
        return "f1"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)
