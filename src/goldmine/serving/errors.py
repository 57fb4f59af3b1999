"""Serving errors and the one table that maps every error (serving or library) to an HTTP status.

Each error carries a stable machine-readable `code`, a message a client can act on, and optional headers
(Retry-After, RateLimit-*). The FastAPI exception handlers in `app.py` use `http_status` and nothing else.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from goldmine.errors import ConfigError, DataError, GoldmineError, InputError, ModelError


class ServingError(GoldmineError):
    """Base class of the errors the serving layer raises on purpose."""

    code = "error"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.headers = dict(headers or {})


class Unauthorized(ServingError):
    code = "unauthorized"


class Forbidden(ServingError):
    code = "forbidden"


class NotFound(ServingError):
    """Also what a tenant gets for another tenant's model: nothing about its existence leaks."""

    code = "not_found"


class Conflict(ServingError):
    code = "conflict"


class PayloadTooLarge(ServingError):
    code = "payload_too_large"


class UnsupportedMediaType(ServingError):
    """An upload that is not one of the accepted file types."""

    code = "unsupported_media_type"


class InvalidRequest(ServingError):
    code = "invalid_request"


class RateLimited(ServingError):
    code = "rate_limited"


class QuotaExhausted(ServingError):
    code = "quota_exhausted"


class Overloaded(ServingError):
    """The model's queue is full; the client should retry after `Retry-After` seconds."""

    code = "overloaded"


class Unavailable(ServingError):
    """Something this call needs is not there now (e.g. an app config naming a model version the registry lacks):
    the operator has to act, and the client may retry later."""

    code = "unavailable"


class UsageNotRecorded(ServingError):
    """The usage record could not be committed, so the answer is withheld (nothing unbilled leaves the server)."""

    code = "usage_not_recorded"


STATUS: list[tuple[type[Exception], int]] = [  # first match wins: subclasses before their bases
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (InvalidRequest, 422),
    (RateLimited, 429),
    (QuotaExhausted, 429),
    (Overloaded, 503),
    (Unavailable, 503),
    (UsageNotRecorded, 503),
    (DataError, 422),
    (InputError, 422),
    (ConfigError, 500),
    (ModelError, 500),
    (GoldmineError, 400),
]


def http_status(err: Exception) -> int:
    """The HTTP status for any exception; unknown ones are 500."""
    for cls, status in STATUS:
        if isinstance(err, cls):
            return status
    return 500


def error_code(err: Exception) -> str:
    if isinstance(err, ServingError):
        return err.code
    return {400: "bad_request", 422: "invalid_request"}.get(http_status(err), "internal_error")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code: unauthorized, not_found, invalid_request, ...")
    message: str = Field(description="What went wrong and what to do; never the request's input.")
    details: list[dict[str, Any]] | None = Field(
        None, description="422 from validation only: one {loc, msg, type} per problem (no input values).")
    issues: list[str] | None = Field(None, description="422 for invalid data only: every problem as "
                                     "`file:line: reason`, as `goldmine data check` reports it.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


_MEANING = {
    400: "Malformed request.",
    401: "Missing, invalid or revoked key.",
    403: "The key lacks the scope (or the tenant) this needs.",
    404: "No such model, version, alias or app for this tenant.",
    409: "Conflict: an Idempotency-Key reused for another request, nothing to roll back, or a candidate that "
         "failed the regression gate.",
    413: "Over a limit: texts per call, characters per text, body bytes, or dataset size and storage.",
    415: "Not an accepted dataset file type (.csv, .tsv, .jsonl, .conll, ...).",
    422: "Malformed body or parameters (the input is never echoed), or invalid data (every problem as "
         "file:line: reason in `issues`).",
    429: "Rate limit (Retry-After, RateLimit-*), monthly quota exhausted, or too many concurrent jobs.",
    503: "Overloaded (Retry-After), rate-limit store unreachable, usage not recorded, or an app misconfigured.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route: each status with the error body and what it means."""
    return {status: {"model": ErrorBody, "description": _MEANING[status]} for status in statuses}
