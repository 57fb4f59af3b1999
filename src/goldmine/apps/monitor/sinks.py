"""Where alerts go: a webhook (HMAC-SHA256 signed), e-mail over SMTP, or the log. Each sender sends one alert or
raises `DeliveryFailed`; retries, backoff and never-twice are the outbox's job (`delivery`).

The webhook body is the alert as JSON. Headers: `X-Goldmine-Alert-Id` (the same on every retry of one alert: a
receiver that sees an id again drops it), `X-Goldmine-Timestamp` (Unix seconds) and `X-Goldmine-Signature:
sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` under the shared secret, as Stripe and GitHub sign theirs:
the timestamp inside the signature lets a receiver refuse replays of old deliveries (`verify_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage

from goldmine.apps.monitor.config import EmailSink, LogSink, WebhookSink
from goldmine.errors import GoldmineError

log = logging.getLogger("goldmine.apps.monitor.alerts")
SIGNATURE_HEADER = "X-Goldmine-Signature"
TIMESTAMP_HEADER = "X-Goldmine-Timestamp"
ALERT_ID_HEADER = "X-Goldmine-Alert-Id"

Sender = Callable[[dict], None]


class DeliveryFailed(GoldmineError):
    """A sink did not take the alert; the outbox tries again later."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, headers, tolerance_seconds: float = 300.0,
                     now: float | None = None) -> bool:
    """What a receiver checks: the signature matches the body and timestamp, and the timestamp is recent."""
    timestamp = headers.get(TIMESTAMP_HEADER) or ""
    signature = headers.get(SIGNATURE_HEADER) or ""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_seconds and hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_sender(sink: WebhookSink) -> Sender:
    secret = sink.secret_value()  # raises now, at start-up, when the variable is missing

    def send(alert: dict) -> None:
        body = json.dumps(alert, ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(sink.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "goldmine-monitor", ALERT_ID_HEADER: alert["id"],
            TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)})
        try:
            with urllib.request.urlopen(request, timeout=sink.timeout_seconds) as response:
                response.read()
        except urllib.error.HTTPError as err:
            raise DeliveryFailed(f"webhook {sink.name}: HTTP {err.code}") from None
        except (urllib.error.URLError, OSError) as err:
            raise DeliveryFailed(f"webhook {sink.name}: {getattr(err, 'reason', err)}") from None

    return send


def email_sender(sink: EmailSink) -> Sender:
    password = os.environ.get(sink.password_env) if sink.password_env else None

    def send(alert: dict) -> None:
        message = EmailMessage()
        message["Subject"] = f"[goldmine monitor] {alert['company']}: {alert['rule']}"
        message["From"] = sink.sender
        message["To"] = ", ".join(sink.to)
        message["Message-ID"] = f"<{alert['id']}@goldmine.monitor>"
        message[ALERT_ID_HEADER] = alert["id"]
        message.set_content(f"{alert['message']}\n\nAlert {alert['id']}, raised {alert['created_at']}.\n\n"
                            f"{json.dumps(alert, indent=2, ensure_ascii=False)}\n")
        try:
            with smtplib.SMTP(sink.host, sink.port, timeout=sink.timeout_seconds) as smtp:
                if sink.starttls:
                    smtp.starttls()
                if sink.username:
                    smtp.login(sink.username, password or "")
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as err:
            raise DeliveryFailed(f"e-mail {sink.name}: {err}") from None

    return send


def log_sender(sink: LogSink) -> Sender:
    level = logging.getLevelName(sink.level)

    def send(alert: dict) -> None:
        log.log(level, "alert %s [%s] %s", alert["id"], alert["rule"], alert["message"])

    return send


def build_senders(sinks) -> dict[str, Sender]:
    """One sender per configured sink, by sink name."""
    makers = {"webhook": webhook_sender, "email": email_sender, "log": log_sender}
    return {sink.name: makers[sink.type](sink) for sink in sinks}
