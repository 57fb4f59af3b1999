"""The in-memory form of labeled data, shared by every reader, validator and task.

Readers turn files into these records; nothing downstream looks at file formats again.
Every record remembers where it came from (`source` = "path:line") so later checks can
point at the exact line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

AUGMENTED = "augmented:"  # prefix of the `source` of an example made by `goldmine.data.augment`


class DataKind(StrEnum):
    """What a file holds; decides which tasks can use it."""

    TEXT = "text"  # text + one or more labels
    PAIR = "pair"  # text_a + text_b + label
    TOKENS = "tokens"  # token sequence + one tag per token (NER)
    CHAT = "chat"  # a conversation (system, user, assistant turns) that ends with the assistant's reply


@dataclass(frozen=True)
class TextExample:
    """A text (or a text pair) with its label(s). Single-label data has exactly one label."""

    text: str
    labels: tuple[str, ...]
    text_b: str | None = None
    source: str = ""


@dataclass(frozen=True)
class TokenExample:
    """A sentence as words with one IOB2 tag per word.

    `document` counts `-DOCSTART-` boundaries in the file (0 when the file has none), so
    sentences of the same document can be given to the model as context.
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    document: int = 0
    source: str = ""

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass(frozen=True)
class ChatExample:
    """A conversation for supervised fine-tuning of a decoder: (role, content) turns ending with the assistant.

    The reply the model learns is every assistant turn; the rest is the prompt it reads (see
    `goldmine.data.chat` for the rules a conversation must follow)."""

    messages: tuple[tuple[str, str], ...]
    source: str = ""
    labels: tuple[str, ...] = ()  # a conversation has no class labels
    text_b: ClassVar[None] = None  # nor a second text: what code reading any text example may ask

    @property
    def text(self) -> str:
        """The last user turn: what a person asked (for reports and length statistics)."""
        return next((content for role, content in reversed(self.messages) if role == "user"), "")

    def as_dicts(self) -> list[dict[str, str]]:
        """The messages as chat templates take them: [{"role": ..., "content": ...}, ...]."""
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class LabeledData:
    """The records of one file (or one split of it), with the kind that decides their meaning."""

    kind: DataKind
    examples: list = field(default_factory=list)  # list[TextExample] | list[TokenExample] | list[ChatExample]
    path: str = "<memory>"
    multi_label: bool = False

    def __len__(self) -> int:
        return len(self.examples)

    def label_counts(self) -> Counter:
        """Counts of labels (classification) or of entity types, by B- tags (NER)."""
        counts: Counter = Counter()
        if self.kind is DataKind.TOKENS:
            for ex in self.examples:
                counts.update(tag[2:] for tag in ex.tags if tag.startswith("B-"))
        else:
            for ex in self.examples:
                counts.update(ex.labels)
        return counts

    def label_names(self) -> list[str]:
        """Sorted label vocabulary: class names, or the IOB2 tag set (O first) for NER."""
        if self.kind is DataKind.TOKENS:
            types = sorted({tag[2:] for ex in self.examples for tag in ex.tags if tag != "O"})
            return ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]
        return sorted({label for ex in self.examples for label in ex.labels})

    def subset(self, indices) -> LabeledData:
        return LabeledData(self.kind, [self.examples[i] for i in indices], self.path, self.multi_label)
