"""Token buckets and monthly quotas on a fake clock."""

from __future__ import annotations

import asyncio
import math
import time
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


# ---- Redis: the same limits shared by several replicas (a real redis-server) ---------------------------------


def redis_limiter(url: str, used: int = 0):
    from goldmine.serving.ratelimit import RedisLimiter

    return RedisLimiter(url, lambda key_id, since: used)


def test_redis_bucket_and_headers(redis_url):
    async def main():
        lim = redis_limiter(redis_url)
        decisions = [await lim.check_rate("k", 3.0) for _ in range(3)]
        with pytest.raises(RateLimited) as err:
            await lim.check_rate("k", 3.0)
        other = await lim.check_rate("other", 3.0)
        none = await lim.check_rate("k", None)
        await lim.close()
        return decisions, err.value, other, none

    decisions, err, other, none = asyncio.run(main())
    assert [(d.limit, d.remaining) for d in decisions] == [(3, 2), (3, 1), (3, 0)]
    assert err.headers["Retry-After"] == "1" and other.remaining == 2 and none is None


def test_two_replicas_share_one_bucket(redis_url):
    """Two limiters with their own connections (as two server processes would have) hammer one key for 1.5 s:
    together they grant no more than the burst plus the rate times the elapsed time."""
    rate = 10.0

    async def main():
        replicas = [redis_limiter(redis_url), redis_limiter(redis_url)]
        granted = 0
        started = time.monotonic()
        for i in range(300):  # bounded: at most 300 attempts, ~5 ms apart
            if time.monotonic() - started > 1.5:
                break
            try:
                await replicas[i % 2].check_rate("shared", rate)
                granted += 1
            except RateLimited:
                pass
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        for r in replicas:
            await r.close()
        return granted, elapsed

    granted, elapsed = asyncio.run(main())
    assert granted <= math.ceil(rate) + rate * elapsed + 1
    assert granted >= rate * elapsed * 0.5  # and the limit still lets the allowed rate through


def test_two_replicas_share_one_quota_started_from_the_records(redis_url):
    async def main():
        replicas = [redis_limiter(redis_url, used=4), redis_limiter(redis_url, used=4)]
        results = await asyncio.gather(*(replicas[i % 2].reserve_quota("k", 10, 1) for i in range(20)),
                                       return_exceptions=True)
        await replicas[0].release_quota("k", 2)
        again = await asyncio.gather(*(replicas[1].reserve_quota("k", 10, 1) for _ in range(5)),
                                     return_exceptions=True)
        for r in replicas:
            await r.close()
        return results, again

    results, again = asyncio.run(main())
    assert sum(r is None for r in results) == 6  # 4 already billed, quota 10
    assert all(isinstance(r, QuotaExhausted) for r in results if r is not None)
    assert sum(r is None for r in again) == 2


def test_redis_down_fails_closed():
    from goldmine.serving.errors import Overloaded

    async def main():
        lim = redis_limiter("redis://127.0.0.1:1/0")
        with pytest.raises(Overloaded, match="rate-limit store unavailable"):
            await lim.check_rate("k", 1.0)
        ok = await lim.ping()
        await lim.close()
        return ok

    assert asyncio.run(main()) is False


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


async def counter_missing(keys, args):
    return [-1, 0]  # what the reserve script answers when Redis lost the month's counter (a restart)


def test_redis_down_while_restoring_the_quota_counter_fails_closed():
    """The quota counter's restore (`SET NX`, outside the Lua scripts) goes through the same outage handling."""
    from goldmine.serving.errors import Overloaded

    async def main():
        lim = redis_limiter(f"redis://127.0.0.1:{closed_port()}/0", used=3)
        lim._reserve = counter_missing  # the script got through; Redis goes away before the SET
        try:
            with pytest.raises(Overloaded, match="rate-limit store unavailable") as err:
                await lim.reserve_quota("k", 10, 1)
        finally:
            await lim.close()
        return err.value

    assert asyncio.run(main()).headers == {"Retry-After": "1"}


def test_redis_outage_over_http_is_503_with_the_error_shape(settings, db, models):
    from fastapi.testclient import TestClient

    from goldmine.serving.app import create_app
    from goldmine.serving.auth import create_key

    key = create_key(db, "acme", "predict", monthly_quota=10).key
    settings.redis_url = f"redis://127.0.0.1:{closed_port()}/0"
    with TestClient(create_app(settings)) as client:
        client.app.state.services.limiter._reserve = counter_missing
        r = client.post("/v1/models/intents/predict", json={"texts": ["a"]},
                        headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "overloaded" and "rate-limit store unavailable" in r.json()["error"]["message"]


def token_limiters(redis_url: str | None):
    """A LocalLimiter on a fake clock, or a RedisLimiter (on Redis's clock)."""
    if redis_url is None:
        clock = Clock()
        return LocalLimiter(lambda k, s: 0, clock=clock), clock
    from goldmine.serving.ratelimit import RedisLimiter

    return RedisLimiter(redis_url, lambda k, s: 0), None


@pytest.mark.parametrize("store", ["local", "redis"])
def test_generation_tokens_are_taken_up_front_given_back_and_refilled(store, request):
    from goldmine.serving.errors import InvalidRequest

    lim, clock = token_limiters(request.getfixturevalue("redis_url") if store == "redis" else None)

    async def main():
        await lim.take_tokens("k", 600, 500)  # prompt + max_tokens of a first call
        with pytest.raises(RateLimited) as err:
            await lim.take_tokens("k", 600, 200)  # 100 left
        assert int(err.value.headers["Retry-After"]) >= 1
        await lim.return_tokens("k", 600, 450)  # it wrote 50 of its 500: 450 back
        await lim.take_tokens("k", 600, 500)  # 550 left: fits now
        with pytest.raises(InvalidRequest, match="per minute"):
            await lim.take_tokens("k", 600, 601)  # more than a minute's worth: never
        await lim.take_tokens("other", 600, 600)  # keys have their own buckets
        await lim.take_tokens("k", None, 10**9)  # no limit set: nothing counted
        if clock is not None:
            clock.t += 60  # a minute later the bucket is full again
            await lim.take_tokens("k", 600, 600)
        await lim.close()

    asyncio.run(main())
