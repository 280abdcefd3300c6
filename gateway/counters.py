"""Counting one request's rate limits in storage, every limit at once.

``limits`` owns the strategies (fixed window, moving window, sliding window counter) and the keys
they count under; this module only decides how many trips to storage a request costs:

- :class:`MemoryCounters` runs the same steps over dicts in this process (memory storage): the
  ``limits`` memory storage schedules a task that walks every key it holds on each hit, so its
  cost grows with the number of numbers and clients counted;
- :class:`LibraryCounters` calls the ``limits`` strategy per limit (Redis Cluster, where a
  request's keys live in different hash slots);
- :class:`ScriptCounters` (Redis, single node or Sentinel) runs every limit's step in one Lua
  script, on the same keys and by the same rules as the ``limits`` scripts, and reads each limit's
  figures (remaining, reset) in the same call: an allowed request costs one round trip whatever
  the number of limits, and a refused one no more. With three limits that is one EVALSHA
  instead of four.

The script writes ``limits``' private key layout (the storage prefix, the sliding window's
``{key}`` and ``{key}/-1``): ``pyproject.toml`` pins ``limits`` to the major release it was
checked against, and ``tests/test_counters.py`` compares the layout with the installed release.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from limits import RateLimitItem

if TYPE_CHECKING:
    from limits.aio.strategies import RateLimiter

    from gateway.storage import RedisKeyValue

__all__ = [
    "Counters",
    "Hit",
    "LibraryCounters",
    "MemoryCounters",
    "ScriptCounters",
    "Tally",
    "sliding_figures",
]


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
#: acquire_moving_window.lua + moving_window.lua and acquire_sliding_window.lua + sliding_window.lua
#: (whose reads it shares: the figures come from the values the step read and wrote); each hit
#: answers {allowed, figures...}, floats as strings (Redis would truncate a Lua number).
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
    local current_ttl = tonumber(redis.call('pttl', current_key))
    if current_ttl > 0 and current_ttl < period then
      redis.call('rename', current_key, previous_key)
      redis.call('set', current_key, 0, 'PX', current_ttl + period)
    end
    local previous_count = tonumber(redis.call('get', previous_key)) or 0
    local previous_ttl = math.max(0, tonumber(redis.call('pttl', previous_key)) or 0)
    local current_count = tonumber(redis.call('get', current_key)) or 0
    current_ttl = tonumber(redis.call('pttl', current_key)) or -2
    if amount <= limit then
      local weighted = math.floor(previous_count * previous_ttl / period) + current_count
      if weighted + amount <= limit then
        ok = 1
        if current_ttl ~= -2 then
          current_count = redis.call('incrby', current_key, amount)
        else
          redis.call('set', current_key, amount, 'PX', period * 2)
          current_count, current_ttl = amount, period * 2
        end
      end
    end
    out[#out + 1] = {ok, previous_count, previous_ttl, current_count, math.max(0, current_ttl)}
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
            key = hit.item.key_for(*hit.identifiers)
            if sliding:  # limits' _previous_window_key and _current_window_key
                keys.extend((f"{prefix}{{{key}}}/-1", f"{prefix}{{{key}}}"))
            else:
                keys.append(prefix + key)
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


class MemoryCounters:
    """The script's steps (``_COUNT``) over dicts in this process, figures included.

    Expired entries go when they are met, and in a sweep of all of them whenever the table has
    doubled since the last one or a minute has passed: amortised constant work per hit, and
    memory bounded by the keys live within their periods.
    """

    __slots__ = ("_clock", "_code", "_expires", "_lists", "_next_sweep", "_sweep_at", "_values")

    def __init__(self, strategy: str, clock: Callable[[], float] = time.time) -> None:
        self._code = _STRATEGY_CODES[strategy]
        self._clock = clock
        self._values: dict[str, int] = {}
        self._lists: dict[str, list[float]] = {}  # moving window: timestamps, oldest first
        self._expires: dict[str, float] = {}
        self._next_sweep = 1024
        self._sweep_at = clock() + 60

    # -- a key with a deadline, as Redis keeps it ----------------------------------------------

    def _live(self, key: str, now: float) -> bool:
        expires = self._expires.get(key)
        if expires is None:
            return key in self._values or key in self._lists
        if expires > now:
            return True
        self._drop(key)
        return False

    def _drop(self, key: str) -> None:
        self._expires.pop(key, None)
        self._values.pop(key, None)
        self._lists.pop(key, None)

    def _ttl(self, key: str, now: float) -> float:
        """Seconds left; 0 for a key that is gone."""
        return self._expires[key] - now if self._live(key, now) else 0.0

    def _sweep(self, now: float) -> None:
        if len(self._expires) < self._next_sweep and now < self._sweep_at:
            return
        for key in [k for k, expires in self._expires.items() if expires <= now]:
            self._drop(key)
        self._next_sweep = max(1024, 2 * len(self._expires))
        self._sweep_at = now + 60

    # -- the strategies ----------------------------------------------------------------------

    async def count(self, hits: Sequence[Hit]) -> list[Tally]:
        now = self._clock()
        self._sweep(now)
        step = {"f": self._fixed, "m": self._moving, "s": self._sliding}[self._code]
        return [step(hit.item.key_for(*hit.identifiers), hit, now) for hit in hits]

    async def figures(self, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        raise AssertionError("every tally carries its figures")

    def _fixed(self, key: str, hit: Hit, now: float) -> Tally:
        limit, expiry = hit.item.amount, hit.item.get_expiry()
        count = (self._values[key] if self._live(key, now) else 0) + hit.cost
        self._values[key] = count
        if count == hit.cost:
            self._expires[key] = now + expiry
        return Tally(count <= limit, (max(0, limit - count), math.ceil(self._ttl(key, now))))

    def _moving(self, key: str, hit: Hit, now: float) -> Tally:
        limit, expiry, amount = hit.item.amount, hit.item.get_expiry(), hit.cost
        entries = self._lists.get(key, []) if self._live(key, now) else []
        allowed = False
        if amount <= limit:
            # the entry ``limit - amount`` places from the newest, as LINDEX counts from the head
            position = len(entries) - 1 - (limit - amount)
            if not (position >= 0 and entries[position] >= now - expiry):
                allowed = True
                entries.extend([now] * amount)
                del entries[: max(0, len(entries) - limit)]
                self._lists[key] = entries
                self._expires[key] = now + expiry
        first = bisect_left(entries, now - expiry)
        in_window = len(entries) - first
        oldest = entries[first] if in_window else now
        return Tally(allowed, (limit - in_window, _reset_in(oldest + expiry, now)))

    def _sliding(self, key: str, hit: Hit, now: float) -> Tally:
        limit, expiry, amount = hit.item.amount, hit.item.get_expiry(), hit.cost
        previous_key, current_key = f"{{{key}}}/-1", f"{{{key}}}"
        allowed = False
        current_ttl = self._ttl(current_key, now)
        if 0 < current_ttl < expiry:  # the current window is over: it becomes the previous one
            self._values[previous_key] = self._values.pop(current_key)
            self._expires[previous_key] = self._expires.pop(current_key)
            self._values[current_key] = 0
            self._expires[current_key] = now + current_ttl + expiry
        if amount <= limit:
            previous = self._values.get(previous_key, 0) if self._live(previous_key, now) else 0
            current = self._values.get(current_key, 0) if self._live(current_key, now) else 0
            weighted = math.floor(previous * self._ttl(previous_key, now) / expiry) + current
            if weighted + amount <= limit:
                allowed = True
                if current_key in self._values:
                    self._values[current_key] = current + amount
                else:
                    self._values[current_key] = amount
                    self._expires[current_key] = now + 2 * expiry
        previous = self._values.get(previous_key, 0) if self._live(previous_key, now) else 0
        current = self._values.get(current_key, 0) if self._live(current_key, now) else 0
        figures = sliding_figures(
            limit, expiry, previous, self._ttl(previous_key, now), current, self._ttl(current_key, now)
        )
        return Tally(allowed, figures)
