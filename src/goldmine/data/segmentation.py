"""Raw text -> sentence spans, so a whole document can be tagged sentence by sentence.

Why: an NER model is trained on sentences, each encoded with neighbouring sentences of its document as context
(`tasks.token_classification`). A client's document has to be cut into sentences before it can be tagged that
way; tagging it as one long input would both differ from what was measured and be cut at `max_length`.

Rules: a line break always ends a sentence (CoNLL-style text, lists, titles and addresses are one per line);
within a line, syntok's rule-based segmenter finds the boundaries (it knows abbreviations such as "Mr." and
"U.S." and keeps offsets into the text). sentencex was tried first: it is more recently released, but its
Rust core panics on some text with non-breaking spaces (4 of 2,000 random strings), which a server cannot
afford; syntok split all of them. Each sentence runs from its first token to the next sentence's first token,
trimmed of whitespace, so the sentences plus the whitespace between them are exactly the text.
"""

from __future__ import annotations

import re

from syntok.segmenter import analyze

_LINE = re.compile(r"[^\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")  # what str.splitlines() treats as line breaks


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character offsets of each sentence of `text`, in order, whitespace trimmed, none empty."""
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(text):
        content = line.group()
        starts = [sentence[0].offset for paragraph in analyze(content) for sentence in paragraph if sentence]
        starts = [0, *starts[1:]]  # the first sentence owns anything before its first token
        for start, end in zip(starts, [*starts[1:], len(content)], strict=True):
            piece = content[start:end]
            if piece.strip():
                first = line.start() + start + len(piece) - len(piece.lstrip())
                spans.append((first, first + len(piece.strip())))
    return spans
