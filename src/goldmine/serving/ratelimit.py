"""Rate limits (a token bucket per key) and monthly quotas (texts per calendar month, UTC).

`Limiter` is the interface the request path uses; `LocalLimiter` keeps the state in this process, which is
right for one server. Several replicas need shared state: a Redis implementation of the same interface
(one Lua script per check, so the read-modify-write is atomic) is selected by `redis_url` (to follow).

The bucket holds `burst` tokens (by default one second's worth: ceil(rate)) and refills at `rate` per second;
each call takes one. The quota counts texts of billable calls; it is reserved before inference and released
when the call fails, so concurrent calls cannot overrun it. A process starts each key's monthly count from
the usage records, so a restart forgets nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from goldmine.serving.db import utcnow
from goldmine.serving.errors import QuotaExhausted, RateLimited


@dataclass(frozen=True)
class Decision:
    """The outcome of one rate-limit check, with what the client should be told."""

    allowed: bool
    limit: int  # bucket size (requests allowed in a burst)
    remaining: int  # whole tokens left after this call
    reset: float  # seconds until the bucket is full again
    retry_after: float = 0.0  # seconds until the next call would be allowed

    def headers(self) -> dict[str, str]:
        out = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
               "RateLimit-Reset": str(math.ceil(self.reset))}
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return out


def month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(moment: datetime) -> datetime:
    start = month_start(moment)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


class Limiter:
    """What the request path needs: `check_rate` before work, `reserve_quota` / `release_quota` around it."""

    async def check_rate(self, key_id: str, rate: float | None) -> Decision | None:
        """Take one token from the key's bucket; None when the key has no rate limit. Raises `RateLimited`."""
        raise NotImplementedError

    async def reserve_quota(self, key_id: str, quota: int | None, items: int) -> None:
        """Count `items` texts against this month's quota. Raises `QuotaExhausted` (nothing reserved then)."""
        raise NotImplementedError

    async def release_quota(self, key_id: str, items: int) -> None:
        """Give back a reservation of a call that was not billed."""
        raise NotImplementedError


class LocalLimiter(Limiter):
    """In-process limits.

    Args:
        usage_counter: `(key_id, month_start) -> texts already billed this month` (read from the usage records;
            runs in a worker thread, once per key and month).
        clock: monotonic seconds (tests pass a fake).
        now: naive-UTC wall clock for month boundaries.
    """

    def __init__(self, usage_counter: Callable[[str, datetime], int], clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = utcnow):
        self._usage_counter = usage_counter
        self._clock = clock
        self._now = now
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._used: dict[tuple[str, datetime], int] = {}

    async def check_rate(self, key_id: str, rate: float | None) -> Decision | None:
        if rate is None:
            return None
        burst = max(1, math.ceil(rate))
        now = self._clock()
        tokens, at = self._buckets.get(key_id, (float(burst), now))
        tokens = min(float(burst), tokens + (now - at) * rate)
        if tokens < 1:
            self._buckets[key_id] = (tokens, now)
            decision = Decision(False, burst, 0, (burst - tokens) / rate, (1 - tokens) / rate)
            raise RateLimited(f"rate limit of {rate:g} requests/s exceeded; retry after "
                              f"{decision.headers()['Retry-After']}s", decision.headers())
        tokens -= 1
        self._buckets[key_id] = (tokens, now)
        return Decision(True, burst, int(tokens), (burst - tokens) / rate)

    async def reserve_quota(self, key_id: str, quota: int | None, items: int) -> None:
        if quota is None:
            return
        month = month_start(self._now())
        slot = (key_id, month)
        if slot not in self._used:
            used = await asyncio.to_thread(self._usage_counter, key_id, month)
            self._used.setdefault(slot, used)  # a concurrent call may have loaded it meanwhile
        if self._used[slot] + items > quota:
            resets = next_month_start(month)
            wait = max(1, math.ceil((resets - self._now()).total_seconds()))
            raise QuotaExhausted(
                f"monthly quota of {quota} texts exhausted ({self._used[slot]} used, this call has {items}); "
                f"it resets at {resets.isoformat()}Z",
                {"Retry-After": str(wait)},
            )
        self._used[slot] += items

    async def release_quota(self, key_id: str, items: int) -> None:
        slot = (key_id, month_start(self._now()))
        if slot in self._used:
            self._used[slot] = max(0, self._used[slot] - items)
