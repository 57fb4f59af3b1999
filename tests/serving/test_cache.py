"""The TTL cache of the request path: expiry, invalidation generations, one shared look-up per key."""

from __future__ import annotations

import asyncio

import pytest

from goldmine.serving.cache import TtlCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_ttl():
    clock = Clock()
    cache = TtlCache(2.0, clock=clock)
    cache.put("k", "v")
    clock.now += 1.9
    assert cache.get("k") == "v"
    clock.now += 0.2
    assert cache.get("k") is None


def test_zero_ttl_stores_nothing():
    cache = TtlCache(0)
    cache.put("k", "v")
    assert cache.get("k") is None


def test_a_look_up_from_before_an_invalidation_is_not_stored():
    cache = TtlCache(10.0)
    generation = cache.generation
    cache.invalidate()  # e.g. a promotion while the look-up ran
    cache.put("k", "stale", generation)
    assert cache.get("k") is None
    cache.put("k", "fresh", cache.generation)
    assert cache.get("k") == "fresh"


def test_full_cache_drops_expired_entries_first():
    clock = Clock()
    cache = TtlCache(1.0, max_entries=2, clock=clock)
    cache.put("old", 1)
    clock.now += 2
    cache.put("a", 2)
    cache.put("b", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("old")) == (2, 3, None)


def test_concurrent_misses_share_one_look_up_and_failures_are_not_cached():
    cache = TtlCache(10.0)
    calls = []

    async def fetch():
        calls.append(1)
        await asyncio.sleep(0.01)
        return "value"

    async def failing():
        calls.append(1)
        raise LookupError("no such key")

    async def main():
        values = await asyncio.gather(*(cache.load("k", fetch) for _ in range(20)))
        assert values == ["value"] * 20 and len(calls) == 1
        assert await cache.load("k", fetch) == "value" and len(calls) == 1  # cached
        for _ in range(2):
            with pytest.raises(LookupError):
                await cache.load("bad", failing)
        assert len(calls) == 3  # each failed look-up ran again

    asyncio.run(main())
