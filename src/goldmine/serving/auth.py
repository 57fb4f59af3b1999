"""API keys: `gm_<id>_<secret>`, shown once at creation; the database keeps the id, a salt and a salted hash.

The secret is 256 random bits, so a keyed hash (HMAC-SHA256 with a per-key salt) is enough: nobody can
brute-force such a secret, and a slow password hash (scrypt) would cost every request milliseconds of CPU
for nothing. The comparison is constant-time (`hmac.compare_digest`), and an unknown key id costs the same
hash as a known one, so timing says nothing about which ids exist.

The server keeps keys that passed for a few seconds (`auth_cache_seconds`, under `cache_key(raw)`), so a busy
key costs one database look-up per few seconds instead of one per call; a revocation takes effect within that
time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from goldmine.errors import ConfigError
from goldmine.serving.db import ApiKey, Database, utcnow
from goldmine.serving.errors import Forbidden, NotFound, Unauthorized
from goldmine.serving.registry import ensure_tenant

PREFIX = "gm"
# predict: call and list own models, send feedback, read own usage; train: upload datasets and run fine-tuning jobs
# (billed compute: a key built into an app that only predicts should not have it); admin: operate any tenant
SCOPES = ("predict", "train", "admin")
_DUMMY_SALT = secrets.token_bytes(16)


@dataclass(frozen=True)
class KeyInfo:
    """What a request knows about the key that authenticated it (never the secret)."""

    id: str
    tenant: str
    scopes: frozenset[str]
    rate: float | None
    monthly_quota: int | None
    tokens_per_minute: int | None = None  # generation: prompt + completion tokens per minute

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the {scope!r} scope")


@dataclass(frozen=True)
class CreatedKey:
    key: str  # the full key: shown once, never stored
    info: KeyInfo


def hash_secret(salt_hex: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt_hex), secret.encode(), hashlib.sha256).hexdigest()


def parse_scopes(scopes: str | list[str]) -> frozenset[str]:
    items = [s.strip() for s in (scopes.split(",") if isinstance(scopes, str) else scopes) if s.strip()]
    unknown = sorted(set(items) - set(SCOPES))
    if unknown or not items:
        raise ConfigError(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}; got {scopes!r}")
    return frozenset(items)


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.tenant_id, row.scope_set, row.rate, row.monthly_quota, row.tokens_per_minute)


def create_key(db: Database, tenant: str, scopes: str | list[str] = "predict", rate: float | None = None,
               monthly_quota: int | None = None, plan: str | None = None,
               tokens_per_minute: int | None = None) -> CreatedKey:
    """A new key for `tenant` (created if new; `plan` sets its price plan). The returned `key` is the only copy."""
    scope_set = parse_scopes(scopes)
    if rate is not None and rate <= 0:
        raise ConfigError(f"rate must be > 0 requests/s, got {rate}")
    if monthly_quota is not None and monthly_quota < 0:
        raise ConfigError(f"monthly quota must be >= 0 texts, got {monthly_quota}")
    if tokens_per_minute is not None and tokens_per_minute <= 0:
        raise ConfigError(f"tokens per minute must be > 0, got {tokens_per_minute}")
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    with db.session() as session:
        ensure_tenant(session, tenant, plan)
        row = ApiKey(id=key_id, tenant_id=tenant, salt=salt, secret_hash=hash_secret(salt, secret),
                     scopes=",".join(sorted(scope_set)), rate=rate, monthly_quota=monthly_quota,
                     tokens_per_minute=tokens_per_minute, created_at=utcnow())
        session.add(row)
    return CreatedKey(f"{PREFIX}_{key_id}_{secret}", _info(row))


def authenticate(db: Database, raw: str | None) -> KeyInfo:
    """The key behind `raw` (the full `gm_<id>_<secret>`); 401 when missing, malformed, unknown or revoked."""
    if not raw:
        raise Unauthorized("missing API key: send 'Authorization: Bearer gm_...'")
    prefix, _, rest = raw.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    with db.session() as session:
        row = session.get(ApiKey, key_id) if prefix == PREFIX and key_id and secret else None
    expected = row.secret_hash if row else hash_secret(_DUMMY_SALT.hex(), "")
    actual = hash_secret(row.salt if row else _DUMMY_SALT.hex(), secret)
    if not hmac.compare_digest(expected, actual) or row is None:
        raise Unauthorized("invalid API key")
    if row.revoked_at is not None:
        raise Unauthorized("this API key has been revoked")
    return _info(row)


def cache_key(raw: str) -> bytes:
    """What the key cache stores a key under: its SHA-256, never the key itself."""
    return hashlib.sha256(raw.encode()).digest()


def list_keys(db: Database, tenant: str | None = None) -> list[dict]:
    """Key ids with tenant, scopes, limits and state (never secrets or hashes)."""
    with db.session() as session:
        query = select(ApiKey).order_by(ApiKey.tenant_id, ApiKey.created_at)
        if tenant is not None:
            query = query.where(ApiKey.tenant_id == tenant)
        return [
            {"id": k.id, "tenant": k.tenant_id, "scopes": sorted(k.scope_set), "rate": k.rate,
             "monthly_quota": k.monthly_quota, "tokens_per_minute": k.tokens_per_minute,
             "created_at": k.created_at.isoformat(timespec="seconds") + "Z",
             "revoked_at": k.revoked_at.isoformat(timespec="seconds") + "Z" if k.revoked_at else None}
            for k in session.scalars(query)
        ]


def revoke_key(db: Database, key: str) -> KeyInfo:
    """Revoke by id (or by the full key); later requests with it get 401."""
    key_id = key.split("_")[1] if key.startswith(f"{PREFIX}_") else key
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"no API key with id {key_id!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _info(row)
