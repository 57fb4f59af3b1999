"""The monitor's pipeline for one batch: analyse (sentiment, companies) and store (items, aggregates, alerts, outbox
rows and the input position, in one transaction).

`Monitor` holds what does not change between batches (the alias matcher, the windows, the rules) and no model:
the CLI runs models in-process (`ModelRunner`), the HTTP router through the server's shared micro-batchers, Ray
Data on its actors; all hand their predictions to `Monitor.analyse`, and everything after is the same code.

Stores of one process are serialised (a lock): SQLite has one writer anyway, and the aggregate increments and
alert inserts use INSERT ... ON CONFLICT, so several replicas on PostgreSQL stay consistent too.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, insert, select
from sqlalchemy.exc import IntegrityError

from goldmine.apps.monitor.companies import CompanyMatcher
from goldmine.apps.monitor.config import POLARITY_VALUE, MonitorConfig, ZScoreRule, duration_seconds
from goldmine.apps.monitor.items import Item
from goldmine.apps.monitor.rules import Counts, alert_id, bucket_start, evaluate
from goldmine.apps.monitor.store import MonitorAggregate, MonitorAlert, MonitorDelivery, MonitorItem, MonitorSource
from goldmine.serving.db import Database, utcnow

log = logging.getLogger(__name__)
COMPANY_CHARS = 128
QUERY_CHUNK = 500  # ids per IN (...) query


@dataclass
class Analysed:
    """An item with its sentiment and companies."""

    item: Item
    label: str  # negative | neutral | positive
    model_label: str
    score: float  # P(positive) - P(negative), -1..1
    companies: list[str]


@dataclass
class Alert:
    id: str
    rule: str
    kind: str
    company: str
    window: str
    window_start: datetime
    value: float
    message: str
    details: dict
    created_at: datetime

    def payload(self, tenant: str) -> dict:
        """The JSON every sink gets (the webhook body)."""
        return {"id": self.id, "tenant": tenant, "rule": self.rule, "kind": self.kind, "company": self.company,
                "window": self.window, "window_start": self.window_start.isoformat() + "Z",
                "window_end": (self.window_start + timedelta(seconds=duration_seconds(self.window))).isoformat()
                + "Z", "value": self.value, "message": self.message, "details": self.details,
                "created_at": self.created_at.isoformat(timespec="milliseconds") + "Z"}


@dataclass
class Position:
    """How far an input file has been read once this batch is stored."""

    source: str
    offset: int
    line: int
    issues: int = 0  # malformed records skipped since the last position


@dataclass
class BatchResult:
    stored: list[Analysed] = field(default_factory=list)  # new items (not seen before)
    duplicates: int = 0
    alerts: list[Alert] = field(default_factory=list)  # alerts this batch raised


def polarity_scores(scores: dict[str, float], polarity: dict[str, str]) -> float:
    return float(sum(p * POLARITY_VALUE[polarity[label]] for label, p in scores.items()))


class Monitor:
    """Analyses and stores batches of items for one tenant's monitor config."""

    def __init__(self, config: MonitorConfig, db: Database):
        self.config = config
        self.db = db
        self.tenant = config.tenant
        self.matcher = CompanyMatcher.from_config(config)
        self.windows = {w: duration_seconds(w) for w in config.all_windows()}
        self.sinks = [s.name for s in config.sinks]
        self._lock = threading.Lock()
        self._spans = {w: max([r.baseline for r in config.rules if isinstance(r, ZScoreRule) and r.window == w],
                              default=0) * s for w, s in self.windows.items()}

    # ---- analyse ------------------------------------------------------------------------------------------------

    def analyse(self, items: Sequence[Item], sentiment: Sequence[dict], polarity: dict[str, str],
                entities: Sequence[dict] | None = None) -> list[Analysed]:
        """Items with a sentiment model's predictions (`{label, scores}` each), the polarity of each model label
        (`MonitorConfig.polarity_of`) and optionally an NER model's predictions (`{entities: [...]}` each)."""
        out = []
        for i, (item, prediction) in enumerate(zip(items, sentiment, strict=True)):
            names = None
            if entities is not None:
                names = [e["text"] for e in entities[i].get("entities", []) if e["type"] in self.config.ner_types]
            companies = [c[:COMPANY_CHARS] for c in self.matcher.companies(item.text, item.tickers, names)]
            out.append(Analysed(item, polarity[prediction["label"]], prediction["label"],
                                polarity_scores(prediction["scores"], polarity), companies))
        return out

    # ---- store --------------------------------------------------------------------------------------------------

    def store(self, analysed: Sequence[Analysed], position: Position | None = None) -> BatchResult:
        """Store a batch in one transaction: new items, their aggregates, the alerts they raise with one outbox row
        per sink, and `position`. Items seen before are skipped (counted as duplicates)."""
        with self._lock:
            for attempt in range(3):
                try:
                    with self.db.session() as session:
                        return self._store(session, analysed, position)
                except IntegrityError:  # another replica stored some of these items just now: look again
                    if attempt == 2:
                        raise
        raise AssertionError  # unreachable

    def _store(self, session, analysed: Sequence[Analysed], position: Position | None) -> BatchResult:
        now = utcnow()
        unique: dict[str, Analysed] = {}
        for entry in analysed:
            unique.setdefault(entry.item.id, entry)
        ids = list(unique)
        seen: set[str] = set()
        for i in range(0, len(ids), QUERY_CHUNK):
            seen.update(session.scalars(select(MonitorItem.item_id).where(
                MonitorItem.tenant_id == self.tenant, MonitorItem.item_id.in_(ids[i:i + QUERY_CHUNK]))))
        new = [entry for item_id, entry in unique.items() if item_id not in seen]
        result = BatchResult(stored=new, duplicates=len(analysed) - len(new))
        if new:
            session.execute(insert(MonitorItem), [{
                "tenant_id": self.tenant, "item_id": a.item.id, "published_at": a.item.time,
                "text": a.item.text if self.config.store_text else None, "source": a.item.source[:512],
                "label": a.label, "model_label": a.model_label[:64], "score": a.score,
                "companies": json.dumps(a.companies, ensure_ascii=False), "created_at": now} for a in new])
            result.alerts = self._aggregate(session, new, now)
        if position is not None:
            self._advance(session, position, len(new), now)
        return result

    def _aggregate(self, session, new: list[Analysed], now: datetime) -> list[Alert]:
        touched: dict[tuple[str, str, datetime], Counts] = {}  # what this batch adds
        keys = {(c, w, bucket_start(a.item.time, s))
                for a in new for c in a.companies for w, s in self.windows.items()}
        if not keys:
            return []
        state = self._load(session, keys)
        candidates: dict[str, Alert] = {}
        for entry in new:
            for company in entry.companies:
                for window, seconds in self.windows.items():
                    start = bucket_start(entry.item.time, seconds)
                    counts = state.setdefault((company, window, start), Counts())
                    counts.add(entry.label, entry.score)
                    touched.setdefault((company, window, start), Counts()).add(entry.label, entry.score)
                    for rule in self.config.rules:
                        if rule.window != window:
                            continue
                        ident = alert_id(self.tenant, rule.name, company, window, start)
                        if ident in candidates:
                            continue
                        previous = [state.get((company, window, start - timedelta(seconds=seconds * k)), Counts())
                                    for k in range(1, getattr(rule, "baseline", 0) + 1)]
                        fired = evaluate(rule, company, start, counts, previous)
                        if fired is not None:
                            candidates[ident] = Alert(ident, rule.name, rule.kind, company, window, start, fired.value,
                                                      fired.message, {**fired.details, "item": entry.item.id}, now)
        self._upsert_counts(session, touched)
        return self._insert_alerts(session, candidates)

    def _load(self, session, keys: set[tuple[str, str, datetime]]) -> dict[tuple[str, str, datetime], Counts]:
        """The stored counts of the touched windows and of the baseline windows before them."""
        state: dict[tuple[str, str, datetime], Counts] = {}
        for window in {w for _, w, _ in keys}:
            starts = [s for _, w, s in keys if w == window]
            companies = sorted({c for c, w, _ in keys if w == window})
            low, high = min(starts) - timedelta(seconds=self._spans[window]), max(starts)
            for i in range(0, len(companies), QUERY_CHUNK):
                rows = session.scalars(select(MonitorAggregate).where(
                    MonitorAggregate.tenant_id == self.tenant, MonitorAggregate.window == window,
                    MonitorAggregate.company.in_(companies[i:i + QUERY_CHUNK]),
                    and_(MonitorAggregate.bucket_start >= low, MonitorAggregate.bucket_start <= high)))
                for row in rows:
                    state[(row.company, window, row.bucket_start)] = Counts(
                        row.items, row.negative, row.neutral, row.positive, row.score_sum)
        return state

    def _upsert_counts(self, session, touched: dict[tuple[str, str, datetime], Counts]) -> None:
        rows = [{"tenant_id": self.tenant, "company": c, "window": w, "bucket_start": s, "items": n.items,
                 "negative": n.negative, "neutral": n.neutral, "positive": n.positive, "score_sum": n.score_sum}
                for (c, w, s), n in touched.items()]
        dialect = self.db.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            from importlib import import_module

            statement = import_module(f"sqlalchemy.dialects.{dialect}").insert(MonitorAggregate)
            excluded = statement.excluded
            statement = statement.on_conflict_do_update(
                index_elements=["tenant_id", "company", "window", "bucket_start"],
                set_={name: getattr(MonitorAggregate, name) + excluded[name]
                      for name in ("items", "negative", "neutral", "positive", "score_sum")})
            session.execute(statement, rows)
            return
        for row in rows:  # other databases: read, then update or insert (one writer at a time)
            stored = session.get(MonitorAggregate, (row["tenant_id"], row["company"], row["window"],
                                                    row["bucket_start"]))
            if stored is None:
                session.add(MonitorAggregate(**row))
            else:
                for name in ("items", "negative", "neutral", "positive", "score_sum"):
                    setattr(stored, name, getattr(stored, name) + row[name])

    def _insert_alerts(self, session, candidates: dict[str, Alert]) -> list[Alert]:
        if not candidates:
            return []
        ids = list(candidates)
        existing = set(session.scalars(select(MonitorAlert.id).where(MonitorAlert.id.in_(ids))))
        fresh = [candidates[i] for i in ids if i not in existing]
        if fresh:
            session.execute(insert(MonitorAlert), [{
                "id": a.id, "tenant_id": self.tenant, "rule": a.rule, "kind": a.kind, "company": a.company,
                "window": a.window, "bucket_start": a.window_start, "value": a.value, "message": a.message,
                "details": json.dumps(a.details), "created_at": a.created_at} for a in fresh])
            session.execute(insert(MonitorDelivery), [{
                "tenant_id": self.tenant, "alert_id": a.id, "sink": sink, "status": "pending", "attempts": 0,
                "next_attempt_at": a.created_at, "created_at": a.created_at} for a in fresh for sink in self.sinks])
        return fresh

    def _advance(self, session, position: Position, stored: int, now: datetime) -> None:
        row = session.get(MonitorSource, (self.tenant, position.source))
        if row is None:
            session.add(MonitorSource(tenant_id=self.tenant, source=position.source, offset=position.offset,
                                      line=position.line, items=stored, issues=position.issues, updated_at=now))
        else:
            row.offset, row.line, row.updated_at = position.offset, position.line, now
            row.items += stored
            row.issues += position.issues

    def position(self, source: str) -> MonitorSource | None:
        """Where reading `source` stopped last time (None: never read)."""
        with self.db.session() as session:
            return session.get(MonitorSource, (self.tenant, source))
