"""Tagging schemes: detection, normalisation to IOB2, and dangling I- tags."""

from __future__ import annotations

import pytest

from goldmine.data.tags import Scheme, dangling_inside, detect_scheme, is_valid_tag, split_tag, to_iob2


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        # an I- that opens an entity becomes B-, a continuation stays I-
        (["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
        # B- in IOB1 separates two adjacent entities of the same type and stays B-
        (["I-PER", "B-PER", "I-PER"], ["B-PER", "B-PER", "I-PER"]),
        # a change of type opens a new entity
        (["I-PER", "I-ORG"], ["B-PER", "B-ORG"]),
        (["O", "O"], ["O", "O"]),
        ([], []),
    ],
)
def test_iob1_to_iob2(tags, expected):
    assert to_iob2(tags, Scheme.IOB1) == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-PER", "E-PER", "O", "S-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
        (["B-ORG", "I-ORG", "E-ORG"], ["B-ORG", "I-ORG", "I-ORG"]),
        (["S-PER", "S-PER"], ["B-PER", "B-PER"]),
        # BILOU spellings: U- is a single, L- the last token
        (["U-MISC", "B-LOC", "L-LOC"], ["B-MISC", "B-LOC", "I-LOC"]),
    ],
)
def test_bioes_to_iob2(tags, expected):
    assert to_iob2(tags, Scheme.BIOES) == expected


def test_iob2_is_unchanged_except_dangling_inside_tags():
    valid = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert to_iob2(valid, Scheme.IOB2) == valid
    assert to_iob2(["O", "I-PER", "I-PER", "B-LOC", "I-ORG"], Scheme.IOB2) == ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"]


@pytest.mark.parametrize(
    ("sentences", "expected"),
    [
        ([["B-PER", "I-PER", "O"], ["O", "B-LOC"]], Scheme.IOB2),
        ([["O", "O"]], Scheme.IOB2),
        ([], Scheme.IOB2),
        ([["B-PER", "I-PER"], ["I-LOC", "O"]], Scheme.IOB1),
        ([["B-PER", "I-LOC"]], Scheme.IOB1),
        ([["B-PER", "E-PER"]], Scheme.BIOES),
        ([["O"], ["S-LOC"]], Scheme.BIOES),
        ([["U-LOC"]], Scheme.BIOES),
        ([["B-LOC", "L-LOC"]], Scheme.BIOES),
        # E/S wins over a dangling I-: BIOES files are recognised even when they also look like IOB1
        ([["I-PER"], ["S-PER"]], Scheme.BIOES),
    ],
)
def test_detect_scheme(sentences, expected):
    assert detect_scheme(sentences) is expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-PER", "I-PER", "I-PER"], []),
        (["I-PER"], [0]),
        (["O", "I-PER", "I-PER"], [1]),
        (["B-PER", "I-LOC", "I-LOC"], [1]),
        (["B-PER", "O", "I-PER", "B-LOC", "I-LOC", "I-ORG"], [2, 5]),
        ([], []),
    ],
)
def test_dangling_inside(tags, expected):
    assert dangling_inside(tags) == expected


@pytest.mark.parametrize(
    ("tag", "valid"),
    [("O", True), ("B-PER", True), ("I-LOC", True), ("E-X", True), ("S-X", True), ("U-X", True), ("L-X", True),
     ("PER", False), ("X-PER", False), ("B-", False), ("B_PER", False), ("b-per", False), ("", False),
     ("O-PER", False)],
)
def test_is_valid_tag(tag, valid):
    assert is_valid_tag(tag) is valid


def test_split_tag():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-WORK_OF_ART") == ("I", "WORK_OF_ART")
    assert split_tag("B-A-B") == ("B", "A-B")
    assert split_tag("O") == ("O", "")
