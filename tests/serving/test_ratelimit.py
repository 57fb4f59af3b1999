"""Token buckets and monthly quotas on a fake clock."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from goldmine.serving.errors import QuotaExhausted, RateLimited
from goldmine.serving.ratelimit import LocalLimiter, next_month_start


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def limiter(used: int = 0, clock=None, now=datetime(2026, 11, 30, 23, 0)):
    loads = []

    def counter(key_id, since):
        loads.append((key_id, since))
        return used

    return LocalLimiter(counter, clock=clock or Clock(), now=lambda: now), loads


def test_bucket_allows_a_burst_then_refills():
    clock = Clock()
    lim, _ = limiter(clock=clock)

    async def main():
        decisions = [await lim.check_rate("k", 2.0) for _ in range(2)]
        with pytest.raises(RateLimited) as err:
            await lim.check_rate("k", 2.0)
        clock.t += 0.5  # one token back at 2/s
        after = await lim.check_rate("k", 2.0)
        return decisions, err.value, after

    decisions, err, after = asyncio.run(main())
    assert [(d.limit, d.remaining) for d in decisions] == [(2, 1), (2, 0)]
    assert decisions[0].headers() == {"RateLimit-Limit": "2", "RateLimit-Remaining": "1", "RateLimit-Reset": "1"}
    assert err.headers["Retry-After"] == "1" and err.headers["RateLimit-Remaining"] == "0"
    assert "rate limit of 2 requests/s exceeded" in str(err)
    assert after.allowed and after.remaining == 0


def test_keys_have_their_own_buckets_and_no_rate_means_no_limit():
    lim, _ = limiter()

    async def main():
        await lim.check_rate("a", 1.0)
        await lim.check_rate("b", 1.0)
        return [await lim.check_rate("c", None) for _ in range(100)]

    assert asyncio.run(main()) == [None] * 100


def test_slow_rate_retry_after():
    lim, _ = limiter()

    async def main():
        await lim.check_rate("k", 0.1)
        with pytest.raises(RateLimited) as err:
            await lim.check_rate("k", 0.1)
        return err.value

    assert asyncio.run(main()).headers["Retry-After"] == "10"


def test_quota_counts_texts_from_the_records_and_resets_next_month():
    lim, loads = limiter(used=8)

    async def main():
        await lim.reserve_quota("k", 10, 2)
        with pytest.raises(QuotaExhausted) as err:
            await lim.reserve_quota("k", 10, 1)
        await lim.release_quota("k", 2)
        await lim.reserve_quota("k", 10, 2)
        await lim.reserve_quota("k", None, 10**9)
        return err.value

    err = asyncio.run(main())
    assert loads == [("k", datetime(2026, 11, 1))]  # loaded once per key and month
    assert "monthly quota of 10 texts exhausted (10 used, this call has 1)" in str(err)
    assert "it resets at 2026-12-01T00:00:00Z" in str(err)
    assert err.headers["Retry-After"] == "3600"


def test_next_month_start():
    assert next_month_start(datetime(2026, 12, 31, 23, 59)) == datetime(2027, 1, 1)
    assert next_month_start(datetime(2026, 2, 3)) == datetime(2026, 3, 1)
