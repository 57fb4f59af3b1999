"""Sinks: a signed webhook (checked by a real receiver), e-mail to a local aiosmtpd server, the log."""

from __future__ import annotations

import logging
import time

import pytest

from goldmine.apps.monitor.config import EmailSink, LogSink, WebhookSink
from goldmine.apps.monitor.sinks import (
    DeliveryFailed,
    email_sender,
    log_sender,
    sign,
    verify_signature,
    webhook_sender,
)

from .conftest import SECRET

ALERT = {"id": "a" * 32, "rule": "negative-burst", "company": "Tailspin Air", "message": "Tailspin Air: 9 of 10 "
         "items negative", "created_at": "2026-04-01T10:00:00.000Z"}


def test_signature_round_trip_and_tampering():
    body, stamp = b'{"id": "x"}', "1767225600"
    headers = {"X-Goldmine-Timestamp": stamp, "X-Goldmine-Signature": sign(b"k", stamp, body)}
    assert verify_signature(b"k", body, headers, now=1767225600 + 10)
    assert not verify_signature(b"k", body + b" ", headers, now=1767225600)  # body changed
    assert not verify_signature(b"other", body, headers, now=1767225600)  # wrong secret
    assert not verify_signature(b"k", body, headers, now=1767225600 + 3600)  # replayed an hour later
    assert headers["X-Goldmine-Signature"].startswith("sha256=")


def test_webhook_delivers_signed_json_and_fails_when_down(receiver):
    send = webhook_sender(WebhookSink(url=receiver.url, secret=SECRET, name="hook"))
    send(ALERT)
    [delivery] = receiver.deliveries
    assert delivery["verified"] and delivery["id"] == ALERT["id"] and delivery["body"] == ALERT
    receiver.status = 503
    with pytest.raises(DeliveryFailed, match="webhook hook: HTTP 503"):
        send(ALERT)
    receiver.close()
    with pytest.raises(DeliveryFailed, match="webhook hook: .*refused"):
        send(ALERT)


def test_email_over_smtp_to_a_local_server(free_port):
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - the aiosmtpd API
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sink = EmailSink(host="127.0.0.1", port=port, sender="monitor@acme.test", to=["desk@acme.test"],
                         starttls=False)
        email_sender(sink)(ALERT)
    finally:
        controller.stop()
    [envelope] = received
    text = envelope.content.decode()
    assert envelope.mail_from == "monitor@acme.test" and envelope.rcpt_tos == ["desk@acme.test"]
    assert "Subject: [goldmine monitor] Tailspin Air: negative-burst" in text
    assert f"Message-ID: <{ALERT['id']}@goldmine.monitor>" in text and "9 of 10 items negative" in text
    down = EmailSink(host="127.0.0.1", port=free_port(), sender="m@acme.test", to=["d@acme.test"], starttls=False,
                     timeout_seconds=2)
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match="e-mail email"):
        email_sender(down)(ALERT)
    assert time.monotonic() - started < 5


def test_log_sink(caplog):
    with caplog.at_level(logging.INFO, logger="goldmine.apps.monitor.alerts"):
        log_sender(LogSink(level="ERROR"))(ALERT)
    [record] = caplog.records
    assert record.levelname == "ERROR" and "[negative-burst] Tailspin Air: 9 of 10" in record.getMessage()
