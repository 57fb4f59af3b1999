"""Metering: group commit of concurrent usage records, and a bad record failing only its own call."""

from __future__ import annotations

import asyncio

import pytest

from goldmine.serving.db import UsageRecord
from goldmine.serving.errors import UsageNotRecorded
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
    assert second is not None and second.request_id == "a" and second.body == {"ok": True}
    assert stored(db) == ["a", "c"]
