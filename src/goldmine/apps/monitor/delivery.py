"""The alert outbox: each (alert, sink) row is sent until a sink takes it, with exponential backoff in between.

An alert and its outbox rows are committed with the items that raised it (`pipeline.Monitor.store`), so an alert
exists only together with the means to deliver it: a crash loses neither. Delivery then:

1. claims due rows (pending, next attempt due, no live lease) by writing a lease with a token of its own, so two
   processes (a server and a `deliver` command, or two replicas) never send the same row at the same time;
2. sends each claimed row; a sink that fails is not tried again in this round: it is down, and its other rows wait
   until the failed row's next attempt (one probe per backoff interval, not one per queued alert);
3. marks a sent row delivered, or records the error and the next attempt: base * 2^(attempts-1), capped.

"Never delivered twice": a row marked delivered is never sent again, and a row is sent by one lease holder at a
time. What remains is the crash between a receiver's 200 and the commit of "delivered": the row is sent again after
its lease ends, with the same `X-Goldmine-Alert-Id`, which is what a receiver deduplicates on (the e-mail carries
it as Message-ID). Nothing is ever deleted: a sink with `max_attempts` marks the row failed, kept for inspection.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from goldmine.apps.monitor.config import MonitorConfig
from goldmine.apps.monitor.pipeline import Alert
from goldmine.apps.monitor.sinks import DeliveryFailed, Sender, build_senders
from goldmine.apps.monitor.store import MonitorAlert, MonitorDelivery
from goldmine.serving.db import Database, utcnow

log = logging.getLogger(__name__)
ROUND = 200  # rows claimed per round


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed_attempts: int = 0
    pending: int = 0  # rows still waiting (due later, or their sink is down)
    given_up: int = 0  # rows marked failed (max_attempts reached)


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: base, 2 base, 4 base, ... at most cap."""
    return min(cap, base * 2 ** max(0, attempts - 1))


def alert_from_row(row: MonitorAlert) -> Alert:
    return Alert(row.id, row.rule, row.kind, row.company, row.window, row.bucket_start, row.value, row.message,
                 json.loads(row.details), row.created_at)


class Outbox:
    """Delivers one tenant's pending alerts to the sinks of its monitor config."""

    def __init__(self, config: MonitorConfig, db: Database, senders: dict[str, Sender] | None = None,
                 now: Callable[[], datetime] = utcnow):
        self.config = config
        self.db = db
        self.tenant = config.tenant
        self.senders = senders if senders is not None else build_senders(config.sinks)
        self.sinks = {s.name: s for s in config.sinks}
        self._now = now

    def _claim(self, token: str) -> list[tuple[MonitorDelivery, MonitorAlert]]:
        now = self._now()
        lease = now + timedelta(seconds=self.config.delivery.lease_seconds)
        free = or_(MonitorDelivery.lease_until.is_(None), MonitorDelivery.lease_until < now)
        with self.db.session() as session:
            ids = session.scalars(select(MonitorDelivery.id).where(
                MonitorDelivery.tenant_id == self.tenant, MonitorDelivery.status == "pending",
                MonitorDelivery.next_attempt_at <= now, free).order_by(MonitorDelivery.id).limit(ROUND)).all()
            if not ids:
                return []
            session.execute(update(MonitorDelivery).where(MonitorDelivery.id.in_(ids), free)
                            .values(lease_until=lease, lease_owner=token).execution_options(synchronize_session=False))
        with self.db.session() as session:
            return list(session.execute(
                select(MonitorDelivery, MonitorAlert).join(MonitorAlert, MonitorAlert.id == MonitorDelivery.alert_id)
                .where(MonitorDelivery.lease_owner == token, MonitorDelivery.status == "pending")
                .order_by(MonitorDelivery.id)))

    def deliver_due(self) -> DeliveryStats:
        """One round over the rows due now; returns what happened and how many rows still wait."""
        stats = DeliveryStats()
        token = uuid.uuid4().hex
        down: dict[str, datetime] = {}  # sink -> when it is tried again
        for row, alert_row in self._claim(token):
            if row.sink in down:
                self._release(row.id, token, down[row.sink])
                continue
            if row.sink not in self.senders:
                self._release(row.id, token, None, "no such sink in the config (kept until it is configured again)")
                continue
            payload = alert_from_row(alert_row).payload(self.tenant)
            try:
                self.senders[row.sink](payload)
            except DeliveryFailed as err:
                stats.failed_attempts += 1
                gave_up, down[row.sink] = self._failed(row, token, str(err))
                stats.given_up += gave_up
                log.warning("alert %s to %s: attempt %d failed: %s", row.alert_id, row.sink, row.attempts + 1, err)
                continue
            self._delivered(row.id, token)
            stats.delivered += 1
        stats.pending = self.pending()
        return stats

    def _delivered(self, row_id: int, token: str) -> None:
        with self.db.session() as session:
            session.execute(update(MonitorDelivery).where(MonitorDelivery.id == row_id,
                                                          MonitorDelivery.lease_owner == token)
                            .values(status="delivered", delivered_at=self._now(), lease_until=None, lease_owner=None,
                                    attempts=MonitorDelivery.attempts + 1, last_error=None))

    def _failed(self, row: MonitorDelivery, token: str, error: str) -> tuple[bool, datetime]:
        """Record a failed attempt; returns (given up, when the sink is tried next)."""
        retry = self.sinks[row.sink].retry
        attempts = row.attempts + 1
        gave_up = retry.max_attempts is not None and attempts >= retry.max_attempts
        due = self._now() + timedelta(seconds=backoff(attempts, retry.base_seconds, retry.max_seconds))
        with self.db.session() as session:
            session.execute(update(MonitorDelivery).where(MonitorDelivery.id == row.id,
                                                          MonitorDelivery.lease_owner == token)
                            .values(attempts=attempts, last_error=error[:2000], lease_until=None, lease_owner=None,
                                    status="failed" if gave_up else "pending", next_attempt_at=due))
        return gave_up, due

    def _release(self, row_id: int, token: str, due: datetime | None, error: str | None = None) -> None:
        """Give a claimed row back untried (due again at `due`, if given)."""
        with self.db.session() as session:
            values: dict = {"lease_until": None, "lease_owner": None}
            if due is not None:
                values["next_attempt_at"] = due
            if error:
                values["last_error"] = error
            session.execute(update(MonitorDelivery).where(MonitorDelivery.id == row_id,
                                                          MonitorDelivery.lease_owner == token).values(**values))

    def pending(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(MonitorDelivery).where(
                MonitorDelivery.tenant_id == self.tenant, MonitorDelivery.status == "pending")) or 0)

    def next_due(self) -> datetime | None:
        """When the earliest pending row is due (None: nothing pending)."""
        with self.db.session() as session:
            return session.scalar(select(func.min(MonitorDelivery.next_attempt_at)).where(
                MonitorDelivery.tenant_id == self.tenant, MonitorDelivery.status == "pending"))
