"""Counting one request's rate limits and OTP slots in storage, every limit at once.

``limits`` owns the strategies (fixed window, moving window, sliding window counter) and the keys
they count under; this module decides how many trips to storage a request costs, and that a
request is counted only when every limit allows it: each limit (and each OTP slot, see
:class:`Slot`) is checked first, and all are counted only when none refuses, so a request refused
by one limit spends no other limit's quota (nor its own):

- :class:`MemoryCounters` (gateway/storage/memory_counters.py) runs the same steps over dicts in
  this process (memory storage): the ``limits`` memory storage schedules a task that walks every
  key it holds on each hit, so its cost grows with the number of numbers and clients counted;
- :class:`LibraryCounters` calls the ``limits`` strategy per limit (Redis Cluster, where a
  request's keys live in different hash slots): every ``test`` at once, then every ``hit``; two
  requests racing between the two steps can each pass the test and one then be refused by a hit
  after others counted (the only place where check-then-count is not atomic);
- :class:`ScriptCounters` (Redis, single node or Sentinel) runs every limit's step in one Lua
  script, on the same keys and by the same rules as the ``limits`` scripts, and reads each limit's
  figures (remaining, reset) in the same call: an allowed request costs one round trip whatever
  the number of limits and OTP slots, and a refused one no more. With three limits that is one
  EVALSHA instead of four.

The script writes ``limits``' private key layout (the storage prefix, the sliding window's
``{key}`` and ``{key}/-1``): ``pyproject.toml`` pins ``limits`` to the major release it was
checked against, and ``tests/test_counters.py`` compares the layout with the installed release.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.storage.hits import (
    STRATEGY_CODES,
    Counted,
    Counters,
    Hit,
    Slot,
    Tally,
    _ms,
    _reset_in,
    sliding_figures,
)
from gateway.storage.memory_counters import MemoryCounters

if TYPE_CHECKING:
    from limits.aio.strategies import RateLimiter

    from gateway.storage.keyvalue import KeyValue
    from gateway.storage.redis_backend import RedisKeyValue

__all__ = [
    "STRATEGY_CODES",
    "Counted",
    "Counters",
    "Hit",
    "LibraryCounters",
    "MemoryCounters",
    "ScriptCounters",
    "Slot",
    "Tally",
    "sliding_figures",
]


class LibraryCounters:
    """The ``limits`` strategy, one call per limit (gathered: concurrent, not one after another):
    every ``test``, then the OTP slots (each taken atomically, given back if another refuses),
    then every ``hit``."""

    __slots__ = ("_gather", "_limiter", "_slots")

    def __init__(self, limiter: RateLimiter, gather: Any, slots: KeyValue | None = None) -> None:
        self._limiter = limiter
        self._gather = gather
        self._slots = slots

    async def count(self, hits: Sequence[Hit], slots: Sequence[Slot] = ()) -> Counted:
        limiter, gather = self._limiter, self._gather
        tested = await gather(limiter.test(h.item, *h.identifiers, cost=h.cost) for h in hits)
        tallies = [Tally(bool(ok)) for ok in tested]
        waits = [0.0] * len(slots)
        if not all(t.allowed for t in tallies):
            return Counted(tallies, waits, False)
        kv = self._slots
        if slots:
            assert kv is not None, "OTP slots need the key-value storage"
            waits = await gather(kv.take_slot(s.key, s.member, s.limit, s.window_s, s.gap_s) for s in slots)
        taken = [s for s, wait in zip(slots, waits, strict=True) if wait <= 0]
        if len(taken) == len(slots):
            hit = await gather(limiter.hit(h.item, *h.identifiers, cost=h.cost) for h in hits)
            tallies = [Tally(bool(ok)) for ok in hit]
            if all(t.allowed for t in tallies):
                return Counted(tallies, waits, True)
        if taken:
            assert kv is not None
            await gather(kv.free_slot(s.key, s.member) for s in taken)
        return Counted(tallies, waits, False)

    async def figures(self, hits: Sequence[Hit]) -> list[tuple[int, int]]:
        limiter = self._limiter
        windows = await self._gather(limiter.get_window_stats(h.item, *h.identifiers) for h in hits)
        now = time.time()
        return [(int(w.remaining), _reset_in(w.reset_time, now)) for w in windows]


#: Every hit and OTP slot of a request in one call. ARGV[1]: the gateway's clock (seconds, as
#: ``limits`` passes it for moving windows); ARGV[2]: the strategy (f, m, s); ARGV[3]: the number
#: of hits; then limit, expiry (s) and cost per hit; then member, limit, window (ms) and gap (ms)
#: per slot. KEYS: one per hit (fixed, moving), two per hit for the sliding window counter
#: (previous, current), then one per slot. The steps are those of ``limits``' incr_expire.lua,
#: acquire_moving_window.lua + moving_window.lua and acquire_sliding_window.lua +
#: sliding_window.lua, and of ``storage._TAKE_SLOT`` (its clock: Redis's), split in two: every
#: check first, then, only when none refused, every write. Each hit answers {allowed, figures...}
#: (floats as strings: Redis would truncate a Lua number), each slot its wait in ms (0: it fits);
#: the last entry is 1 when the request was counted.
_COUNT = """
local now = tonumber(ARGV[1])
local strategy = ARGV[2]
local n = tonumber(ARGV[3])
local hits = {}
local every = true
local k, a = 1, 4
for h = 1, n do
  local s = {limit = tonumber(ARGV[a]), expiry = tonumber(ARGV[a + 1]), amount = tonumber(ARGV[a + 2]),
             ok = false}
  a = a + 3
  if strategy == 'f' then
    s.key = KEYS[k]
    k = k + 1
    s.count = tonumber(redis.call('get', s.key)) or 0
    s.ok = s.count + s.amount <= s.limit
  elseif strategy == 'm' then
    s.key = KEYS[k]
    k = k + 1
    if s.amount <= s.limit then
      local entry = redis.call('lindex', s.key, s.limit - s.amount)
      s.ok = not (entry and tonumber(entry) >= now - s.expiry)
    end
  else
    s.previous_key, s.key = KEYS[k], KEYS[k + 1]
    k = k + 2
    local period = s.expiry * 1000
    local current_ttl = tonumber(redis.call('pttl', s.key))
    if current_ttl > 0 and current_ttl < period then
      redis.call('rename', s.key, s.previous_key)
      redis.call('set', s.key, 0, 'PX', current_ttl + period)
    end
    s.previous_count = tonumber(redis.call('get', s.previous_key)) or 0
    s.previous_ttl = math.max(0, tonumber(redis.call('pttl', s.previous_key)) or 0)
    s.current_count = tonumber(redis.call('get', s.key)) or 0
    s.current_ttl = tonumber(redis.call('pttl', s.key)) or -2
    if s.amount <= s.limit then
      local weighted = math.floor(s.previous_count * s.previous_ttl / period) + s.current_count
      s.ok = weighted + s.amount <= s.limit
    end
  end
  if not s.ok then
    every = false
  end
  hits[h] = s
end
local slots = {}
if k <= #KEYS then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  while k <= #KEYS do
    local s = {key = KEYS[k], member = ARGV[a], limit = tonumber(ARGV[a + 1]),
               window = tonumber(ARGV[a + 2]), gap = tonumber(ARGV[a + 3]), now = ms, wait = 0}
    k, a = k + 1, a + 4
    redis.call('ZREMRANGEBYSCORE', s.key, '-inf', ms - math.max(s.window, s.gap))
    if s.gap > 0 then
      local newest = redis.call('ZRANGE', s.key, -1, -1, 'WITHSCORES')
      if newest[2] then
        s.wait = math.max(s.wait, tonumber(newest[2]) + s.gap - ms)
      end
    end
    local count = redis.call('ZCOUNT', s.key, '(' .. (ms - s.window), '+inf')
    if count >= s.limit then
      local oldest = redis.call('ZRANGEBYSCORE', s.key, '(' .. (ms - s.window), '+inf',
                                'WITHSCORES', 'LIMIT', count - s.limit, 1)
      s.wait = math.max(s.wait, tonumber(oldest[2]) + s.window - ms)
    end
    if s.wait > 0 then
      every = false
    end
    slots[#slots + 1] = s
  end
end
if every then
  for _, s in ipairs(hits) do
    if strategy == 'f' then
      s.count = redis.call('incrby', s.key, s.amount)
      if s.count == s.amount then
        redis.call('expire', s.key, s.expiry)
      end
    elseif strategy == 'm' then
      local entries = {}
      for i = 1, s.amount do
        entries[i] = ARGV[1]
      end
      for i = 1, #entries, 5000 do
        redis.call('lpush', s.key, unpack(entries, i, math.min(i + 4999, #entries)))
      end
      redis.call('ltrim', s.key, 0, s.limit - 1)
      redis.call('expire', s.key, s.expiry)
    else
      if s.current_ttl ~= -2 then
        s.current_count = redis.call('incrby', s.key, s.amount)
      else
        local period = s.expiry * 1000
        redis.call('set', s.key, s.amount, 'PX', period * 2)
        s.current_count, s.current_ttl = s.amount, period * 2
      end
    end
  end
  for _, s in ipairs(slots) do
    redis.call('ZADD', s.key, s.now, s.member)
    redis.call('PEXPIRE', s.key, math.max(s.window, s.gap))
  end
end
local out = {}
for _, s in ipairs(hits) do
  local ok = s.ok and 1 or 0
  if strategy == 'f' then
    out[#out + 1] = {ok, s.count, redis.call('ttl', s.key)}
  elseif strategy == 'm' then
    local low, high, found = 0, s.limit - 1, nil
    while low <= high do
      local mid = math.floor((low + high) / 2)
      local value = tonumber(redis.call('lindex', s.key, mid))
      if value and value >= now - s.expiry then
        found = mid
        low = mid + 1
      else
        high = mid - 1
      end
    end
    if found then
      out[#out + 1] = {ok, found + 1, redis.call('lindex', s.key, found)}
    else
      out[#out + 1] = {ok, 0, ARGV[1]}
    end
  else
    out[#out + 1] = {ok, s.previous_count, s.previous_ttl, s.current_count, math.max(0, s.current_ttl)}
  end
end
for _, s in ipairs(slots) do
  out[#out + 1] = s.wait
end
out[#out + 1] = every and 1 or 0
return out
"""


class ScriptCounters:
    """Every limit and OTP slot of a request in one EVALSHA on Redis (not Cluster), figures
    included."""

    __slots__ = ("_backend", "_code", "_prefix", "_script")

    def __init__(self, backend: RedisKeyValue, prefix: str, strategy: str) -> None:
        self._backend = backend
        self._prefix = prefix + ":"  # as the limits storage's bridge prefixes its keys
        self._code = STRATEGY_CODES[strategy]
        self._script = backend.script(_COUNT)

    async def count(self, hits: Sequence[Hit], slots: Sequence[Slot] = ()) -> Counted:
        now = time.time()
        prefix, sliding = self._prefix, self._code == "s"
        keys: list[str] = []
        args: list[Any] = [repr(now), self._code, len(hits)]
        for hit in hits:
            key = hit.item.key_for(*hit.identifiers)
            if sliding:  # limits' _previous_window_key and _current_window_key
                keys.extend((f"{prefix}{{{key}}}/-1", f"{prefix}{{{key}}}"))
            else:
                keys.append(prefix + key)
            args.extend((hit.item.amount, hit.item.get_expiry(), hit.cost))
        for slot in slots:
            keys.append(slot.key)
            # a gap of 0 stays 0; as storage._TAKE_SLOT takes them
            args.extend((slot.member, slot.limit, _ms(slot.window_s), math.ceil(slot.gap_s * 1000)))
        answers = await self._backend.run_script(self._script, keys, args)
        tallies = [self._tally(hit, answer, now) for hit, answer in zip(hits, answers, strict=False)]
        waits = [int(wait) / 1000 for wait in answers[len(hits) : len(hits) + len(slots)]]
        return Counted(tallies, waits, bool(int(answers[-1])))

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
