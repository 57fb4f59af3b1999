"""API keys: shown once, only a salted hash stored, constant-time checks, scopes, revocation."""

from __future__ import annotations

import pytest

from goldmine.errors import ConfigError
from goldmine.serving.auth import authenticate, create_key, list_keys, revoke_key
from goldmine.serving.db import ApiKey, Tenant
from goldmine.serving.errors import Forbidden, NotFound, Unauthorized


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_create_and_authenticate(db):
    created = create_key(db, "acme", "predict,admin", rate=5, monthly_quota=1000, plan="default")
    prefix, key_id, secret = created.key.split("_", 2)
    assert prefix == "gm" and key_id == created.info.id and len(secret) >= 40
    info = authenticate(db, created.key)
    assert info == created.info
    assert (info.tenant, info.scopes, info.rate, info.monthly_quota) == ("acme", {"predict", "admin"}, 5, 1000)
    with db.session() as s:
        row = s.get(ApiKey, key_id)
        assert secret not in (row.secret_hash, row.salt) and len(row.salt) == 32
        assert s.get(Tenant, "acme").plan == "default"


def test_raw_key_is_nowhere_in_the_database_file(db, settings):
    key = create_key(db, "acme", "predict").key
    db.dispose()
    secret = key.split("_", 2)[2].encode()
    files = list(settings.data_dir.glob("goldmine.db*"))
    assert files and all(secret not in f.read_bytes() for f in files)


@pytest.mark.parametrize("bad", [None, "", "gm_", "nonsense", "gm_000000000000_secret", "xx_{id}_{secret}",
                                 "gm_{id}_wrong"])
def test_bad_keys_are_401(db, bad):
    created = create_key(db, "acme", "predict")
    _, key_id, secret = created.key.split("_", 2)
    raw = bad.format(id=key_id, secret=secret) if bad else bad
    with pytest.raises(Unauthorized):
        authenticate(db, raw)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_revoke(db):
    created = create_key(db, "acme", "predict")
    revoke_key(db, created.info.id)
    with pytest.raises(Unauthorized, match="revoked"):
        authenticate(db, created.key)
    with pytest.raises(NotFound):
        revoke_key(db, "nope")
    [listed] = list_keys(db, "acme")
    assert listed["id"] == created.info.id and listed["revoked_at"]
    assert "secret" not in str(listed) and created.key not in str(listed)


def test_scopes(db):
    info = create_key(db, "acme", ["predict"]).info
    info.require("predict")
    with pytest.raises(Forbidden, match="'admin' scope"):
        info.require("admin")
    for bad in ("", "predict,root"):
        with pytest.raises(ConfigError, match="scopes must be"):
            create_key(db, "acme", bad)
