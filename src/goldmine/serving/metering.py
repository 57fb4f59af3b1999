"""Metering: one usage record per billable call, committed before the response leaves the server.

A call is billable when it returns predictions (HTTP 200). Refused calls (auth, limits, overload, errors)
write nothing: they are counted in the Prometheus metrics instead. If the record cannot be committed, the
caller gets 503 and no predictions, so nothing is ever answered unbilled.

Group commit: records of concurrent calls share one transaction. While one transaction commits (an fsync on
SQLite with `synchronous=FULL`), the records that arrive meanwhile queue up and go together in the next one;
each call still waits until its own record is committed before it answers, and a call alone waits for no
one. If a shared transaction fails, its records are written again one by one, so one bad record (say, a
repeated idempotency key) fails only its own call.

Rows that belong with a record (the answered items a feedback refers to, `goldmine.serving.feedback`) ride in its
transaction (`Usage.also`): they are committed exactly when the record is, and a record that fails leaves none.

Idempotency: with an `Idempotency-Key` header, the record also keeps a hash of the request and the response
body. A retry with the same key and the same request gets the stored response back (header
`Idempotent-Replayed: true`), and no second record is written; the same key with a different request is a
409. Two identical requests racing each other may both compute, but the unique (key id, idempotency key)
constraint lets only one record in; the loser returns the winner's stored response. Responses are kept only
for calls that send the header (NER responses contain entity text: a client that wants no stored text does
not send one), only what the record does not hold already (the predictions), and only for
`idempotency_ttl_seconds`: a look-up ignores an older reply, and `purge_expired` (run periodically by the app,
and for one key when its old reply is looked up) deletes it with its key and hash, so the key can be used
again. The usage record stays: billing needs it, and it holds no text. The purge is plain UPDATEs in short
chunks, so it works on SQLite and PostgreSQL; on PostgreSQL an advisory lock lets one replica purge at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from goldmine.serving.db import Database, UsageRecord, utcnow
from goldmine.serving.errors import Conflict, UsageNotRecorded

log = logging.getLogger(__name__)

PURGE_LOCK = 7_317_002  # PostgreSQL advisory lock id: one replica purges expired replies at a time
PURGE_CHUNK = 1000  # records per purge transaction: short write locks on SQLite
IN_RECORD = ("request_id", "model", "version")  # reply fields the record holds as columns: not stored twice


@dataclass
class Usage:
    """The facts of one billable call."""

    request_id: str
    tenant: str
    key_id: str
    model: str
    version: str
    items: int
    input_tokens: int
    latency_ms: float
    output_tokens: int = 0  # generated tokens sent to the caller (generation routes)
    app: str | None = None  # the app called (goldmine.apps): the invoice bills it on a line of its own
    status: int = 200
    idempotency_key: str | None = None
    request_hash: str | None = None
    response: dict[str, Any] | None = None  # the reply; stored (less IN_RECORD) only with an idempotency key
    also: Callable[[Session], None] | None = None  # more rows committed with the record (answered items: feedback)


@dataclass
class Replay:
    """A stored response to return again for a repeated idempotency key."""

    request_id: str
    version: str
    body: dict[str, Any]


def request_hash(model: str, ref: str | None, texts: list) -> str:
    """Identifies a request's content (model, alias/version asked for, texts or pairs) for idempotency checks."""
    return hashlib.sha256(json.dumps([model, ref, texts], ensure_ascii=False).encode()).hexdigest()


class Meter:
    """Writes usage records (group-committed, in a worker thread) and answers idempotency look-ups.

    Args:
        max_group: records per shared transaction at most.
        replay_ttl_seconds: how long a stored reply may be replayed (`idempotency_ttl_seconds`).
        now: naive-UTC wall clock (tests pass a fake).
    """

    def __init__(self, db: Database, on_failure=None, max_group: int = 256, replay_ttl_seconds: float = 86_400,
                 now: Callable[[], datetime] = utcnow):
        self.db = db
        self._on_failure = on_failure or (lambda: None)
        self.max_group = max_group
        self.replay_ttl = timedelta(seconds=replay_ttl_seconds)
        self._now = now
        self._pending: list[tuple[Usage, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None
        self._raises: dict[str, tuple[int, float | None, list[asyncio.Future]]] = {}  # request id -> newest raise
        self._raiser: asyncio.Task | None = None

    @staticmethod
    def _row(usage: Usage, now) -> dict[str, Any]:
        fields = asdict(usage)
        fields.pop("also")
        response = fields.pop("response")
        fields["tenant_id"] = fields.pop("tenant")
        kept = {k: v for k, v in response.items() if k not in IN_RECORD} if response is not None else None
        return {**fields, "created_at": now, "response_json": json.dumps(kept) if kept is not None else None}

    def _insert(self, usage: Usage) -> None:
        with self.db.session() as session:
            session.add(UsageRecord(**self._row(usage, self._now())))
            if usage.also is not None:
                session.flush()  # the record first: its unique constraints decide, not the rows added with it
                usage.also(session)

    def _insert_many(self, usages: list[Usage]) -> None:
        now = self._now()
        with self.db.session() as session:
            session.execute(insert(UsageRecord), [self._row(u, now) for u in usages])
            for usage in usages:
                if usage.also is not None:
                    usage.also(session)

    async def record(self, usage: Usage) -> Replay | None:
        """Commit the record. Returns a `Replay` if an identical idempotent call won the race (nothing written)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((usage, future))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_pending())
        return await asyncio.shield(future)  # a caller that goes away does not break its group

    async def _write_pending(self) -> None:
        while self._pending:
            group, self._pending = self._pending[: self.max_group], self._pending[self.max_group :]
            if len(group) > 1:
                try:
                    await asyncio.to_thread(self._insert_many, [usage for usage, _ in group])
                except SQLAlchemyError:
                    pass  # written again one by one below: only the bad record fails
                else:
                    for _, future in group:
                        if not future.done():
                            future.set_result(None)
                    continue
            for usage, future in group:
                try:
                    outcome = await self._record_one(usage)
                except Exception as err:  # noqa: BLE001 - the caller gets the error
                    if not future.done():
                        future.set_exception(err)
                else:
                    if not future.done():
                        future.set_result(outcome)

    async def _record_one(self, usage: Usage) -> Replay | None:
        try:
            await asyncio.to_thread(self._insert, usage)
            return None
        except IntegrityError:
            if usage.idempotency_key is not None:
                replay = await asyncio.to_thread(self.find, usage.key_id, usage.idempotency_key, usage.request_hash)
                if replay is not None:
                    return replay
                try:  # the key's earlier reply had expired, and `find` has just forgotten it: the key is free
                    await asyncio.to_thread(self._insert, usage)
                    return None
                except SQLAlchemyError:
                    pass
            self._on_failure()
            raise UsageNotRecorded("the usage record could not be written; retry the call") from None
        except SQLAlchemyError:
            self._on_failure()
            raise UsageNotRecorded("the usage record could not be written; retry the call") from None

    def _set_many(self, raises: dict[str, tuple[int, float | None]]) -> None:
        try:
            with self.db.session() as session:
                for request_id, (tokens, latency_ms) in raises.items():
                    values: dict[str, Any] = {"output_tokens": tokens}
                    if latency_ms is not None:
                        values["latency_ms"] = latency_ms
                    session.execute(update(UsageRecord).where(UsageRecord.request_id == request_id).values(**values))
        except SQLAlchemyError:
            self._on_failure()
            raise UsageNotRecorded("the usage record could not be updated; the stream stops here") from None

    async def raise_output_tokens(self, request_id: str, output_tokens: int, latency_ms: float | None = None) -> None:
        """Raise a streaming call's record to the tokens sent so far (committed before they are sent: a stream cut
        by a disconnect or a crash is billed for exactly what reached the wire; raises `UsageNotRecorded`),
        group-committed: the raises of concurrent streams that arrive while a transaction commits go together in
        the next one (one fsync for all of them, not one per chunk per stream); each caller
        returns once a transaction holding its raise (or a later one of the same call) has committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        _, _, waiters = self._raises.get(request_id, (0, None, []))
        self._raises[request_id] = (output_tokens, latency_ms, [*waiters, future])
        if self._raiser is None or self._raiser.done():
            self._raiser = loop.create_task(self._write_raises())
        await asyncio.shield(future)

    async def _write_raises(self) -> None:
        while self._raises:
            group, self._raises = self._raises, {}
            try:
                await asyncio.to_thread(self._set_many, {rid: (t, ms) for rid, (t, ms, _) in group.items()})
            except Exception as err:  # noqa: BLE001 - every waiter of the group gets the error
                for _, _, waiters in group.values():
                    for future in waiters:
                        if not future.done():
                            future.set_exception(err)
                continue
            for _, _, waiters in group.values():
                for future in waiters:
                    if not future.done():
                        future.set_result(None)

    def find(self, key_id: str, idempotency_key: str, expected_hash: str | None) -> Replay | None:
        """The stored response for this key's idempotency key; `Conflict` if it was for a different request.

        A reply older than the retention is forgotten here and now (None: the key may be used again)."""
        with self.db.session() as session:
            row = session.scalar(select(UsageRecord).where(UsageRecord.key_id == key_id,
                                                           UsageRecord.idempotency_key == idempotency_key))
            if row is not None and row.created_at < self._now() - self.replay_ttl:
                _forget(session, [row.id])
                return None
        if row is None:
            return None
        if row.request_hash != expected_hash:
            raise Conflict("this Idempotency-Key was already used for a different request")
        body = {"request_id": row.request_id, "model": row.model, "version": row.version,
                **json.loads(row.response_json or "{}")}
        return Replay(row.request_id, row.version, body)

    def purge_expired(self) -> int:
        """Forget every stored reply older than the retention (its key, hash and text); returns how many."""
        cutoff = self._now() - self.replay_ttl
        purged = 0
        while True:
            with self.db.session() as session:
                if self.db.engine.dialect.name == "postgresql" and not session.scalar(
                        text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": PURGE_LOCK}):
                    return purged  # another replica is purging right now
                expired = select(UsageRecord.id).where(UsageRecord.idempotency_key.is_not(None),
                                                       UsageRecord.created_at < cutoff)
                ids = session.scalars(expired.limit(PURGE_CHUNK)).all()
                _forget(session, ids)
            purged += len(ids)
            if len(ids) < PURGE_CHUNK:
                return purged

    def texts_used(self, key_id: str, since: datetime) -> int:
        """Texts billed to a key since `since` (what a restarted server starts the monthly quota from)."""
        with self.db.session() as session:
            total = session.scalar(select(func.coalesce(func.sum(UsageRecord.items), 0)).where(
                UsageRecord.key_id == key_id, UsageRecord.created_at >= since, UsageRecord.status == 200))
        return int(total or 0)


def _forget(session, ids) -> None:
    if ids:
        session.execute(update(UsageRecord).where(UsageRecord.id.in_(ids))
                        .values(idempotency_key=None, request_hash=None, response_json=None)
                        .execution_options(synchronize_session=False))


async def purge_periodically(meter: Meter, every_seconds: float) -> None:
    """Run `meter.purge_expired` now and then every `every_seconds`, until cancelled (the app's lifespan).
    A failed purge (database briefly down) is logged and tried again next time."""
    while True:
        try:
            purged = await asyncio.to_thread(meter.purge_expired)
            if purged:
                log.info("deleted %d expired idempotent replies", purged)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("purging expired idempotent replies failed")
        await asyncio.sleep(every_seconds)


def usage_summary(db: Database, tenant: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Calls, texts, input and output tokens of `tenant` in [start, end), in total, per model (calls of the model
    routes) and per app (calls of /v1/apps/<app>/..., whichever models they ran)."""
    with db.session() as session:
        rows = session.execute(
            select(UsageRecord.app, UsageRecord.model, func.count(), func.sum(UsageRecord.items),
                   func.sum(UsageRecord.input_tokens), func.sum(UsageRecord.output_tokens))
            .where(UsageRecord.tenant_id == tenant, UsageRecord.created_at >= start, UsageRecord.created_at < end,
                   UsageRecord.status == 200)
            .group_by(UsageRecord.app, UsageRecord.model)
        ).all()
    by_model: dict[str, dict[str, Any]] = {}
    by_app: dict[str, dict[str, Any]] = {}
    for app, model, calls, items, tokens, output in rows:
        table, name, key = (by_model, model, "model") if app is None else (by_app, app, "app")
        line = table.setdefault(name, {key: name, "calls": 0, "items": 0, "input_tokens": 0, "output_tokens": 0})
        line["calls"] += int(calls)
        line["items"] += int(items or 0)
        line["input_tokens"] += int(tokens or 0)
        line["output_tokens"] += int(output or 0)
    lines = [*by_model.values(), *by_app.values()]
    return {
        "tenant": tenant, "start": start.isoformat() + "Z", "end": end.isoformat() + "Z",
        "calls": sum(r["calls"] for r in lines), "items": sum(r["items"] for r in lines),
        "input_tokens": sum(r["input_tokens"] for r in lines),
        "output_tokens": sum(r["output_tokens"] for r in lines),
        "by_model": [by_model[name] for name in sorted(by_model)],
        "by_app": [by_app[name] for name in sorted(by_app)],
    }
