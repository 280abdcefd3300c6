"""The storage contract over Redis: a redis-py asyncio client (plain, sentinel master or
cluster) and the Lua scripts that make each decision one round trip."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from gateway.storage.keyvalue import STORAGE_ERRORS, StorageUnavailable

#: A script in a gathering pipeline: (script, keys, args, where its answer goes: None for the
#: caller that sends the pipeline and takes its answer as the return value).
_Queued = tuple[Any, list[str], list[Any], "asyncio.Future[Any] | None"]

__all__ = ["RedisKeyValue"]


#: ``take_slot`` for Redis: a sorted set of members scored by Redis's own clock (milliseconds),
#: so replicas with skewed clocks agree. Returns 0 when taken, else milliseconds to wait.
_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local gap = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - math.max(window, gap))
local wait = 0
if gap > 0 then
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] then
    wait = math.max(wait, tonumber(newest[2]) + gap - now)
  end
end
local count = redis.call('ZCOUNT', KEYS[1], '(' .. (now - window), '+inf')
if count >= limit then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - window), '+inf',
                            'WITHSCORES', 'LIMIT', count - limit, 1)
  wait = math.max(wait, tonumber(oldest[2]) + window - now)
end
if wait > 0 then
  return wait
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.max(window, gap))
return 0
"""


#: ``add``: one counter, created with a TTL, never taken over ``limit`` (-1: no limit).
_ADD = """
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if limit >= 0 and count + amount > limit then
  return {count, 0}
end
count = redis.call('INCRBY', KEYS[1], amount)
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {count, 1}
"""

#: ``add_member``: a sorted set of members scored by Redis's clock (milliseconds).
_ADD_MEMBER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local outcome = 1
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  outcome = 0
elseif limit >= 0 and count >= limit then
  return {count, -1}
else
  count = count + 1
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
if cap > 0 and count > cap then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, count - cap - 1)
  count = cap
end
redis.call('PEXPIRE', KEYS[1], window)
return {count, outcome}
"""


class RedisKeyValue:
    """The contract over a redis-py asyncio client (plain, sentinel master or cluster).

    Every Redis or socket error becomes :class:`StorageUnavailable` with the error's type only:
    redis-py's messages can name hosts, and nothing here may echo a key.
    """

    __slots__ = ("_add", "_add_member", "_batch", "_client", "_closers", "_pipelines", "_take", "round_trips")

    def __init__(self, client: Any, closers: tuple[Any, ...] = ()) -> None:
        from redis.asyncio.cluster import RedisCluster

        self._client = client
        self._closers = closers or (client,)
        #: Calls sent to Redis (a command, a script or a pipeline each; the metric reads it).
        self.round_trips = 0
        #: Scripts waiting to go out together (see :meth:`run_script`); None when none is gathering.
        self._batch: list[_Queued] | None = None
        # A cluster pipeline splits by node and slot: there, every script goes on its own.
        self._pipelines = not isinstance(client, RedisCluster)
        self._take = client.register_script(_TAKE_SLOT)
        self._add = client.register_script(_ADD)
        self._add_member = client.register_script(_ADD_MEMBER)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float) -> bool:
        self.round_trips += 1
        try:
            return bool(await self._client.set(key, value, px=_ms(ttl_s), nx=True))
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None

    async def get(self, key: str) -> bytes | None:
        self.round_trips += 1
        try:
            value = await self._client.get(key)
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.round_trips += 1
        try:
            await self._client.set(key, value, px=_ms(ttl_s))
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None

    async def delete(self, key: str) -> None:
        self.round_trips += 1
        try:
            await self._client.delete(key)
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None

    async def take_slot(self, key: str, member: str, limit: int, window_s: float, gap_s: float) -> float:
        self.round_trips += 1
        try:
            args = [member, limit, _ms(window_s), math.ceil(gap_s * 1000)]  # a gap of 0 stays 0
            wait_ms = await self._take(keys=[key], args=args)
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None
        return int(wait_ms) / 1000

    async def free_slot(self, key: str, member: str) -> None:
        self.round_trips += 1
        try:
            await self._client.zrem(key, member)
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None

    async def add(self, key: str, amount: int, ttl_s: float, limit: int = -1) -> tuple[int, bool]:
        self.round_trips += 1
        try:
            count, added = await self._add(keys=[key], args=[amount, _ms(ttl_s), limit])
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None
        return int(count), bool(added)

    async def counts(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        self.round_trips += 1
        try:
            values = await self._client.mget(list(keys))
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None
        return [int(value) if value is not None else 0 for value in values]

    async def add_member(
        self, key: str, member: str, window_s: float, limit: int = -1, cap: int = 0
    ) -> tuple[int, int]:
        self.round_trips += 1
        try:
            count, outcome = await self._add_member(keys=[key], args=[member, _ms(window_s), limit, cap])
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None
        return int(count), int(outcome)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except STORAGE_ERRORS:
            return False

    def script(self, text: str) -> Any:
        """A Lua script registered once (EVALSHA, EVAL when Redis has not seen it)."""
        return self._client.register_script(text)

    async def run_script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Scripts run by requests in the same loop iteration go out as one pipeline (as ioredis's
        auto-pipelining does): under load a send costs a fraction of a round trip. The first
        caller yields once so the others can join, then sends them all; alone, it sends its own."""
        if not self._pipelines:
            return await self._one(script, keys, args)
        batch = self._batch
        if batch is not None:  # another request is gathering: join it
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            batch.append((script, keys, args, waiter))
            return await waiter
        batch = self._batch = []
        try:
            await asyncio.sleep(0)  # the rest of this loop iteration: the requests that join
        except asyncio.CancelledError:
            self._batch = None
            if batch:  # those that joined are answered all the same
                _detached(self._pipeline(batch))
            raise
        self._batch = None
        if not batch:
            return await self._one(script, keys, args)
        sent = asyncio.ensure_future(self._pipeline([(script, keys, args, None), *batch]))
        _retrieved(sent)
        return await asyncio.shield(sent)  # cancelled here, the others are still answered

    async def _one(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        self.round_trips += 1
        try:
            return await script(keys=keys, args=args)
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None

    async def _pipeline(self, queued: list[_Queued]) -> Any:
        """Every queued script in one round trip; each waiter gets its own answer, and the entry
        without one (the caller that gathered them) is the return value. A script Redis does not
        know (after a restart or SCRIPT FLUSH) is sent again on its own, where redis-py loads it."""
        self.round_trips += 1
        try:
            pipe = self._client.pipeline(transaction=False)
            for script, keys, args, _ in queued:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            answers = await pipe.execute(raise_on_error=False)
        except STORAGE_ERRORS as exc:
            answers = [StorageUnavailable(type(exc).__name__)] * len(queued)
        mine: Any = None
        for (script, keys, args, waiter), answer in zip(queued, answers, strict=True):
            if isinstance(answer, NoScriptError):
                try:
                    answer = await self._one(script, keys, args)
                except StorageUnavailable as exc:
                    answer = exc
            elif isinstance(answer, BaseException) and not isinstance(answer, StorageUnavailable):
                answer = StorageUnavailable(type(answer).__name__)
            if waiter is None:
                mine = answer
            elif not waiter.done():
                if isinstance(answer, BaseException):
                    waiter.set_exception(answer)
                else:
                    waiter.set_result(answer)
        if isinstance(mine, BaseException):
            raise mine
        return mine

    async def close(self) -> None:
        for client in self._closers:
            try:
                await client.aclose()
            except STORAGE_ERRORS:
                pass


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


#: Pipelines under way, held here: the loop keeps only weak references to tasks.
_UNDER_WAY: set[asyncio.Future[Any]] = set()


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Held until done; if its sender was cancelled, its error is no one's to see (the callers
    that joined it got theirs)."""
    _UNDER_WAY.add(task)
    task.add_done_callback(_done)


def _done(task: asyncio.Future[Any]) -> None:
    _UNDER_WAY.discard(task)
    if not task.cancelled():
        task.exception()


def _detached(coro: Any) -> None:
    _retrieved(asyncio.ensure_future(coro))
