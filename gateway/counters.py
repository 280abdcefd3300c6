"""Counting one request's rate limits in storage, every limit at once.

``limits`` owns the strategies (fixed window, moving window, sliding window counter) and the keys
they count under; this module only decides how many trips to storage a request costs:

- :class:`LibraryCounters` calls the ``limits`` strategy per limit (memory storage, where a call
  costs no trip, and Redis Cluster, where a request's keys live in different hash slots);
- :class:`ScriptCounters` (Redis, single node or Sentinel) runs every limit's step in one Lua
  script, on the same keys and by the same rules as the ``limits`` scripts, and reads each limit's
  figures (remaining, reset) in the same call: an allowed request costs one round trip whatever
  the number of limits, and a refused one no more. With three limits that is one EVALSHA
  instead of four.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from limits import RateLimitItem

if TYPE_CHECKING:
    from limits.aio.strategies import RateLimiter

    from gateway.storage import RedisKeyValue

__all__ = ["Counters", "Hit", "LibraryCounters", "ScriptCounters", "Tally", "sliding_figures"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One limit a request counts against: the item, whose count it is, and how many messages."""

    item: RateLimitItem
    identifiers: tuple[str, ...]
    cost: int

    @property
    def tightness(self) -> tuple[int, int]:
        return (self.item.amount, -self.item.get_expiry())


@dataclass(frozen=True, slots=True)
class Tally:
    """A limit's answer; ``figures`` is (remaining, whole seconds to reset), None when not read."""

    allowed: bool
    figures: tuple[int, int] | None = None


class Counters(Protocol):
    async def count(self, hits: Sequence[Hit]) -> list[Tally]:
        """Count every hit (each on its own: one refused does not stop the others counting)."""
        ...

    async def figures(self, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        """(remaining, seconds to reset) of limits whose tally came without them."""
        ...


def _reset_in(reset_time: float, now: float) -> int:
    return math.ceil(max(0.0, reset_time - now))


class LibraryCounters:
    """The ``limits`` strategy, one call per limit (gathered: concurrent, not one after another)."""

    __slots__ = ("_gather", "_limiter")

    def __init__(self, limiter: RateLimiter, gather: Any) -> None:
        self._limiter = limiter
        self._gather = gather

    async def count(self, hits: Sequence[Hit]) -> list[Tally]:
        limiter = self._limiter
        allowed = await self._gather(limiter.hit(h.item, *h.identifiers, cost=h.cost) for h in hits)
        return [Tally(bool(ok)) for ok in allowed]

    async def figures(self, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        limiter = self._limiter
        windows = await self._gather(limiter.get_window_stats(h.item, *h.identifiers) for h in hits)
        now = time.time()
        return [(int(w.remaining), _reset_in(w.reset_time, now)) for w in windows]


def sliding_figures(
    limit: int, expiry: int, previous: int, previous_ttl_s: float, current: int, current_ttl_s: float
) -> tuple[int, int]:
    """The sliding window counter's (remaining, seconds to reset), as ``limits`` computes them.

    One difference: a current window read in the millisecond it was made has a TTL of exactly two
    periods, which ``limits`` turns into a reset of 0 s; the wait is then a whole period.
    """
    weighted = previous * previous_ttl_s / expiry + current
    remaining = max(0, limit - math.floor(weighted))
    if not (previous or current):
        return remaining, 0
    reset_in = math.inf
    if previous:
        reset_in = previous_ttl_s % (expiry / previous)
    if current:
        reset_in = min(reset_in, current_ttl_s % expiry or float(expiry))
    return remaining, math.ceil(reset_in)


#: Every hit of a request in one call. ARGV[1]: the gateway's clock (seconds, as ``limits``
#: passes it for moving windows); ARGV[2]: the strategy (f, m, s); then limit, expiry (s) and
#: cost per hit. KEYS: one per hit (fixed, moving), two per hit for the sliding window counter
#: (previous, current). The steps are those of ``limits``' incr_expire.lua,
#: acquire_moving_window.lua + moving_window.lua and acquire_sliding_window.lua; each hit answers
#: {allowed, figures...}, floats as strings (Redis would truncate a Lua number).
_COUNT = """
local now = tonumber(ARGV[1])
local strategy = ARGV[2]
local out = {}
local k = 1
for a = 3, #ARGV, 3 do
  local limit = tonumber(ARGV[a])
  local expiry = tonumber(ARGV[a + 1])
  local amount = tonumber(ARGV[a + 2])
  if strategy == 'f' then
    local key = KEYS[k]
    k = k + 1
    local current = redis.call('incrby', key, amount)
    if current == amount then
      redis.call('expire', key, expiry)
    end
    out[#out + 1] = {current <= limit and 1 or 0, current, redis.call('ttl', key)}
  elseif strategy == 'm' then
    local key = KEYS[k]
    k = k + 1
    local ok = 0
    if amount <= limit then
      local entry = redis.call('lindex', key, limit - amount)
      if not (entry and tonumber(entry) >= now - expiry) then
        ok = 1
        local entries = {}
        for i = 1, amount do
          entries[i] = ARGV[1]
        end
        for i = 1, #entries, 5000 do
          redis.call('lpush', key, unpack(entries, i, math.min(i + 4999, #entries)))
        end
        redis.call('ltrim', key, 0, limit - 1)
        redis.call('expire', key, expiry)
      end
    end
    local low, high, found = 0, limit - 1, nil
    while low <= high do
      local mid = math.floor((low + high) / 2)
      local value = tonumber(redis.call('lindex', key, mid))
      if value and value >= now - expiry then
        found = mid
        low = mid + 1
      else
        high = mid - 1
      end
    end
    if found then
      out[#out + 1] = {ok, found + 1, redis.call('lindex', key, found)}
    else
      out[#out + 1] = {ok, 0, ARGV[1]}
    end
  else
    local previous_key, current_key = KEYS[k], KEYS[k + 1]
    k = k + 2
    local period = expiry * 1000
    local ok = 0
    if amount <= limit then
      local current_ttl = tonumber(redis.call('pttl', current_key))
      if current_ttl > 0 and current_ttl < period then
        redis.call('rename', current_key, previous_key)
        redis.call('set', current_key, 0, 'PX', current_ttl + period)
      end
      local previous_count = tonumber(redis.call('get', previous_key)) or 0
      local previous_ttl = math.max(0, tonumber(redis.call('pttl', previous_key)) or 0)
      local current_count = tonumber(redis.call('get', current_key)) or 0
      current_ttl = math.max(0, tonumber(redis.call('pttl', current_key)) or 0)
      local weighted = math.floor(previous_count * previous_ttl / period) + current_count
      if weighted + amount <= limit then
        ok = 1
        if redis.call('exists', current_key) == 1 then
          redis.call('incrby', current_key, amount)
        else
          redis.call('set', current_key, amount, 'PX', period * 2)
        end
      end
    end
    out[#out + 1] = {
      ok,
      tonumber(redis.call('get', previous_key)) or 0,
      redis.call('pttl', previous_key),
      tonumber(redis.call('get', current_key)) or 0,
      redis.call('pttl', current_key),
    }
  end
end
return out
"""

_STRATEGY_CODES: Final = {"fixed-window": "f", "moving-window": "m", "sliding-window-counter": "s"}


class ScriptCounters:
    """Every limit of a request in one EVALSHA on Redis (not Cluster), figures included."""

    __slots__ = ("_backend", "_code", "_prefix", "_script")

    def __init__(self, backend: RedisKeyValue, prefix: str, strategy: str) -> None:
        self._backend = backend
        self._prefix = prefix + ":"  # as the limits storage's bridge prefixes its keys
        self._code = _STRATEGY_CODES[strategy]
        self._script = backend.script(_COUNT)

    async def count(self, hits: Sequence[Hit]) -> list[Tally]:
        now = time.time()
        prefix, sliding = self._prefix, self._code == "s"
        keys: list[str] = []
        args: list[Any] = [repr(now), self._code]
        for hit in hits:
            key = prefix + hit.item.key_for(*hit.identifiers)
            if sliding:  # limits' _previous_window_key / _current_window_key
                keys.extend((f"{prefix}{{{key[len(prefix) :]}}}/-1", f"{prefix}{{{key[len(prefix) :]}}}"))
            else:
                keys.append(key)
            args.extend((hit.item.amount, hit.item.get_expiry(), hit.cost))
        answers = await self._backend.run_script(self._script, keys, args)
        return [self._tally(hit, answer, now) for hit, answer in zip(hits, answers, strict=True)]

    def _tally(self, hit: Hit, answer: list[Any], now: float) -> Tally:
        limit, expiry = hit.item.amount, hit.item.get_expiry()
        allowed = bool(int(answer[0]))
        if self._code == "f":
            count, ttl = int(answer[1]), max(0, int(answer[2]))
            return Tally(allowed, (max(0, limit - count), ttl))
        if self._code == "m":
            count, oldest = int(answer[1]), float(answer[2])
            return Tally(allowed, (limit - count, _reset_in(oldest + expiry, now)))
        previous, previous_ttl, current, current_ttl = (int(v) for v in answer[1:5])
        return Tally(
            allowed,
            sliding_figures(
                limit, expiry, previous, max(0, previous_ttl) / 1000, current, max(0, current_ttl) / 1000
            ),
        )

    async def figures(self, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        raise AssertionError("every tally of the script carries its figures")
