"""A small time-to-live cache for what the request path would otherwise read from the database on every call.

Used for API keys that authenticated (`auth_cache_seconds`) and for alias -> version resolutions
(`alias_cache_seconds`). Only successes are stored. `load` runs one look-up per key at a time: when an entry
expires under load, the concurrent calls that miss share that one look-up instead of each making their own.
`invalidate()` empties the cache and starts a new generation: a look-up that began before the invalidation
cannot store its (possibly stale) answer afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    """`get(key)` -> the value stored less than `ttl` seconds ago, else None. `ttl=0` turns it off."""

    def __init__(self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[Hashable, tuple[V, float]] = {}
        self._loading: dict[Hashable, asyncio.Task] = {}
        self.generation = 0

    def get(self, key: Hashable) -> V | None:
        if not self.ttl:
            return None
        entry = self._entries.get(key)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def put(self, key: Hashable, value: V, generation: int | None = None) -> None:
        """Store `value`, unless the cache was invalidated since `generation` (read before the look-up began)."""
        if not self.ttl or (generation is not None and generation != self.generation):
            return
        now = self._clock()
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = (value, now + self.ttl)

    async def load(self, key: Hashable, fetch: Callable[[], Awaitable[V]]) -> V:
        """The cached value, else `await fetch()` (shared by concurrent callers of the same key), then cached."""
        value = self.get(key)
        if value is not None:
            return value
        task = self._loading.get(key)
        if task is None:
            generation = self.generation
            task = asyncio.ensure_future(fetch())
            self._loading[key] = task

            def done(t: asyncio.Task) -> None:
                self._loading.pop(key, None)
                if not t.cancelled() and t.exception() is None:
                    self.put(key, t.result(), generation)

            task.add_done_callback(done)
        return await asyncio.shield(task)  # one caller going away does not cancel the others' look-up

    def invalidate(self) -> None:
        self._entries.clear()
        self._loading.clear()
        self.generation += 1
