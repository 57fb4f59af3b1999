"""Tagging schemes for token classification: recognise IOB1 / IOB2 / BIOES and normalise to IOB2.

Everything after the readers sees IOB2 only, which is what seqeval's strict mode scores.
"""

from __future__ import annotations

import re
from enum import StrEnum

TAG_PATTERN = re.compile(r"^(?:O|[BIESLU]-\S+)$")


class Scheme(StrEnum):
    AUTO = "auto"
    IOB1 = "iob1"
    IOB2 = "iob2"
    BIOES = "bioes"


def split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '')."""
    return ("O", "") if tag == "O" else (tag[0], tag[2:])


def is_valid_tag(tag: str) -> bool:
    return bool(TAG_PATTERN.match(tag))


def detect_scheme(sentences: list[list[str]]) -> Scheme:
    """Guess the scheme of a whole file: BIOES if E/S/L/U prefixes occur, IOB1 if an entity starts with I-."""
    starts_with_i = False
    for tags in sentences:
        previous = "O"
        for tag in tags:
            prefix, kind = split_tag(tag)
            if prefix in "ESLU" and prefix != "O":
                return Scheme.BIOES
            if prefix == "I":
                prev_prefix, prev_kind = split_tag(previous)
                if prev_prefix == "O" or prev_kind != kind:
                    starts_with_i = True
            previous = tag
    return Scheme.IOB1 if starts_with_i else Scheme.IOB2


def dangling_inside(tags: list[str]) -> list[int]:
    """Positions of I- tags that continue no entity (not preceded by B-/I- of the same type)."""
    bad = []
    previous = "O"
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "I":
            prev_prefix, prev_kind = split_tag(previous)
            if prev_prefix not in ("B", "I") or prev_kind != kind:
                bad.append(i)
        previous = tag
    return bad


def to_iob2(tags: list[str], scheme: Scheme) -> list[str]:
    """Rewrite one sentence's tags from `scheme` into IOB2.

    IOB1: an I- that opens an entity becomes B-. BIOES: S- becomes B-, E- becomes I- (L/U are
    the BILOU spellings of E/S). IOB2 input is repaired the same lenient way as IOB1, which
    only changes dangling I- tags (strict validation rejects those before we get here).
    """
    out: list[str] = []
    previous = "O"
    for tag in tags:
        prefix, kind = split_tag(tag)
        if scheme is Scheme.BIOES:
            new = {"S": "B", "U": "B", "E": "I", "L": "I"}.get(prefix, prefix)
            out.append("O" if new == "O" else f"{new}-{kind}")
        elif prefix == "I":
            prev_prefix, prev_kind = split_tag(previous)
            opens = prev_prefix == "O" or prev_kind != kind
            out.append(f"B-{kind}" if opens else tag)
        else:
            out.append(tag)
        previous = tag
    return out
