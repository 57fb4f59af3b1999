"""Entities in a customer's message (order numbers, amounts, dates, e-mails, phones, names), and the message with
its personal data masked for storage.

Patterns find the structured entities, whose shapes are regular enough that a regex is both exact and cheap; names
are not, so they come from an NER model when the config names one. The same spans drive masking: what the
assistant recognised as an order number, e-mail, phone or name is replaced by `<type>` before a message reaches the
database, and `goldmine.serving.masking.mask` (cards, IBANs, phones, long numbers) runs over the rest, so a shape
the patterns missed is still hidden. Amounts and dates are kept: they are what an agent reviewing a conversation
needs, and identify nobody on their own (so the text between entities is masked, the amounts and dates
found are not).
"""

from __future__ import annotations

import re

from goldmine.serving.masking import mask

_MONTHS = ("jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|"
           "sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?")
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"

PATTERNS: list[tuple[str, re.Pattern]] = [  # order matters: earlier spans win over overlapping later ones
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("order_number", re.compile(r"(?<![\w#])#\d{3,}\b|\b[A-Z]{2,4}-\d{3,}\b|(?<=order )(?:number |no\.? |nr\.? )?"
                                r"\d{4,}\b|(?<=order #)\d{3,}\b", re.IGNORECASE)),
    ("amount", re.compile(r"(?:[$€£]\s?\d+(?:[.,]\d{1,2})?|\b\d+(?:[.,]\d{1,2})?\s?(?:usd|eur|gbp|dollars?|euros?|"
                          r"pounds?)\b)", re.IGNORECASE)),
    ("date", re.compile(rf"\b\d{{4}}-\d{{2}}-\d{{2}}\b|\b\d{{1,2}}/\d{{1,2}}/\d{{2,4}}\b|"
                        rf"\b(?:{_MONTHS})\.? \d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)? (?:of )?"
                        rf"(?:{_MONTHS})\b|\b(?:on |last |next )?(?:{_DAYS})\b|\b(?:yesterday|today|tomorrow)\b|"
                        rf"\b(?:last|next) (?:week|month)\b|\bon the \d{{1,2}}(?:st|nd|rd|th)\b", re.IGNORECASE)),
    ("phone", re.compile(r"(?<![\w+#-])(?<!\d\s)\+?\(?\d(?:[\s().-]{0,2}\d){6,14}(?![\d-]|\s\d)")),
]
MASKED_TYPES = ("email", "order_number", "phone", "name")


def pattern_entities(text: str) -> list[dict]:
    """Every pattern match as `{type, text, start, end}`, in text order, overlapping matches dropped."""
    found: list[dict] = []
    for kind, pattern in PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if kind == "order_number" and text[start] == " ":
                start += 1
            if not any(start < e["end"] and e["start"] < end for e in found):
                found.append({"type": kind, "text": text[start:end], "start": start, "end": end})
    return sorted(found, key=lambda e: e["start"])


def ner_entities(predicted: list[dict], types: dict[str, str]) -> list[dict]:
    """An NER model's entities (`{type, text, start, end, ...}`) mapped to the assistant's types; others dropped."""
    return [{"type": types[e["type"]], "text": e["text"], "start": int(e["start"]), "end": int(e["end"])}
            for e in predicted if e.get("type") in types]


def merge(first: list[dict], second: list[dict]) -> list[dict]:
    """`first` plus the entities of `second` that overlap none of it, in text order."""
    out = list(first)
    for entity in second:
        if not any(entity["start"] < e["end"] and e["start"] < entity["end"] for e in out):
            out.append(entity)
    return sorted(out, key=lambda e: e["start"])


def mask_message(text: str, entities: list[dict]) -> str:
    """`text` with the personal entities (e-mails, order numbers, phones, names) replaced by `<type>`, and
    `serving.masking.mask` over the text between entities (amounts and dates found are kept as they are)."""
    out, last = [], 0
    for entity in sorted(entities, key=lambda e: e["start"]):
        if entity["start"] < last:
            continue
        kept = entity["type"] not in MASKED_TYPES
        shown = text[entity["start"]:entity["end"]] if kept else f"<{entity['type']}>"
        out += [mask(text[last:entity["start"]]), shown]
        last = entity["end"]
    out.append(mask(text[last:]))
    return "".join(out)
