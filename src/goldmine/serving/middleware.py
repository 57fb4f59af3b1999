"""One ASGI middleware for every request: request id, body-size limit, Prometheus counts and one log line.

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


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int):
        self.app = app
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

        length = dict(scope.get("headers", [])).get(b"content-length")
        try:
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await _too_large(send_with_id, self.max_body_bytes)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            model = scope.get("path_params", {}).get("name", "-")
            self.metrics.requests.labels(model, str(status)).inc()
            self.metrics.latency.labels(model).observe(elapsed)
            if scope["path"] not in ("/metrics", "/healthz", "/readyz"):
                fields = {"request_id": request_id, "method": scope["method"], "path": scope["path"],
                          "status": status, "latency_ms": round(elapsed * 1000, 2), **state.get("log", {})}
                log.info(json.dumps(fields, ensure_ascii=False))


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"error": {"code": "payload_too_large",
                                 "message": f"request body over {limit} bytes"}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
