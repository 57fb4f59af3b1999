"""What request logs may say about input text: sizes only, or (with `log_raw_inputs`) the text with PII masked.

Masking errs on the side of hiding: any run of 13-19 digits (spaces or dashes between groups allowed) is a
card number, whether or not its checksum is valid; IBANs and SSN-style ids are ids; phone-like sequences of
7-15 digits are phones; any other run of 5+ digits (order, account, passport numbers) is a number.

`PATTERNS` and `pattern(token)` are public so that other maskers (the medical FAQ's `PiiMasker`) reuse these
tested expressions instead of copying them: a fix here reaches every masker.
"""

from __future__ import annotations

import re

PATTERNS: tuple[tuple[str, re.Pattern], ...] = (  # (placeholder, expression); order matters: most specific first
    ("<email>", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("<iban>", re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")),
    ("<card>", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")),
    ("<id>", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("<phone>", re.compile(r"(?<![\w+])\+?\(?\d(?:[\s().-]{0,2}\d){6,14}(?!\d)")),
    ("<number>", re.compile(r"\d{5,}")),
)


def pattern(token: str) -> re.Pattern:
    """The expression behind one placeholder of `PATTERNS` (`"<email>"`, `"<iban>"`, `"<card>"`, `"<id>"`,
    `"<phone>"`, `"<number>"`); KeyError for another token."""
    return dict(PATTERNS)[token]


def mask(text: str) -> str:
    """`text` with e-mail addresses, card numbers, IBAN/ID numbers, phone numbers and long numbers replaced."""
    for token, expression in PATTERNS:
        text = expression.sub(token, text)
    return text


def describe_inputs(texts: list[str], log_raw: bool, texts_b: list[str] | None = None) -> dict:
    """The log fields for a call's texts: counts and lengths, plus masked texts only when `log_raw` is on."""
    fields: dict = {"n_texts": len(texts), "chars": [len(t) for t in texts]}
    if texts_b is not None:
        fields["chars_b"] = [len(t) for t in texts_b]
    if log_raw:
        fields["texts"] = [mask(t) for t in texts]
        if texts_b is not None:
            fields["texts_b"] = [mask(t) for t in texts_b]
    return fields
