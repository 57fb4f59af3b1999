"""The monitor's tables in the serving database (migration 0005), every row keyed by tenant.

- `monitor_items`: each analysed item once, under its id (a replayed item is a duplicate, never counted twice);
- `monitor_aggregates`: per company, window and window start: items and negative/neutral/positive counts and the
  sum of sentiment scores (mean = sum / items);
- `monitor_alerts`: each alert once, its id a hash of (tenant, rule, company, window start), so a rule that holds
  again for the same window, or a replay after a crash, makes no second alert;
- `monitor_deliveries`: the outbox, one row per alert and sink, written in the same transaction as the alert;
  delivery claims a row (a lease), sends, and marks it delivered or schedules the next attempt;
- `monitor_sources`: how far each input file was read (byte offset and line after the last committed batch).

Items, aggregates, alerts, outbox rows and the source position of one batch commit in one transaction: after a
crash the database holds whole batches only, and the next run starts after the last of them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from goldmine.serving.db import Base, utcnow


class MonitorItem(Base):
    __tablename__ = "monitor_items"
    __table_args__ = (UniqueConstraint("tenant_id", "item_id"),
                      Index("ix_monitor_items_tenant_time", "tenant_id", "published_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(128))
    published_at: Mapped[datetime] = mapped_column()
    text: Mapped[str | None] = mapped_column(Text, default=None)  # None when the config says store_text: false
    source: Mapped[str] = mapped_column(String(512), default="")
    label: Mapped[str] = mapped_column(String(16))  # polarity: negative | neutral | positive
    model_label: Mapped[str] = mapped_column(String(64))  # the sentiment model's own label
    score: Mapped[float] = mapped_column(Float)  # P(positive) - P(negative)
    companies: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorAggregate(Base):
    __tablename__ = "monitor_aggregates"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    company: Mapped[str] = mapped_column(String(128), primary_key=True)
    window: Mapped[str] = mapped_column(String(16), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    items: Mapped[int] = mapped_column(Integer, default=0)
    negative: Mapped[int] = mapped_column(Integer, default=0)
    neutral: Mapped[int] = mapped_column(Integer, default=0)
    positive: Mapped[int] = mapped_column(Integer, default=0)
    score_sum: Mapped[float] = mapped_column(Float, default=0.0)


class MonitorAlert(Base):
    __tablename__ = "monitor_alerts"
    __table_args__ = (Index("ix_monitor_alerts_tenant_company", "tenant_id", "company", "bucket_start"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    company: Mapped[str] = mapped_column(String(128))
    window: Mapped[str] = mapped_column(String(16))
    bucket_start: Mapped[datetime] = mapped_column()
    value: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON: counts, threshold, baseline, triggering item
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorDelivery(Base):
    __tablename__ = "monitor_deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "sink"),
                      Index("ix_monitor_deliveries_due", "status", "next_attempt_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[str] = mapped_column(String(32))
    sink: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(32), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorSource(Base):
    __tablename__ = "monitor_sources"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(512), primary_key=True)  # the input file's resolved path
    offset: Mapped[int] = mapped_column(Integer, default=0)  # bytes read and committed
    line: Mapped[int] = mapped_column(Integer, default=0)  # lines read and committed
    items: Mapped[int] = mapped_column(Integer, default=0)  # items stored from it (duplicates not counted)
    issues: Mapped[int] = mapped_column(Integer, default=0)  # malformed records skipped
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
