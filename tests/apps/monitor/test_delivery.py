"""The outbox: alerts queue while a webhook is down and are retried with backoff until delivered, each once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from goldmine.apps.monitor.config import MonitorConfig
from goldmine.apps.monitor.delivery import Outbox, backoff
from goldmine.apps.monitor.pipeline import Monitor
from goldmine.apps.monitor.sinks import DeliveryFailed
from goldmine.apps.monitor.store import MonitorDelivery
from goldmine.serving.db import utcnow

from .conftest import Receiver, negative_days, webhook


class Clock:
    """A wall clock the test moves (from a minute after the alerts were made)."""

    def __init__(self):
        self.now = utcnow() + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now


def config(*sinks, **fields) -> MonitorConfig:
    return MonitorConfig.model_validate({
        "app": "monitor", "tenant": "acme", "models": {"sentiment": {"name": "fin-sentiment"}},
        "rules": [{"name": "burst", "kind": "negative_share", "window": "1d", "threshold": 0.6, "min_items": 5}],
        "sinks": list(sinks), **fields})


def rows(db) -> list[MonitorDelivery]:
    with db.session() as s:
        return list(s.scalars(select(MonitorDelivery).order_by(MonitorDelivery.id)))


def test_backoff_doubles_up_to_the_cap():
    assert [backoff(n, 2, 20) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 16, 20]


def test_webhook_down_then_up_loses_nothing_and_sends_each_alert_once(db, free_port):
    port = free_port()
    cfg = config(webhook(f"http://127.0.0.1:{port}/hook", retry={"base_seconds": 10, "max_seconds": 60}),
                 {"type": "log"})
    alerts = negative_days(Monitor(cfg, db), 3)
    clock = Clock()
    outbox = Outbox(cfg, db, now=clock)
    first = outbox.deliver_due()  # nothing listens on the port
    assert (first.delivered, first.failed_attempts, first.pending) == (3, 1, 3)  # the log took all 3; the hook 1 try
    waiting = [r for r in rows(db) if r.sink == "webhook"]
    assert [r.attempts for r in waiting] == [1, 0, 0]  # one probe of a sink that is down, not one per alert
    assert "refused" in waiting[0].last_error
    assert {r.next_attempt_at for r in waiting} == {clock.now + timedelta(seconds=10)}  # all wait for the backoff
    clock.now += timedelta(seconds=5)
    assert outbox.deliver_due().failed_attempts == 0  # nothing due yet
    clock.now += timedelta(seconds=5)
    assert outbox.deliver_due().failed_attempts == 1  # due: the probe fails again, now 20 s
    assert [r.attempts for r in rows(db) if r.sink == "webhook"] == [2, 0, 0]
    receiver = Receiver(port)
    try:
        clock.now += timedelta(seconds=60)
        done = outbox.deliver_due()
        assert (done.delivered, done.pending) == (3, 0)
        assert outbox.deliver_due().delivered == 0  # delivered rows are never sent again
    finally:
        receiver.close()
    assert sorted(receiver.ids) == sorted(a.id for a in alerts) and all(d["verified"] for d in receiver.deliveries)
    assert {r.status for r in rows(db)} == {"delivered"}


def test_a_claimed_row_is_not_sent_by_a_second_process(db, receiver):
    cfg = config(webhook(receiver.url))
    negative_days(Monitor(cfg, db), 2)
    sent = []

    def slow_sender(alert):  # while the first outbox sends, a second one runs a round of its own
        sent.append(alert["id"])
        if len(sent) == 1:
            assert Outbox(cfg, db, senders={"webhook": lambda a: sent.append(("second", a["id"]))}).deliver_due() \
                .delivered == 0

    assert Outbox(cfg, db, senders={"webhook": slow_sender}).deliver_due().delivered == 2
    assert len(sent) == 2 and all(isinstance(s, str) for s in sent)


def test_a_lease_left_by_a_crash_expires(db, receiver):
    cfg = config(webhook(receiver.url), delivery={"lease_seconds": 30})
    [alert] = negative_days(Monitor(cfg, db), 1)
    clock = Clock()

    def crash(_):
        raise KeyboardInterrupt  # the process dies mid-send: the row keeps its lease

    with pytest.raises(KeyboardInterrupt):
        Outbox(cfg, db, senders={"webhook": crash}, now=clock).deliver_due()
    outbox = Outbox(cfg, db, now=clock)
    assert outbox.deliver_due().delivered == 0  # leased by the dead process
    clock.now += timedelta(seconds=31)
    assert outbox.deliver_due().delivered == 1 and receiver.ids == [alert.id]


def test_max_attempts_marks_failed_and_keeps_the_row(db):
    cfg = config(webhook("http://127.0.0.1:9/hook", retry={"base_seconds": 1, "max_attempts": 2}))
    negative_days(Monitor(cfg, db), 1)
    clock = Clock()

    def refuse(_):
        raise DeliveryFailed("webhook webhook: HTTP 410")

    outbox = Outbox(cfg, db, senders={"webhook": refuse}, now=clock)
    assert outbox.deliver_due().given_up == 0
    clock.now += timedelta(seconds=2)
    stats = outbox.deliver_due()
    assert (stats.given_up, stats.pending) == (1, 0)
    [row] = rows(db)
    assert (row.status, row.attempts, row.last_error) == ("failed", 2, "webhook webhook: HTTP 410")
