"""Rate limits (a token bucket per key), token rate limits (generation) and monthly quotas (texts per month, UTC).

`Limiter` is the interface the request path uses; `LocalLimiter` keeps the state in this process, which is
right for one server. Several replicas share `RedisLimiter` (selected by `redis_url`): every check is one Lua
script, so read-modify-write is atomic across replicas and the bucket runs on Redis's clock, not the
replicas'. If Redis cannot be reached, calls fail closed with 503 rather than go unlimited.

The bucket holds `burst` tokens (by default one second's worth: ceil(rate)) and refills at `rate` per second;
each call takes one. The quota counts texts of billable calls; it is reserved before inference and released
when the call fails, so concurrent calls cannot overrun it. A process starts each key's monthly count from
the usage records, so a restart forgets nothing.

The generation routes also limit *tokens* per minute per key (`tokens_per_minute`): a second bucket holding a
minute's tokens, refilled continuously. A call takes its prompt plus its `max_tokens` before it starts (the most it
may use) and gives back what it did not generate when it ends, so concurrent streams cannot overrun the limit and an
early stop costs only what was used. A call that alone needs more than a minute's tokens is refused outright (it
could never pass), the others wait for `Retry-After`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from goldmine.serving.db import utcnow
from goldmine.serving.errors import InvalidRequest, Overloaded, QuotaExhausted, RateLimited

T = TypeVar("T")


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

    async def take_tokens(self, key_id: str, per_minute: int | None, tokens: int) -> None:
        """Take `tokens` from the key's per-minute token bucket; raises `RateLimited` (and takes nothing) when the
        bucket holds fewer, `InvalidRequest` when the call needs more than the whole bucket."""
        raise NotImplementedError

    async def return_tokens(self, key_id: str, per_minute: int | None, tokens: int) -> None:
        """Give back tokens a call reserved and did not use."""
        raise NotImplementedError

    async def ping(self) -> bool:
        """Whether the limit state is reachable (for /readyz)."""
        return True

    async def close(self) -> None:
        return None


def _rate_limited(rate: float, burst: int, tokens: float) -> RateLimited:
    decision = Decision(False, burst, 0, (burst - tokens) / rate, (1 - tokens) / rate)
    return RateLimited(f"rate limit of {rate:g} requests/s exceeded; retry after {decision.headers()['Retry-After']}s",
                       decision.headers())


def _too_many_tokens(per_minute: int, tokens: int, available: float) -> RateLimited:
    wait = max(1, math.ceil((tokens - available) / (per_minute / 60)))
    return RateLimited(f"token rate limit of {per_minute} tokens/min exceeded (this call may use {tokens}, "
                       f"{max(0, int(available))} are left); retry after {wait}s", {"Retry-After": str(wait)})


def _check_fits(per_minute: int, tokens: int) -> None:
    if tokens > per_minute:
        raise InvalidRequest(f"this call may use {tokens} tokens (prompt + max_tokens) but the key allows "
                             f"{per_minute} per minute: lower max_tokens or shorten the prompt")


def _quota_exhausted(quota: int, used: int, items: int, now: datetime) -> QuotaExhausted:
    resets = next_month_start(now)
    wait = max(1, math.ceil((resets - now).total_seconds()))
    return QuotaExhausted(f"monthly quota of {quota} texts exhausted ({used} used, this call has {items}); "
                          f"it resets at {resets.isoformat()}Z", {"Retry-After": str(wait)})


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
        self._token_buckets: dict[str, tuple[float, float]] = {}  # key -> (generation tokens, at)
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
            raise _rate_limited(rate, burst, tokens)
        tokens -= 1
        self._buckets[key_id] = (tokens, now)
        return Decision(True, burst, int(tokens), (burst - tokens) / rate)

    def _tokens_now(self, key_id: str, per_minute: int) -> float:
        now = self._clock()
        tokens, at = self._token_buckets.get(key_id, (float(per_minute), now))
        return min(float(per_minute), tokens + (now - at) * per_minute / 60)

    async def take_tokens(self, key_id: str, per_minute: int | None, tokens: int) -> None:
        if per_minute is None:
            return
        _check_fits(per_minute, tokens)
        available = self._tokens_now(key_id, per_minute)
        if available < tokens:
            self._token_buckets[key_id] = (available, self._clock())
            raise _too_many_tokens(per_minute, tokens, available)
        self._token_buckets[key_id] = (available - tokens, self._clock())

    async def return_tokens(self, key_id: str, per_minute: int | None, tokens: int) -> None:
        if per_minute is None or tokens <= 0:
            return
        self._token_buckets[key_id] = (min(float(per_minute), self._tokens_now(key_id, per_minute) + tokens),
                                       self._clock())

    async def reserve_quota(self, key_id: str, quota: int | None, items: int) -> None:
        if quota is None:
            return
        month = month_start(self._now())
        slot = (key_id, month)
        if slot not in self._used:
            used = await asyncio.to_thread(self._usage_counter, key_id, month)
            self._used.setdefault(slot, used)  # a concurrent call may have loaded it meanwhile
        if self._used[slot] + items > quota:
            raise _quota_exhausted(quota, self._used[slot], items, self._now())
        self._used[slot] += items

    async def release_quota(self, key_id: str, items: int) -> None:
        slot = (key_id, month_start(self._now()))
        if slot in self._used:
            self._used[slot] = max(0, self._used[slot] - items)


_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""

_TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local per_second, size, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or size
local at = tonumber(state[2]) or now
tokens = math.min(size, tokens + math.max(0, now - at) * per_second)
local allowed = 0
if cost <= tokens or cost < 0 then
  tokens = math.min(size, tokens - cost)
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 61000)
return {allowed, tostring(tokens)}
"""

_RESERVE = """
local used = redis.call('GET', KEYS[1])
if not used then
  return {-1, 0}
end
used = tonumber(used)
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, used}
end
return {1, redis.call('INCRBY', KEYS[1], ARGV[1])}
"""

_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('DECRBY', KEYS[1], ARGV[1]) < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
end
return 0
"""

QUOTA_TTL_SECONDS = 35 * 24 * 3600  # a month's counter outlives its month, then goes


class RedisLimiter(Limiter):
    """Limits shared by every replica that points at the same Redis (`redis_url`).

    Args:
        url: e.g. `redis://127.0.0.1:6379/0`.
        usage_counter: as for `LocalLimiter`: a month's counter missing in Redis (first use, or Redis restarted)
            starts from the usage records (`SET NX`, so concurrent replicas agree on one start).
        prefix: namespace of the keys in Redis.
    """

    def __init__(self, url: str, usage_counter: Callable[[str, datetime], int], prefix: str = "goldmine:",
                 now: Callable[[], datetime] = utcnow):
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._usage_counter = usage_counter
        self._prefix = prefix
        self._now = now
        self._bucket = self._redis.register_script(_BUCKET)
        self._reserve = self._redis.register_script(_RESERVE)
        self._release = self._redis.register_script(_RELEASE)
        self._tokens = self._redis.register_script(_TOKENS)

    def _quota_key(self, key_id: str, month: datetime) -> str:
        return f"{self._prefix}quota:{key_id}:{month:%Y-%m}"

    async def _call(self, script, keys: list[str], args: list) -> list:
        return await self._guarded(script(keys=keys, args=args))

    @staticmethod
    async def _guarded(call: Awaitable[T]) -> T:
        """Every Redis round trip goes through here: an outage fails the call closed, with 503, never a 500."""
        from redis.exceptions import RedisError

        try:
            return await call
        except (RedisError, OSError) as err:
            raise Overloaded(f"rate-limit store unavailable ({type(err).__name__}); retry", {"Retry-After": "1"}) \
                from None

    async def check_rate(self, key_id: str, rate: float | None) -> Decision | None:
        if rate is None:
            return None
        burst = max(1, math.ceil(rate))
        allowed, tokens = await self._call(self._bucket, [f"{self._prefix}bucket:{key_id}"], [repr(rate), burst])
        tokens = float(tokens)
        if not allowed:
            raise _rate_limited(rate, burst, tokens)
        return Decision(True, burst, int(tokens), (burst - tokens) / rate)

    async def take_tokens(self, key_id: str, per_minute: int | None, tokens: int) -> None:
        if per_minute is None:
            return
        _check_fits(per_minute, tokens)
        allowed, left = await self._call(self._tokens, [f"{self._prefix}tokens:{key_id}"],
                                         [repr(per_minute / 60), per_minute, tokens])
        if not allowed:
            raise _too_many_tokens(per_minute, tokens, float(left))

    async def return_tokens(self, key_id: str, per_minute: int | None, tokens: int) -> None:
        if per_minute is None or tokens <= 0:
            return
        await self._call(self._tokens, [f"{self._prefix}tokens:{key_id}"], [repr(per_minute / 60), per_minute,
                                                                              -tokens])

    async def reserve_quota(self, key_id: str, quota: int | None, items: int) -> None:
        if quota is None:
            return
        month = month_start(self._now())
        key = self._quota_key(key_id, month)
        for _ in range(2):
            status, used = await self._call(self._reserve, [key], [items, quota])
            if status == 1:
                return
            if status == 0:
                raise _quota_exhausted(quota, int(used), items, self._now())
            start = await asyncio.to_thread(self._usage_counter, key_id, month)
            await self._guarded(self._redis.set(key, start, nx=True, ex=QUOTA_TTL_SECONDS))
        raise Overloaded("rate-limit store lost the quota counter twice; retry", {"Retry-After": "1"})

    async def release_quota(self, key_id: str, items: int) -> None:
        await self._call(self._release, [self._quota_key(key_id, month_start(self._now()))], [items])

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False

    async def close(self) -> None:
        await self._redis.aclose()
