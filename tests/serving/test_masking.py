"""Masking of personal data in request logs."""

from __future__ import annotations

import pytest

from goldmine.serving.masking import describe_inputs, mask


@pytest.mark.parametrize(("text", "expected"), [
    ("mail me at jane.doe+shop@example.co.uk please", "mail me at <email> please"),
    ("card 4111 1111 1111 1111 was charged twice", "card <card> was charged twice"),
    ("card 4111-1111-1111-1111 exp 12/29", "card <card> exp 12/29"),
    ("pay to DE89 3704 0044 0532 0130 00 today", "pay to <iban> today"),
    ("pay to DE89370400440532013000", "pay to <iban>"),
    ("my SSN is 078-05-1120", "my SSN is <id>"),
    ("call +49 30 1234567 or (030) 123-4567", "call <phone> or <phone>"),
    ("call 555-123-4567 now", "call <phone> now"),
    ("order GM-12345 is late", "order GM-<number> is late"),
    ("where is my parcel? 2 items, 3 days late", "where is my parcel? 2 items, 3 days late"),
])
def test_mask(text, expected):
    assert mask(text) == expected


def test_logs_hold_no_text_unless_enabled():
    texts = ["write to bob@example.com", "hello"]
    assert describe_inputs(texts, log_raw=False) == {"n_texts": 2, "chars": [24, 5]}
    fields = describe_inputs(texts, log_raw=True)
    assert fields["texts"] == ["write to <email>", "hello"]
    assert "bob@example.com" not in str(fields)


def test_the_patterns_are_public():
    from goldmine.serving.masking import PATTERNS, pattern

    assert [token for token, _ in PATTERNS] == ["<email>", "<iban>", "<card>", "<id>", "<phone>", "<number>"]
    assert pattern("<email>").search("write to bob@example.com").group() == "bob@example.com"
    with pytest.raises(KeyError):
        pattern("<name>")
