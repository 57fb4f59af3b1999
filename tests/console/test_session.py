"""Console session cookies: signed, expiring, tamper-evident, and a secret made once and kept owner-only."""

from __future__ import annotations

import stat
import time

from goldmine.console.session import SECRET_FILE, decode, encode, load_secret, same_token
from goldmine.serving.settings import load_settings


def test_a_cookie_decodes_only_with_its_secret_and_before_it_expires():
    cookie = encode(b"s" * 32, "abc123", "token")
    assert decode(b"s" * 32, cookie, 60) == ("abc123", "token")
    assert decode(b"t" * 32, cookie, 60) is None  # another server's secret
    body, _, signature = cookie.partition(".")
    assert decode(b"s" * 32, body + "." + signature[:-1] + ("A" if signature[-1] != "A" else "B"), 60) is None
    assert decode(b"s" * 32, "not-a-cookie", 60) is None and decode(b"s" * 32, "", 60) is None
    old = encode(b"s" * 32, "abc123", "token", issued=time.time() - 120)
    assert decode(b"s" * 32, old, 60) is None  # expired


def test_the_secret_is_made_once_owner_only_or_taken_from_the_settings(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    first = load_secret(settings)
    assert len(first) == 64 and load_secret(settings) == first
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert load_secret(load_settings(data_dir=tmp_path, console={"secret": "shared-by-replicas"})) == \
        b"shared-by-replicas"


def test_csrf_tokens_must_be_present_and_equal():
    assert same_token("abc", "abc")
    assert not same_token("abc", "abd") and not same_token("", "") and not same_token(None, "abc")
