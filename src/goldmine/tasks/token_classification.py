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

Decoding and the metric: word tags become entities by conlleval's chunk rules (`entity_spans`): B- opens an
entity, so does an I- that follows O or a tag of another type (a "stray" I-). Serving returns exactly these
entities and evaluation scores exactly these (`entity_counts`), so the F1 a run reports is the F1 of what
clients get, and it is the figure conlleval.pl (the CoNLL script every paper reports) gives for the same tags.
seqeval's strict mode instead drops an entity that opens with a stray I-; it is kept as a secondary figure.

Raw text (`encode_texts`, what `predict` and the server tag): each text is a document, split into sentences
and words as CoNLL splits them (`goldmine.data.segmentation`); the sentences are then encoded by
the very code that encodes a labeled file (`_encode_windows`), neighbours as context included. A sentence longer
than `max_length` sub-tokens is cut at word boundaries into pieces that fit, tagged one after the other (each
piece gets the others as context where room is left), so no word of a request goes untagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import groupby
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, DataCollatorForTokenClassification

from goldmine.data.schema import DataKind, LabeledData, TokenExample
from goldmine.data.segmentation import sentence_spans, word_spans
from goldmine.data.tags import split_tag
from goldmine.errors import ConfigError, DataError, DataIssue
from goldmine.registry import TASKS
from goldmine.tasks.base import Encoded, Predictor, Task

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


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """IOB2 word tags -> entities as (type, first word, end word) with the end exclusive, by conlleval's rules.

    An entity opens at B-X, and at I-X after O or after a tag of another type (a stray I- is not dropped);
    it goes on over the I-X that follow and closes at O, at any B-, and at an I- of another type. This is the
    one decoder: serving returns these entities and evaluation scores these.
    """
    entities: list[tuple[str, int, int]] = []
    kind, start = "", -1
    for i, tag in enumerate([*tags, "O"]):  # a final O closes the last entity
        prefix, tag_kind = split_tag(tag)
        if prefix == "I" and start >= 0 and tag_kind == kind:
            continue
        if start >= 0:
            entities.append((kind, start, i))
        kind, start = (tag_kind, i) if prefix in ("B", "I") else ("", -1)
    return entities


def entity_counts(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
                  ) -> dict[str, tuple[int, int, int]]:
    """Per entity type: (correct, predicted, true) entity counts over sentences; a predicted entity is correct
    when a true one has its type and both its boundaries. Entities never cross sentences."""
    counts: dict[str, list[int]] = {}
    for true_seq, pred_seq in zip(true_tags, pred_tags, strict=True):
        truth, predicted = set(entity_spans(true_seq)), set(entity_spans(pred_seq))
        for kind, *_ in truth:
            counts.setdefault(kind, [0, 0, 0])[2] += 1
        for entity in predicted:
            row = counts.setdefault(entity[0], [0, 0, 0])
            row[1] += 1
            row[0] += entity in truth
    return {kind: (c, p, t) for kind, (c, p, t) in sorted(counts.items())}


def total(counts: dict[str, tuple[int, int, int]]) -> tuple[int, int, int]:
    """(correct, predicted, true) over all types: what micro-averaged scores are computed from."""
    return (sum(c for c, _, _ in counts.values()), sum(p for _, p, _ in counts.values()),
            sum(t for _, _, t in counts.values()))


def precision_recall_f1(correct: int, predicted: int, true: int) -> tuple[float, float, float]:
    """Scores from entity counts; a ratio with nothing to divide by is 0 (as conlleval and seqeval report)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def decode_entities(tags: list[str], scores: list[float], spans: list[tuple[int, int]], text: str) -> list[Entity]:
    """Word tags -> entities (`entity_spans`) with character offsets: `spans[i]` is word i's [start, end) in
    `text`; an entity's score is the mean of its words' scores."""
    entities = []
    for kind, first, end in entity_spans(tags):
        start, stop = spans[first][0], spans[end - 1][1]
        entities.append(Entity(kind, text[start:stop], start, stop, float(np.mean(scores[first:end]))))
    return entities


@dataclass
class TextEncoding:
    """Raw texts encoded for tagging (`TokenClassification.encode_texts`): one network input per sentence, or
    per piece of a sentence too long for one input. Entities never cross sentences."""

    features: list[dict] = field(default_factory=list)  # network inputs, as `encode` makes them (no labels)
    text: list[int] = field(default_factory=list)  # per input: the index of the text it belongs to
    sentence: list[int] = field(default_factory=list)  # per input: its sentence (the pieces of one share it)
    positions: list[list[int]] = field(default_factory=list)  # per input: first sub-token of each tagged word
    spans: list[list[tuple[int, int]]] = field(default_factory=list)  # per input: those words' [start, end)


@TASKS.register("ner")
class TokenClassification(Task):
    name = "ner"
    kinds = (DataKind.TOKENS,)
    auto_class = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    default_head_init = "random"  # LP-FT was not measured for NER

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

    @classmethod
    def case_types_pay_off(cls, tokenizer, base: str) -> bool:
        return case_types_pay_off(tokenizer, base)

    def case_types(self, word_ids: list[int | None], cases: list[int] | dict[int, int]) -> list[int]:
        """Token types for one encoding: the case of each sub-token's word (`cases[word id]`), 0 elsewhere."""
        return [LOWER if wid is None else cases[wid] for wid in word_ids]

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

    def _encode_windows(self, examples: list[TokenExample], counts: dict[str, int]
                        ) -> tuple[list[dict], list[list[int]], list[list[int]], int]:
        """Network inputs for sentences, each with its document context (`_windows`), as training, evaluation
        and prediction all read them.

        Returns: the features (no labels), for each sentence the position of each of its words' first sub-token
        and the word each position belongs to, and how many sentences lost words to `max_length`.
        """
        windows = self._windows(examples, counts)
        enc = self.tokenizer([w for w, _ in windows], is_split_into_words=True, truncation=True,
                             max_length=self.max_length)
        features, positions, alignment, truncated = [], [], [], 0
        for i, (ex, (words_in, offset)) in enumerate(zip(examples, windows, strict=True)):
            word_ids = enc.word_ids(i)
            firsts, words = [], []
            previous = None
            for pos, wid in enumerate(word_ids):
                if wid is not None and offset <= wid < offset + len(ex.tokens) and wid != previous:
                    firsts.append(pos)
                    words.append(wid - offset)
                previous = wid
            # A word that tokenizes to nothing (e.g. a soft hyphen) has no position but was not cut off.
            kept = set(words)
            truncated += any(counts[w] and k not in kept for k, w in enumerate(ex.tokens))
            feature = {k: enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
            if self.case_features:
                feature["token_type_ids"] = self.case_types(word_ids, [word_case(w) for w in words_in])
            features.append(feature)
            positions.append(firsts)
            alignment.append(words)
        return features, positions, alignment, truncated

    def encode(self, data: LabeledData) -> Encoded:
        unknown = [
            DataIssue.at(ex.source, f"tag {tag!r} is not one of the model's tags {self.label_names}", offset=k)
            for ex in data.examples for k, tag in enumerate(ex.tags) if tag not in self.label2id
        ]
        if unknown:
            raise DataError(unknown, header=f"{data.path} has tags the model does not know")
        examples = data.examples
        features, positions, alignment, truncated = self._encode_windows(examples, self._subword_counts(examples))
        for feature, ex, firsts, words in zip(features, examples, positions, alignment, strict=True):
            labels = [IGNORE] * len(feature["input_ids"])
            for pos, word in zip(firsts, words, strict=True):
                labels[pos] = self.label2id[ex.tags[word]]
            feature["labels"] = labels
        return Encoded(features, truncated, alignment)

    def encode_texts(self, texts: Sequence[str]) -> TextEncoding:
        """Raw texts, each a document, encoded for tagging exactly as `encode` encodes a labeled file.

        Each text is split into sentences and each sentence into words as CoNLL splits them (`goldmine.data.
        segmentation`): they become the words of `TokenExample`s of one document per text. A sentence of more
        than `max_length` sub-tokens is first cut into pieces that fit.
        """
        sentences: list[tuple[int, list[tuple[int, int]]]] = []  # (text index, word spans in the text)
        for t, text in enumerate(texts):
            sentences += [(t, word_spans(text, a, b)) for a, b in sentence_spans(text)]
        whole = [TokenExample(tuple(texts[t][a:b] for a, b in words), (), t) for t, words in sentences]
        counts = self._subword_counts(whole)
        budget = self.max_length - self.tokenizer.num_special_tokens_to_add()
        out = TextEncoding()
        examples = []
        for s, ((t, words), ex) in enumerate(zip(sentences, whole, strict=True)):
            piece: list[int] = []
            used = 0
            for k, word in enumerate([*ex.tokens, None]):  # None: the end of the sentence closes the last piece
                if piece and (word is None or used + counts[word] > budget):
                    examples.append(TokenExample(tuple(ex.tokens[i] for i in piece), ("O",) * len(piece), t))
                    out.text.append(t)
                    out.sentence.append(s)
                    out.spans.append([words[i] for i in piece])
                    piece, used = [], 0
                if word is not None:
                    piece.append(k)
                    used += counts[word]
        out.features, out.positions, alignment, _ = self._encode_windows(examples, counts)
        out.spans = [[piece[w] for w in words] for piece, words in zip(out.spans, alignment, strict=True)]
        return out

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
        """Entity F1 of the labeled words, the headline figure `goldmine eval` and the parity gate report."""
        true_tags, pred_tags = [], []
        for pred_row, label_row in zip(predictions, label_ids, strict=True):
            keep = label_row != IGNORE
            true_tags.append([self.label_names[i] for i in label_row[keep]])
            pred_tags.append([self.label_names[i] for i in pred_row[keep]])
        return {"f1": precision_recall_f1(*total(entity_counts(true_tags, pred_tags)))[2]}

    @property
    def default_metric(self) -> str:
        return "f1"

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)

    def predict(self, model: Predictor, texts: list[str], texts_b: list[str] | None = None
                ) -> list[tuple[dict[str, Any], int]]:
        """Each text is a document: its sentences are tagged with their neighbours as context, as evaluation tags
        a labeled file (`encode_texts`), and entities come back with offsets into the text.

        The token count of a text is the sum of the input lengths of its sentences, special tokens and the
        neighbouring sentences read as context included: what the network ran on for it."""
        doc = self.encode_texts(texts)
        tags: list[list[str]] = [[] for _ in doc.features]
        scores: list[list[float]] = [[] for _ in doc.features]
        for idx, probs in model.iter_probabilities(doc.features):
            for i, p in zip(idx, probs, strict=True):
                word_probs = p[doc.positions[i]]  # (W, C): the first sub-token of each word of the sentence
                tags[i] = [self.label_names[best] for best in word_probs.argmax(-1)]
                scores[i] = word_probs.max(-1).tolist()
        entities: list[list[dict[str, Any]]] = [[] for _ in texts]
        tokens = [0] * len(texts)
        # The inputs of one sentence (several when it was cut into pieces) are next to each other.
        for _, group in groupby(range(len(doc.features)), key=lambda k: doc.sentence[k]):
            inputs = list(group)
            t = doc.text[inputs[0]]
            found = decode_entities([tag for k in inputs for tag in tags[k]], [x for k in inputs for x in scores[k]],
                                    [span for k in inputs for span in doc.spans[k]], texts[t])
            entities[t] += [asdict(e) for e in found]
            tokens[t] += sum(len(doc.features[k]["input_ids"]) for k in inputs)
        return [({"entities": found}, count) for found, count in zip(entities, tokens, strict=True)]

    def unit_probabilities(self, probs: np.ndarray, feature: dict) -> np.ndarray:
        """(W, C): the first sub-token of each labeled word, as `predict` reads it."""
        return probs[np.flatnonzero(np.asarray(feature["labels"]) != IGNORE)]

    def targets(self, feature: dict) -> np.ndarray:
        labels = np.asarray(feature["labels"])
        return labels[labels != IGNORE]  # (W,)

    def metrics(self, data: LabeledData, encoded: Encoded, decided: list[np.ndarray]) -> dict:
        """Entity scores of each sentence's tags; a word cut off at `max_length` counts as tagged "O"."""
        from goldmine.evaluation.metrics import entity_metrics  # it imports this module's conlleval rules

        pred_tags = []
        for ex, words, ids in zip(data.examples, encoded.alignment, decided, strict=True):
            tags = ["O"] * len(ex.tokens)
            for word, best in zip(words, ids, strict=True):
                tags[word] = self.label_names[best]
            pred_tags.append(tags)
        return entity_metrics([list(ex.tags) for ex in data.examples], pred_tags)

    def majority_metrics(self, train: LabeledData, test: LabeledData) -> dict:
        """Every word "O": no entity at all (entity F1 0)."""
        from goldmine.evaluation.metrics import entity_metrics

        truth = [list(ex.tags) for ex in test.examples]
        return entity_metrics(truth, [["O"] * len(tags) for tags in truth])

    def base_model_inputs(self, batch: dict) -> dict:
        """Single sequences with token type 0 throughout, as the base model read them: case types are rows its
        token-type table does not have."""
        return {k: v for k, v in batch.items() if k != "token_type_ids"}

    def probe_vectors(self, hidden: torch.Tensor, attention_mask: torch.Tensor, pooler: torch.Tensor | None,
                      feature: dict, pooling: str) -> np.ndarray:
        positions = np.flatnonzero(np.asarray(feature["labels"]) != IGNORE)
        return hidden[positions].float().numpy()  # (W, H)

    def probe_classifier(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=300, C=1.0)
