"""Console sessions: a signed cookie that names an API key, a CSRF token per session, nothing kept on the server.

Signing in checks the pasted key once (`auth.authenticate`) and sets `gm_console` = base64(JSON {key id, CSRF
token, issue time}) + HMAC-SHA256 of it under the server's console secret. The cookie never holds the key's secret,
and every request looks the key id up again (no cache), so revoking the key ends its sessions at once; a session
also ends `console.session_hours` after sign-in. Logging out clears the cookie in the browser; a copy of the cookie
taken before that stays valid until it expires or the key is revoked (stateless sessions: no table to delete
from, and replicas agree on a session as long as they share the secret).

The cookie is HttpOnly (page scripts cannot read it), SameSite=Strict (no other site's page sends it) and Secure
when the request came over https. Every form POST must also carry the session's CSRF token (a hidden field, or the
`X-CSRF-Token` header for the upload's fetch), compared in constant time: SameSite alone leaves out old browsers
and same-site subdomains. The sign-in form, which has no session yet, uses a double-submit token instead (a
random cookie that the form must repeat).

The secret is `console.secret` when set (needed when several replicas serve the console), else 32 random bytes
generated once and kept in `<data_dir>/console_secret` (owner-only), so sessions survive a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, Response

from goldmine.serving.auth import KeyInfo
from goldmine.serving.db import ApiKey, Database
from goldmine.serving.settings import ServingSettings

COOKIE = "gm_console"
LOGIN_COOKIE = "gm_console_login"  # the sign-in form's double-submit CSRF token
SECRET_FILE = "console_secret"
PATH = "/console"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the key it signed in with (looked up again on every request) and its CSRF token."""

    key: KeyInfo
    csrf: str

    @property
    def admin(self) -> bool:
        return "admin" in self.key.scopes


def load_secret(settings: ServingSettings) -> bytes:
    """The console's signing secret: the settings' one, else the one kept under data_dir (made on first use)."""
    if settings.console.secret:
        return settings.console.secret.get_secret_value().encode()
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # two processes: one wins, both read it
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _sign(secret: bytes, payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(secret, payload, hashlib.sha256).digest()).decode().rstrip("=")


def encode(secret: bytes, key_id: str, csrf: str, issued: float | None = None) -> str:
    payload = json.dumps({"k": key_id, "c": csrf, "t": int(issued if issued is not None else time.time())},
                         separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sign(secret, payload)


def decode(secret: bytes, cookie: str, max_age_seconds: float) -> tuple[str, str] | None:
    """(key id, CSRF token) of a cookie this server signed and that has not expired, else None."""
    body, _, signature = cookie.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        return None
    if not hmac.compare_digest(_sign(secret, payload), signature):
        return None
    data = json.loads(payload)
    if time.time() - data["t"] > max_age_seconds:
        return None
    return data["k"], data["c"]


def key_info(db: Database, key_id: str) -> KeyInfo | None:
    """The key as it is now (None once revoked or deleted): looked up on every console request, never cached."""
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return None
        return KeyInfo(row.id, row.tenant_id, row.scope_set, row.rate, row.monthly_quota, row.tokens_per_minute)


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https")


def same_token(expected: str | None, given: str | None) -> bool:
    """A CSRF check: both present and equal (constant time)."""
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())
