"""Raw text -> sentences -> words, as NER requests are cut before tagging."""

from __future__ import annotations

import random

import pytest

from goldmine.data.segmentation import sentence_spans, word_spans


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def words(text: str) -> list[str]:
    return [text[a:b] for a, b in word_spans(text)]


def test_line_breaks_always_end_a_sentence_and_sentence_ends_do_within_a_line():
    text = "Mr. Smith went to the U.S. yesterday. He met Dr. Jones!\nPETER BLACKBURN\r\n\n  BRUSSELS 1996-08-22 "
    assert sentences(text) == ["Mr. Smith went to the U.S. yesterday.", "He met Dr. Jones!", "PETER BLACKBURN",
                               "BRUSSELS 1996-08-22"]
    assert sentences("") == sentences(" \n\t ") == []
    # a closing quote that syntok sets apart at the end of a line stays with its sentence
    assert sentences('Then he left .\nHe said : " I am here . "') == ["Then he left .", 'He said : " I am here . "']


def test_sentences_cover_every_character_but_whitespace_once():
    rng = random.Random(0)
    alphabet = [*"abc DEF.!?\"'()ü日\t;:-\n", "Mr. ", "U.S. ", "...", " e.g. ", "\u00a0", "\u2028", " 5 p.m. "]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        spans = sentence_spans(text)
        covered = [0] * len(text)
        for a, b in spans:
            assert b > a and text[a:b] == text[a:b].strip()
            for k in range(a, b):
                covered[k] += 1
        assert spans == sorted(spans)
        assert all(n == 1 for n, c in zip(covered, text, strict=True) if not c.isspace()), repr(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("I live in Paris.", ["I", "live", "in", "Paris", "."]),
    ("the U.S. and S. Waugh of Acme Corp. on Oct. 3.", ["the", "U.S.", "and", "S.", "Waugh", "of", "Acme", "Corp.",
                                                        "on", "Oct.", "3."]),
    ("Anna's (Reuters) \"Really?\" wait...", ["Anna", "'s", "(", "Reuters", ")", '"', "Really", "?", '"', "wait",
                                             "..."]),
    ("O'Brien 1996-08-22 Nagorno-Karabakh C$ .496 'm -- I said no.", [
        "O'Brien", "1996-08-22", "Nagorno-Karabakh", "C$", ".496", "'m", "--", "I", "said", "no", "."]),
])
def test_words_are_split_as_conll_splits_them(text, expected):
    assert words(text) == expected


def test_words_of_part_of_a_text_keep_offsets_into_the_text():
    text = "One. Anna lives in Hamburg."
    (_, second) = sentence_spans(text)
    assert word_spans(text, *second) == [(5, 9), (10, 15), (16, 18), (19, 26), (26, 27)]
