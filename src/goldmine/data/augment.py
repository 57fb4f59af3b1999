"""Training-data augmentation on request: label-preserving edits of real examples, seeded and counted.

Only the train split is ever augmented (the trainer applies it after the split and the leakage check), so dev
and test stay real. Every new example is a copy of one original with one edit, carries `augmented:` in its
source, and is never an exact duplicate of any example already there.

Text (classification, multi-label, pairs: only the first text is edited):
    typo     one word of 4+ letters gets a keyboard slip: two letters swapped, one dropped or doubled, or a
             neighbouring key hit; customers type like this, and the sub-word tokenizer splits such words apart
    swap     two words trade places
    delete   one word goes (sentences of 4+ words only)
Tokens (NER):
    mention  one entity mention is replaced by another mention of the same type from the data, with its tags
             rewritten (B- then I-), so the tagger sees entities in contexts they never appeared in
    typo     a keyboard slip in one word (its tag is kept)
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from goldmine.data.schema import AUGMENTED, DataKind, LabeledData, TokenExample
from goldmine.errors import ConfigError

TEXT_OPS = ("typo", "swap", "delete")
TOKEN_OPS = ("mention", "typo")
KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
MAX_TRIES = 20  # edits that produce a duplicate (or cannot apply) are retried with another draw


def _neighbours() -> dict[str, str]:
    """Keys next to each letter on a QWERTY keyboard (same row and the rows above and below)."""
    where = {c: (r, i) for r, row in enumerate(KEYBOARD) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in where.items():
        near = [KEYBOARD[rr][j] for rr in (r - 1, r, r + 1) if 0 <= rr < len(KEYBOARD)
                for j in (i - 1, i, i + 1) if 0 <= j < len(KEYBOARD[rr]) and (rr, j) != (r, i)]
        out[c] = "".join(near)
    return out


NEIGHBOURS = _neighbours()


def typo(word: str, rng: random.Random) -> str:
    """One keyboard slip inside `word` (its first letter is kept: readers and tokenizers lean on it)."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("swap", "drop", "double", "neighbour"))
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    near = NEIGHBOURS.get(word[i].lower())
    if not near:
        return word
    key = rng.choice(near)
    return word[:i] + (key.upper() if word[i].isupper() else key) + word[i + 1:]


def _edit_words(words: list[str], op: str, rng: random.Random) -> list[str] | None:
    """`words` with one edit, or None when `op` does not apply to them."""
    words = list(words)
    if op == "typo":
        candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if not candidates:
            return None
        i = rng.choice(candidates)
        words[i] = typo(words[i], rng)
    elif op == "swap":
        if len(words) < 2:
            return None
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    elif op == "delete":
        if len(words) < 4:
            return None
        del words[rng.randrange(len(words))]
    return words


def check_ops(kind: DataKind, ops: Sequence[str]) -> list[str]:
    """The ops to use for data of `kind` (all of its kind when `ops` is empty); raises on ones it cannot use."""
    allowed = TOKEN_OPS if kind is DataKind.TOKENS else TEXT_OPS
    unknown = [op for op in ops if op not in allowed]
    if unknown:
        raise ConfigError(f"data.augment.ops: {', '.join(unknown)} cannot augment {kind.value} data; "
                          f"choose from {', '.join(allowed)}")
    return list(ops) or list(allowed)


def augment(data: LabeledData, factor: float, ops: Sequence[str] = (), seed: int = 13) -> LabeledData:
    """`data` plus round(factor x len(data)) edited copies of its examples, fewer only when no example can take
    another distinct edit; factor 0 returns `data` itself."""
    if factor < 0:
        raise ConfigError(f"data.augment.factor: must be 0 or more, got {factor}")
    if factor == 0 or not len(data):
        return data
    ops = check_ops(data.kind, ops)
    rng = random.Random(seed)
    wanted = round(factor * len(data))
    seen = {_key(ex) for ex in data.examples}
    mentions = _mentions(data) if data.kind is DataKind.TOKENS else {}
    next_document = max((ex.document for ex in data.examples), default=0) + 1 if data.kind is DataKind.TOKENS else 0
    order = list(range(len(data)))
    rng.shuffle(order)  # every example gets its turn before any gets a second copy
    added: list = []
    turn, misses = 0, 0
    while len(added) < wanted and misses < len(order):  # stop after a full round in which nothing could be edited
        original = data.examples[order[turn % len(order)]]
        turn += 1
        new = _one_edit(original, data.kind, ops, mentions, rng, seen)
        if new is None:
            misses += 1
            continue
        misses = 0
        if data.kind is DataKind.TOKENS:
            new = replace(new, document=next_document + len(added))  # on its own: no false document context
        seen.add(_key(new))
        added.append(new)
    return LabeledData(data.kind, [*data.examples, *added], data.path, data.multi_label)


def _one_edit(original, kind: DataKind, ops: list[str], mentions: dict, rng: random.Random, seen: set):
    """An edited copy of `original` that is not in `seen`, or None when MAX_TRIES draws give none."""
    for _ in range(MAX_TRIES):
        op = rng.choice(ops)
        if kind is DataKind.TOKENS:
            new = _edit_sentence(original, op, mentions, rng)
        else:
            words = _edit_words(original.text.split(), op, rng)
            new = replace(original, text=" ".join(words)) if words else None
        if new is not None and _key(new) not in seen:
            return replace(new, source=f"{AUGMENTED}{op}:{original.source}")
    return None


def _key(ex) -> tuple:
    return (ex.tokens, ex.tags) if isinstance(ex, TokenExample) else (ex.text, ex.text_b, ex.labels)


def entity_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, type) of each entity in IOB2 tags."""
    spans, start = [], None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not tag.startswith("I-"):
            spans.append((start, i, tags[start][2:]))
            start = None
        if tag.startswith("B-"):
            start = i
    return spans


def _mentions(data: LabeledData) -> dict[str, list[tuple[str, ...]]]:
    """Distinct mentions (as word tuples) of each entity type in the data."""
    found: dict[str, set] = defaultdict(set)
    for ex in data.examples:
        for start, end, kind in entity_spans(ex.tags):
            found[kind].add(ex.tokens[start:end])
    return {kind: sorted(words) for kind, words in found.items()}


def _edit_sentence(ex: TokenExample, op: str, mentions: dict, rng: random.Random) -> TokenExample | None:
    if op == "typo":
        candidates = [i for i, w in enumerate(ex.tokens) if len(w) >= 4 and w.isalpha()]
        if not candidates:
            return None
        i = rng.choice(candidates)
        return replace(ex, tokens=(*ex.tokens[:i], typo(ex.tokens[i], rng), *ex.tokens[i + 1:]))
    spans = entity_spans(ex.tags)
    if not spans:
        return None
    start, end, kind = rng.choice(spans)
    other = rng.choice(mentions[kind])
    tags = (f"B-{kind}", *(f"I-{kind}",) * (len(other) - 1))
    return replace(ex, tokens=(*ex.tokens[:start], *other, *ex.tokens[end:]),
                   tags=(*ex.tags[:start], *tags, *ex.tags[end:]))

