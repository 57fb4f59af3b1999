"""Metering: group commit of concurrent usage records, a bad record failing only its own call, and stored
replies that expire."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import pytest

from goldmine.serving import metering
from goldmine.serving.db import UsageRecord
from goldmine.serving.errors import Conflict, UsageNotRecorded
from goldmine.serving.metering import Meter, Usage


def usage(request_id: str, key: str | None = None) -> Usage:
    return Usage(request_id, "acme", "k1", "m", "v1", 1, 7, 2.0, idempotency_key=key,
                 request_hash="h" if key else None, response={"ok": True} if key else None)


def stored(db) -> list[str]:
    with db.session() as s:
        return sorted(r.request_id for r in s.query(UsageRecord))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_records_share_transactions(db):
    meter = Meter(db)
    groups = []
    real = meter._insert_many
    meter._insert_many = lambda usages: (groups.append(len(usages)), real(usages))[1]

    async def main():
        return await asyncio.gather(*(meter.record(usage(f"r{i:02d}")) for i in range(30)))

    assert asyncio.run(main()) == [None] * 30
    assert stored(db) == [f"r{i:02d}" for i in range(30)]
    assert groups and sum(groups) <= 30 and len(groups) < 30  # fewer transactions than records


def test_a_bad_record_fails_only_its_own_call(db):
    failures = []
    meter = Meter(db, on_failure=lambda: failures.append(1))

    async def main():
        calls = [usage(f"r{i}") for i in range(5)] + [usage("r2")]  # request ids are unique: the 2nd r2 fails
        return await asyncio.gather(*(meter.record(u) for u in calls), return_exceptions=True)

    results = asyncio.run(main())
    assert results[:5] == [None] * 5 and isinstance(results[5], UsageNotRecorded)
    assert stored(db) == [f"r{i}" for i in range(5)] and failures == [1]


def test_a_repeated_idempotency_key_in_one_group_replays_the_first(db):
    meter = Meter(db)

    async def main():
        return await asyncio.gather(meter.record(usage("a", key="order-1")), meter.record(usage("b", key="order-1")),
                                    meter.record(usage("c")))

    first, second, other = asyncio.run(main())
    assert first is None and other is None
    assert second is not None and second.request_id == "a"
    assert second.body == {"request_id": "a", "model": "m", "version": "v1", "ok": True}
    assert stored(db) == ["a", "c"]


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 30, 12, 0)

    def __call__(self) -> datetime:
        return self.now


def reply(request_id: str, key: str, request_hash: str = "h") -> Usage:
    body = {"request_id": request_id, "model": "m", "version": "v1", "predictions": [{"entities": ["Anna"]}]}
    return Usage(request_id, "acme", "k1", "m", "v1", 1, 7, 2.0, idempotency_key=key, request_hash=request_hash,
                 response=body)


def rows(db) -> list[UsageRecord]:
    with db.session() as s:
        return list(s.query(UsageRecord).order_by(UsageRecord.id))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_stored_replies_expire_and_the_purge_deletes_them(db):
    clock = Clock()
    meter = Meter(db, replay_ttl_seconds=60, now=clock)
    assert asyncio.run(meter.record(reply("r1", "order-1"))) is None
    [row] = rows(db)
    assert json.loads(row.response_json) == {"predictions": [{"entities": ["Anna"]}]}  # no more than replay needs
    clock.now += timedelta(seconds=59)
    assert meter.find("k1", "order-1", "h").body["predictions"] == [{"entities": ["Anna"]}]
    with pytest.raises(Conflict):
        meter.find("k1", "order-1", "another request")
    assert meter.purge_expired() == 0
    clock.now += timedelta(seconds=2)
    assert meter.purge_expired() == 1
    [row] = rows(db)
    assert (row.idempotency_key, row.request_hash, row.response_json) == (None, None, None)
    assert (row.request_id, row.items, row.input_tokens) == ("r1", 1, 7)  # the usage record stays, for billing
    assert meter.find("k1", "order-1", "another request") is None  # the key may be used again
    assert asyncio.run(meter.record(reply("r2", "order-1", "another request"))) is None
    assert [r.idempotency_key for r in rows(db)] == [None, "order-1"]


def test_an_expired_reply_frees_its_key_before_any_purge(db):
    clock = Clock()
    meter = Meter(db, replay_ttl_seconds=60, now=clock)
    asyncio.run(meter.record(reply("r1", "order-1")))
    asyncio.run(meter.record(reply("r2", "order-2")))
    clock.now += timedelta(seconds=61)
    assert meter.find("k1", "order-1", "new") is None  # seen expired: forgotten at once
    # a call that raced past the look-up: the unique key is taken by an expired reply, which is forgotten
    assert asyncio.run(meter.record(reply("r3", "order-2", "new"))) is None
    assert asyncio.run(meter.record(reply("r4", "order-1", "new"))) is None
    assert [(r.request_id, r.idempotency_key, r.request_hash) for r in rows(db)] == [
        ("r1", None, None), ("r2", None, None), ("r3", "order-2", "new"), ("r4", "order-1", "new")]


def test_purge_works_in_chunks(db, monkeypatch):
    monkeypatch.setattr(metering, "PURGE_CHUNK", 2)
    clock = Clock()
    meter = Meter(db, replay_ttl_seconds=60, now=clock)
    for i in range(5):
        asyncio.run(meter.record(reply(f"r{i}", f"order-{i}")))
    asyncio.run(meter.record(usage("plain")))
    clock.now += timedelta(seconds=61)
    asyncio.run(meter.record(reply("fresh", "order-new")))
    assert meter.purge_expired() == 5
    assert [r.request_id for r in rows(db) if r.response_json is not None] == ["fresh"]


def test_concurrent_streams_raise_their_output_tokens_in_shared_transactions(db):
    meter = Meter(db)
    transactions = []
    write = meter._set_many
    meter._set_many = lambda raises: (transactions.append(dict(raises)), write(raises))[1]

    async def main():
        for i in range(4):
            await meter.record(usage(f"s{i}"))
        await asyncio.gather(*(meter.raise_output_tokens(f"s{i}", step) for step in range(1, 6) for i in range(4)))

    asyncio.run(main())
    assert len(transactions) < 20  # 20 raises, far fewer commits
    assert sum(len(t) for t in transactions) < 20
    with db.session() as s:
        assert {r.request_id: r.output_tokens for r in s.query(UsageRecord)} == {f"s{i}": 5 for i in range(4)}


def test_rows_added_with_a_record_commit_with_it_or_not_at_all(db, settings):
    """`Usage.also` (the answered items feedback refers to) shares its record's transaction: grouped or alone,
    a record that fails (here a repeated request id) leaves none of its rows behind."""
    from goldmine.serving.db import AnsweredItem
    from goldmine.serving.feedback import answered_items, text_digest

    meter = Meter(db)

    def with_items(request_id: str, text: str) -> Usage:
        u = usage(request_id)
        u.also = answered_items(settings, "acme", "m", "v1", request_id, [text], [{"label": "a", "score": 0.9}])
        return u

    async def main():
        calls = [with_items(f"r{i}", f"text {i}") for i in range(5)] + [with_items("r2", "a second r2")]
        return await asyncio.gather(*(meter.record(u) for u in calls), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert outcomes[:5] == [None] * 5 and isinstance(outcomes[5], UsageNotRecorded)
    with db.session() as s:
        items = sorted((r.request_id, r.text_sha256) for r in s.query(AnsweredItem))
    assert items == [(f"r{i}", text_digest(f"r{i}", 0, f"text {i}")) for i in range(5)]
