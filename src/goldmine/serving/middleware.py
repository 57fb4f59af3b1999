"""One ASGI middleware for every request: request id, body-size limit, Prometheus counts and one log line.

Bodies are read here, up to `max_body_bytes` (declared or chunked), and replayed to the app, so an oversized
body is refused with 413 before anything parses it. The exception is a dataset upload (`streamed` paths): its
route streams the body to disk under limits of its own.

Every body the API takes is JSON, so a body sent without a Content-Type, or as a form (what `curl -d` sends), is
read as JSON; if it is not JSON, the 422 says to send `Content-Type: application/json` (the type it came with is
kept in `request.state` for that message). FastAPI refuses such bodies by default to stop cross-site requests
that skip the CORS preflight; here they would carry no credentials (keys go in the Authorization or X-API-Key
header, which a cross-site form cannot set), so they could not do anything a stranger cannot do anyway.

The log line holds method, path, status, latency, request id, tenant, key id and model; input text only as
routes put it in `request.state.log` (see `masking.describe_inputs`: sizes, or masked text when enabled).
"""

from __future__ import annotations

import json
import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from goldmine.serving.metrics import Metrics

log = logging.getLogger("goldmine.serving.requests")

SENT_CONTENT_TYPE = "sent_content_type"  # request.state: the Content-Type a body came with, when read as JSON anyway
_READ_AS_JSON = ("", "application/x-www-form-urlencoded")  # media types whose bodies are taken as JSON


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, streamed: tuple[str, ...] = ()):
        self.app = app
        self.streamed = frozenset(streamed)  # paths whose bodies the route streams itself, under its own limits
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            streamed = scope["path"] in self.streamed
            body = None if streamed else await _read_body(scope, receive, self.max_body_bytes)
            if body is _TOO_LARGE:
                await _too_large(send_with_id, self.max_body_bytes)
            elif body is not None:
                await self.app(_as_json(scope) if body else scope, _replay(body, receive), send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            model = state.get("metrics_model", "-")
            self.metrics.requests.labels(model, str(status)).inc()
            self.metrics.latency.labels(model).observe(elapsed)
            if scope["path"] not in ("/metrics", "/healthz", "/readyz"):
                fields = {"request_id": request_id, "method": scope["method"], "path": scope["path"],
                          "status": status, "latency_ms": round(elapsed * 1000, 2), **state.get("log", {})}
                log.info(json.dumps(fields, ensure_ascii=False))


_TOO_LARGE = b"<too large>"


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body of a POST/PUT/PATCH, or `_TOO_LARGE` as soon as it passes `limit` (chunked bodies too)."""
    if scope["method"] not in ("POST", "PUT", "PATCH"):
        return None
    length = dict(scope.get("headers", [])).get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return _TOO_LARGE
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the client went away; the app sees an empty body and the response goes nowhere
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _as_json(scope: Scope) -> Scope:
    """The scope with `Content-Type: application/json` when the body came with none or as a form."""
    headers = scope.get("headers", [])
    sent = next((value for name, value in headers if name == b"content-type"), b"").decode("latin-1")
    if sent.split(";")[0].strip().lower() not in _READ_AS_JSON:
        return scope
    scope["state"][SENT_CONTENT_TYPE] = sent
    return {**scope, "headers": [*((n, v) for n, v in headers if n != b"content-type"),
                                 (b"content-type", b"application/json")]}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would tell it

    return replay


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"error": {"code": "payload_too_large",
                                 "message": f"request body over {limit} bytes"}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
