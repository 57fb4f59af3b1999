"""Raw text -> sentences -> words, so a client's document can be tagged as a labeled file is.

Why: an NER model is trained on CoNLL-style sentences of words, each sentence encoded with neighbouring sentences
of its document as context (`tasks.token_classification`), each word's tag read from its first sub-token. A
document sent for tagging has to be cut the same way before it can be read the same way: tagged as one long input
it would differ from what was measured and be cut at `max_length`, and words cut differently from the training
data put tags at positions the model was never trained to read (the tokenizer's own pre-tokenizer splits "U.S."
into four words, where CoNLL has one).

Sentences: a line break always ends one (CoNLL-style text, lists, titles and addresses are one per line); within a
line, syntok's rule-based segmenter finds the boundaries (it knows abbreviations such as "Mr." and "U.S." and
keeps offsets into the text). sentencex was tried first: it is more recently released, but its Rust core panics
on some text with non-breaking spaces (4 of 2,000 random strings), which a server cannot afford. Of the 3,250
CoNLL-2003 dev sentences, each a line of its tokens, 3,185 stay one sentence (most of the rest are cut before a
parenthesis the line leaves open).

Words: the Penn-Treebank-style tokenization CoNLL was made with, by a few rules: whitespace separates words, and
punctuation at either end of a word is a word of its own, except where it belongs to the word: the dot of an
abbreviation or initial ("U.S.", "S.", "Corp.", "Oct."), of a numbered item ("3."), a decimal point (".496"), a
clitic ("'s", split off "Anna's" as its own word), a currency prefix ("C$"), and a word of punctuation only
("--", "..."). On the CoNLL-2003 dev set, its tokens joined by spaces come back as the same tokens in 3,218 of
3,250 sentences (the rest differ in signed numbers such as "+48").
"""

from __future__ import annotations

import re
import unicodedata

from syntok.segmenter import analyze

_LINE = re.compile(r"[^\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")  # what str.splitlines() treats as line breaks
_CHUNK = re.compile(r"\S+")
_ELLIPSIS = re.compile(r"(?:\.\.+|…)$")
_CLITIC = re.compile(r"['’](?:s|S|m|M|d|D|ll|LL|re|RE|ve|VE)$")
# Words whose final dot is part of them: titles, company forms, months, and the like.
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "inc", "corp", "co", "ltd", "bros", "plc", "vs", "mt", "ft", "gen",
    "col", "lt", "sgt", "capt", "gov", "sen", "rep", "prof", "rev", "messrs",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character offsets of each sentence of `text`, in order, whitespace trimmed, none empty.

    Each sentence runs from its first token to the next sentence's first token, trimmed, so the sentences plus the
    whitespace between them are exactly the text. Punctuation alone (a closing quote syntok set apart) stays with
    the sentence before it on its line."""
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(text):
        content = line.group()
        starts = [sentence[0].offset for paragraph in analyze(content) for sentence in paragraph if sentence]
        starts = [0, *starts[1:]]  # the first sentence owns anything before its first token
        first_of_line = len(spans)
        for start, end in zip(starts, [*starts[1:], len(content)], strict=True):
            piece = content[start:end]
            if not piece.strip():
                continue
            first = line.start() + start + len(piece) - len(piece.lstrip())
            if len(spans) > first_of_line and not any(c.isalnum() for c in piece):  # a closing quote, a bracket
                spans[-1] = (spans[-1][0], first + len(piece.strip()))
            else:
                spans.append((first, first + len(piece.strip())))
    return spans


def is_punctuation(char: str) -> bool:
    """ASCII non-alphanumeric symbols and Unicode punctuation: what BERT's pre-tokenizer splits off."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def word_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """[start, end) offsets of the words of `text[start:end]` (see the module docstring for the rules)."""
    words: list[tuple[int, int]] = []
    for chunk in _CHUNK.finditer(text, start, len(text) if end is None else end):
        a, b = chunk.span()
        if all(is_punctuation(c) for c in text[a:b]):
            words.append((a, b))
            continue
        lead, trail = [], []
        while b - a > 1 and is_punctuation(text[a]):
            rest = text[a + 1 : b]
            if (text[a] in "'’" and _CLITIC.match(text[a:b])) or (text[a] == "." and rest[0].isdigit()):
                break
            lead.append((a, a + 1))
            a += 1
        if (dots := _ELLIPSIS.search(text, a, b)) and dots.start() > a:  # "wait..." -> wait ...
            trail.append((dots.start(), b))
            b = dots.start()
        if (clitic := _CLITIC.search(text, a, b)) and clitic.start() > a and clitic.end() == b:
            trail.append((clitic.start(), b))
            b = clitic.start()
        while b - a > 1 and is_punctuation(text[b - 1]):
            core = text[a : b - 1]
            if text[b - 1] == "." and ("." in core or core.isdigit() or core.lower() in ABBREVIATIONS
                                       or (len(core) == 1 and core.isalpha())):
                break
            if text[b - 1] == "$" and core.isalpha() and core.isupper():
                break
            trail.append((b - 1, b))
            b -= 1
        words += [*lead, (a, b), *trail[::-1]]
    return words
