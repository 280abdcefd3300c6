"""Shared state: one storage service behind ``[storage]`` for every decision that must hold
across requests (and, with Redis, across replicas): rate limits, OTP counters, idempotency
records, RFC 9421 nonces, webhook duplicates.

Decisions never talk to a Redis client directly (``limits``' habit: the algorithm does not know
where counters live). They use the small :class:`KeyValue` contract below; the backend raises
:class:`StorageUnavailable` when it cannot answer, and :meth:`StorageService.unavailable` turns
that into the configured ``storage.on_error`` policy: ``closed`` refuses (503
``limiter_unavailable``), ``open`` lets the request pass and records the event.

Outages are handled here once for everyone: the first failure marks the storage *down* (a
warning on stderr and a ``storage_unavailable`` audit event), requests then get the on_error
answer at once instead of each waiting for a timeout, and a probe pings the backend every
:data:`PROBE_INTERVAL_S` until it answers again (``storage_available``); nothing needs a restart.

Storage never holds a phone number or a message in clear text: numbers and client-chosen keys
are HMACs (:meth:`StorageKeys.digest`), stored answers are sealed (:meth:`StorageKeys.seal`), both
with keys derived from ``logging.hash_key``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import AuditEvent
from gateway.core.tasks import stop_task

if TYPE_CHECKING:
    from limits.aio.storage import Storage as LimiterStorage

    from gateway.config.schema import StorageConfig
    from gateway.storage.counters import MemoryCounters

log = logging.getLogger("smsgw")

__all__ = [
    "KeyValue",
    "MemoryKeyValue",
    "RedisKeyValue",
    "StorageKeys",
    "StorageService",
    "StorageUnavailable",
    "open_storage",
    "skipped",
]

#: While the storage is down, the probe pings it this often.
PROBE_INTERVAL_S: Final = 1.0

#: ``Retry-After`` of a 503 ``limiter_unavailable``: the probe's interval in whole seconds, the
#: soonest a retry can find the storage back (as every 429 tells the client when to come back).
UNAVAILABLE_RETRY_AFTER_S: Final = max(1, math.ceil(PROBE_INTERVAL_S))


class StorageUnavailable(Exception):
    """The backend could not answer in time (down, frozen, unreachable)."""


class KeyValue(Protocol):
    """What decisions may ask of storage. Keys are already prefixed; values are bytes; every
    write has a TTL so nothing grows without bound."""

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Store ``value`` unless the key exists; True when stored (nonces, dedupe, locks)."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def take_slot(self, key: str, member: str, limit: int, window_s: float, gap_s: float) -> float:
        """Atomically record ``member`` in the log of ``key`` if fewer than ``limit`` members are
        younger than ``window_s`` and the newest is at least ``gap_s`` old. Returns 0.0 when taken,
        otherwise the exact seconds until it would be (OTP caps: sends, resend interval, checks)."""
        ...

    async def free_slot(self, key: str, member: str) -> None:
        """Take back a slot that did not lead to a send."""
        ...

    async def add(self, key: str, amount: int, ttl_s: float, limit: int = -1) -> tuple[int, bool]:
        """Add ``amount`` to the counter at ``key`` unless the sum would pass ``limit`` (-1: no
        limit); a new counter lives ``ttl_s``. Returns ``(count, added)`` (anomaly counters)."""
        ...

    async def counts(self, keys: Sequence[str]) -> list[int]:
        """The counters at ``keys``, 0 for a missing one, in one call (the keys share a hash tag)."""
        ...

    async def add_member(
        self, key: str, member: str, window_s: float, limit: int = -1, cap: int = 0
    ) -> tuple[int, int]:
        """Record ``member`` in the set at ``key``, which forgets members not seen for ``window_s``.
        Unless ``member`` is there already, it is refused when ``limit`` members are (-1: no limit);
        ``cap`` (0: none) bounds the set, oldest out first. Returns ``(members, outcome)``:
        1 added, 0 already there (its time renewed), -1 refused."""
        ...

    async def ping(self) -> bool:
        """True when the backend answers now (readiness)."""
        ...

    async def close(self) -> None: ...


class MemoryKeyValue:
    """One process's memory: exact, and lost on restart (``storage.url = "memory://"``)."""

    __slots__ = ("_data", "_max_keys", "_sets", "_slots", "_writes")

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        #: OTP logs: key -> (entries oldest first as (time.time(), member), when the log expires)
        self._slots: dict[str, tuple[list[tuple[float, str]], float]] = {}
        #: Member sets: key -> {member: last seen (monotonic)}, oldest first
        self._sets: dict[str, dict[str, float]] = {}
        self._max_keys = max_keys
        self._writes = 0

    def _live(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._data[key]
            return None
        return item[0]

    def _sweep(self, now: float) -> None:
        """Expired keys go every so often, so memory is bounded by what is live."""
        self._writes += 1
        if self._writes % 1024 == 0 or len(self._data) + len(self._slots) + len(self._sets) >= self._max_keys:
            for key in [k for k, (_, expires) in self._data.items() if expires <= now]:
                del self._data[key]
            wall = time.time()
            for key in [k for k, (_, expires) in self._slots.items() if expires <= wall]:
                del self._slots[key]
            for key in [k for k, members in self._sets.items() if not members]:
                del self._sets[key]
            if len(self._data) + len(self._slots) + len(self._sets) >= self._max_keys:
                raise StorageUnavailable("memory storage is full")

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float) -> bool:
        now = time.monotonic()
        if self._live(key, now) is not None:
            return False
        self._sweep(now)
        self._data[key] = (value, now + ttl_s)
        return True

    async def get(self, key: str) -> bytes | None:
        return self._live(key, time.monotonic())

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        now = time.monotonic()
        self._sweep(now)
        self._data[key] = (value, now + ttl_s)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def take_slot(self, key: str, member: str, limit: int, window_s: float, gap_s: float) -> float:
        now = time.time()
        wait = self.slot_wait_at(key, limit, window_s, gap_s, now)
        if wait <= 0:
            self.put_slot(key, member, window_s, gap_s, now)
        return wait

    def slot_wait_at(self, key: str, limit: int, window_s: float, gap_s: float, now: float) -> float:
        """``take_slot``'s check alone (0.0: it fits), so that the rate-limit counters can check
        every limit of a request before they count any (``gateway.storage.counters.MemoryCounters``)."""
        keep = max(window_s, gap_s)
        held = self._slots.get(key)
        if held is None:
            return 0.0
        entries = [e for e in held[0] if e[0] > now - keep]
        if entries:
            self._slots[key] = (entries, entries[-1][0] + keep)
        else:
            del self._slots[key]
        return max(0.0, slot_wait(now, [t for t, _ in entries], limit, window_s, gap_s))

    def put_slot(self, key: str, member: str, window_s: float, gap_s: float, now: float) -> None:
        """``take_slot``'s write alone, after :meth:`slot_wait_at` said the slot fits."""
        self._sweep(time.monotonic())
        entries = self._slots.get(key, ([], 0.0))[0]
        entries.append((now, member))
        self._slots[key] = (entries, now + max(window_s, gap_s))

    async def free_slot(self, key: str, member: str) -> None:
        held = self._slots.get(key)
        if held:
            self._slots[key] = ([e for e in held[0] if e[1] != member], held[1])

    async def add(self, key: str, amount: int, ttl_s: float, limit: int = -1) -> tuple[int, bool]:
        now = time.monotonic()
        current = self._live(key, now)
        count = int(current) if current is not None else 0
        if 0 <= limit < count + amount:
            return count, False
        if current is None:
            self._sweep(now)
            expires = now + ttl_s
        else:
            expires = self._data[key][1]
        self._data[key] = (str(count + amount).encode("ascii"), expires)
        return count + amount, True

    async def counts(self, keys: Sequence[str]) -> list[int]:
        now = time.monotonic()
        return [int(value) if (value := self._live(key, now)) is not None else 0 for key in keys]

    async def add_member(
        self, key: str, member: str, window_s: float, limit: int = -1, cap: int = 0
    ) -> tuple[int, int]:
        now = time.monotonic()
        members = self._sets.get(key)
        if members is None:
            self._sweep(now)
            members = self._sets[key] = {}
        for old in [m for m, seen in members.items() if seen <= now - window_s]:
            del members[old]
        if member in members:
            del members[member]  # re-inserted last: the dict stays oldest first
            members[member] = now
            return len(members), 0
        if 0 <= limit <= len(members):
            return len(members), -1
        members[member] = now
        while cap and len(members) > cap:
            del members[next(iter(members))]
        return len(members), 1

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()
        self._slots.clear()
        self._sets.clear()


def slot_wait(now: float, times: list[float], limit: int, window_s: float, gap_s: float) -> float:
    """Seconds until a new entry fits: fewer than ``limit`` in the window, ``gap_s`` after the newest.

    ``times`` are the entries' timestamps, oldest first. The same rule as ``_TAKE_SLOT`` below.
    """
    wait = 0.0
    if gap_s > 0 and times:
        wait = max(wait, times[-1] + gap_s - now)
    in_window = [t for t in times if t > now - window_s]
    if len(in_window) >= limit:
        wait = max(wait, in_window[len(in_window) - limit] + window_s - now)
    return wait


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

    __slots__ = ("_add", "_add_member", "_client", "_closers", "_take", "round_trips")

    def __init__(self, client: Any, closers: tuple[Any, ...] = ()) -> None:
        self._client = client
        self._closers = closers or (client,)
        #: Calls sent to Redis (a command, a script or a pipeline each; the metric reads it).
        self.round_trips = 0
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
        self.round_trips += 1
        try:
            return await script(keys=keys, args=args)
        except STORAGE_ERRORS as exc:
            raise StorageUnavailable(type(exc).__name__) from None

    async def close(self) -> None:
        for client in self._closers:
            try:
                await client.aclose()
            except STORAGE_ERRORS:
                pass


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _storage_errors() -> tuple[type[BaseException], ...]:
    from limits.errors import StorageError
    from redis.exceptions import RedisError

    return (RedisError, StorageError, OSError, TimeoutError)


#: What a backend may raise when it cannot answer (redis-py, limits' wrapper, sockets, timeouts).
STORAGE_ERRORS: Final = _storage_errors()


class StorageKeys:
    """Keys derived from ``logging.hash_key`` for what is written to storage.

    Derived (not the log key itself), so a number's storage key is not its ``recipient = "hash"``
    value in the audit log; a rotated ``hash_key`` starts new counters and makes stored answers
    unreadable (they expire within 24 h).
    """

    __slots__ = ("_aead", "_ids")

    def __init__(self, secret: bytes) -> None:
        self._ids = hmac.new(secret, b"smsgw storage identifiers v1", hashlib.sha256).digest()
        self._aead = AESGCM(hmac.new(secret, b"smsgw storage records v1", hashlib.sha256).digest())

    def digest(self, *parts: str | bytes) -> str:
        """A stable, keyed name for a number, a client-chosen key or a request (128 bits, hex).

        Parts are length-prefixed, so no two different part lists give the same input.
        """
        mac = hmac.new(self._ids, digestmod=hashlib.sha256)
        for part in parts:
            data = part if isinstance(part, bytes) else part.encode("utf-8", "surrogateescape")
            mac.update(len(data).to_bytes(8, "big"))
            mac.update(data)
        return mac.hexdigest()[:32]

    def seal(self, data: bytes, context: str) -> bytes:
        """AES-256-GCM with a random nonce; ``context`` (the storage key) is bound in."""
        nonce = os.urandom(12)
        return b"\x01" + nonce + self._aead.encrypt(nonce, data, context.encode("utf-8"))

    def open(self, blob: bytes, context: str) -> bytes | None:
        """The sealed data, or None when it was sealed under another key or for another context."""
        if len(blob) < 29 or blob[:1] != b"\x01":
            return None
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], context.encode("utf-8"))
        except InvalidTag:
            return None


class _GuardedKeyValue:
    """The backend as stages see it: while the storage is down, calls fail at once (no timeout
    per request); a failing call marks it down. Callers only ever see StorageUnavailable."""

    __slots__ = ("_backend", "_service")

    def __init__(self, backend: KeyValue, service: StorageService) -> None:
        self._backend = backend
        self._service = service

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float) -> bool:
        self._service.check_up()
        try:
            return await self._backend.set_if_absent(key, value, ttl_s)
        except StorageUnavailable:
            self._service.failed("set_if_absent")
            raise

    async def get(self, key: str) -> bytes | None:
        self._service.check_up()
        try:
            return await self._backend.get(key)
        except StorageUnavailable:
            self._service.failed("get")
            raise

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._service.check_up()
        try:
            await self._backend.set(key, value, ttl_s)
        except StorageUnavailable:
            self._service.failed("set")
            raise

    async def delete(self, key: str) -> None:
        self._service.check_up()
        try:
            await self._backend.delete(key)
        except StorageUnavailable:
            self._service.failed("delete")
            raise

    async def take_slot(self, key: str, member: str, limit: int, window_s: float, gap_s: float) -> float:
        self._service.check_up()
        try:
            return await self._backend.take_slot(key, member, limit, window_s, gap_s)
        except StorageUnavailable:
            self._service.failed("take_slot")
            raise

    async def free_slot(self, key: str, member: str) -> None:
        self._service.check_up()
        try:
            await self._backend.free_slot(key, member)
        except StorageUnavailable:
            self._service.failed("free_slot")
            raise

    async def add(self, key: str, amount: int, ttl_s: float, limit: int = -1) -> tuple[int, bool]:
        self._service.check_up()
        try:
            return await self._backend.add(key, amount, ttl_s, limit)
        except StorageUnavailable:
            self._service.failed("add")
            raise

    async def counts(self, keys: Sequence[str]) -> list[int]:
        self._service.check_up()
        try:
            return await self._backend.counts(keys)
        except StorageUnavailable:
            self._service.failed("counts")
            raise

    async def add_member(
        self, key: str, member: str, window_s: float, limit: int = -1, cap: int = 0
    ) -> tuple[int, int]:
        self._service.check_up()
        try:
            return await self._backend.add_member(key, member, window_s, limit, cap)
        except StorageUnavailable:
            self._service.failed("add_member")
            raise

    async def ping(self) -> bool:
        return await self._backend.ping()

    async def close(self) -> None:
        await self._backend.close()


EventSink = Callable[..., Any]


class StorageService:
    """The configured backend, its key prefix, and the on-error policy, for every stage to share.

    ``kv`` is the key-value contract; ``limiter`` is the ``limits`` storage over the same backend
    (the same redis-py client for Redis); ``keys`` derives storage names for numbers and seals
    stored answers (None without ``logging.hash_key``).
    """

    def __init__(
        self,
        kv: KeyValue,
        *,
        prefix: str,
        on_error: str,
        url_scheme: str = "memory",
        limiter: LimiterStorage | None = None,
        keys: StorageKeys | None = None,
    ) -> None:
        self.backend = kv
        self.kv: KeyValue = _GuardedKeyValue(kv, self)
        self.prefix = prefix
        self.on_error = on_error
        self.scheme = url_scheme
        self.keys = keys
        if limiter is None:
            from limits.aio.storage import MemoryStorage

            limiter = MemoryStorage()
        self.limiter: LimiterStorage = limiter
        #: The prefix the ``limits`` storage puts before its keys (``<key_prefix>rl``).
        self.limiter_prefix = prefix + "rl"
        self._memory_counters: dict[str, Any] = {}
        #: Wall-clock second from which this storage remembers what it is told: memory storage
        #: starts empty with the process (a signed request from before then may be unknown to it);
        #: None for Redis, which keeps its keys across gateway restarts.
        self.remembers_since: int | None = int(time.time()) if url_scheme == "memory" else None
        self.errors = 0  # storage failures seen by requests (a metric reads it)
        #: The same, by what was being done (``rate_limits``, ``otp``, ``alerts``, ...).
        self.error_counts: dict[str, int] = {}
        self.up = True
        self.down_since: float | None = None
        #: ``event(name, **fields)`` of the audit log, set once the log is open.
        self.events: EventSink | None = None
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def memory_counters(self, strategy: str) -> MemoryCounters:
        """This process's counters for memory storage, one table per strategy, kept across
        reloads as the storage is."""
        from gateway.storage.counters import MemoryCounters

        counters = self._memory_counters.get(strategy)
        if counters is None:
            slots = self.backend if isinstance(self.backend, MemoryKeyValue) else None
            counters = self._memory_counters[strategy] = MemoryCounters(strategy, slots=slots)
        return counters

    @property
    def round_trips(self) -> int:
        """Calls sent to a networked backend so far (0 for memory)."""
        return int(getattr(self.backend, "round_trips", 0))

    # -- outages -----------------------------------------------------------------------------

    def check_up(self) -> None:
        """Raise StorageUnavailable while the storage is known to be down (the probe revives it)."""
        if not self.up:
            raise StorageUnavailable("down")

    def failed(self, what: str) -> None:
        """A call failed: mark the storage down (once per outage: a warning and an audit event)."""
        if not self.up or self._closed:
            return
        self.up = False
        self.down_since = time.monotonic()
        effect = "limits are skipped" if self.on_error == "open" else "sends are refused (503)"
        log.warning(
            "storage %s is unavailable (during %s); on_error = %s: %s until it answers again",
            self.scheme,
            what,
            self.on_error,
            effect,
        )
        self._event(AuditEvent.STORAGE_UNAVAILABLE, during=what)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._probe is None or self._probe.done():
            self._probe = loop.create_task(self._revive())

    def _recovered(self) -> None:
        if self.up:
            return
        down_s = round(time.monotonic() - (self.down_since or time.monotonic()), 3)
        self.up = True
        self.down_since = None
        log.warning("storage %s is available again after %.1f s", self.scheme, down_s)
        self._event(AuditEvent.STORAGE_AVAILABLE, down_s=down_s)

    def _event(self, name: str, **fields: Any) -> None:
        if self.events is not None:
            try:
                self.events(name, backend=self.scheme, on_error=self.on_error, **fields)
            except Exception as exc:  # an audit failure must not turn into a request failure
                log.error("cannot record %s: %s", name, type(exc).__name__)

    async def _revive(self) -> None:
        while not self.up and not self._closed:
            await asyncio.sleep(PROBE_INTERVAL_S)
            if await self.backend.ping():
                self._recovered()

    def unavailable(self, what: str) -> GatewayError | None:
        """The answer to a storage failure: a refusal (``closed``), or None to let the request
        pass (``open``; the caller records that it did)."""
        self.note_failure(what)
        if self.errors % 1000 == 0:  # the first one is reported by failed(), as the outage
            log.warning(
                "limiter storage unavailable during %s (%d so far); on_error = %s",
                what,
                self.errors,
                self.on_error,
            )
        if self.on_error == "open":
            return None
        return refuse(
            Reason.LIMITER_UNAVAILABLE,
            "the limiter storage is unavailable",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
            detail=what,
        )

    def note_failure(self, what: str) -> None:
        """Count a failure seen by a request (the metric reads the counts); the first one of an
        outage marks the storage down. For callers that refuse nothing, such as alert rules."""
        self.errors += 1
        self.error_counts[what] = self.error_counts.get(what, 0) + 1
        self.failed(what)

    async def check(self) -> bool:
        """Ping now (readiness): a failure marks the storage down, an answer revives it."""
        ok = await self.backend.ping()
        if ok:
            self._recovered()
        else:
            self.failed("ping")
        return ok

    async def ready(self) -> bool:
        try:
            return await self.backend.ping()
        except StorageUnavailable:
            return False

    async def close(self) -> None:
        self._closed = True
        await stop_task(self._probe)
        await self.kv.close()


def skipped(detail: str | None, what: str) -> str:
    """The allow record's ``detail`` under ``on_error = "open"``: every check that was skipped."""
    if not detail:
        return what
    return detail if what in detail.split(",") else f"{detail},{what}"


# --------------------------------------------------------------------------- building it


#: ``[storage] url`` scheme -> the ``limits`` scheme of its asyncio storage.
_LIMITS_SCHEMES: Final = {
    "redis": "async+redis",
    "rediss": "async+rediss",
    "redis+sentinel": "async+redis+sentinel",
    "redis+cluster": "async+redis+cluster",
}


def open_storage(cfg: StorageConfig, hash_key: bytes | None) -> StorageService:
    """The storage service for ``[storage]``: nothing connects yet (the first call does)."""
    keys = StorageKeys(hash_key) if hash_key else None
    scheme = urlsplit(cfg.url).scheme
    if scheme == "memory":
        return StorageService(
            MemoryKeyValue(), prefix=cfg.key_prefix, on_error=cfg.on_error, url_scheme="memory", keys=keys
        )
    from limits.storage import storage_from_string
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    timeouts: dict[str, Any] = {"socket_timeout": cfg.timeout_s, "socket_connect_timeout": cfg.timeout_s}
    options: dict[str, Any] = dict(timeouts)
    if cfg.password is not None:
        options["password"] = cfg.password.get_secret_value()
    if scheme == "redis+cluster":
        options["require_full_coverage"] = True
    else:
        # One immediate retry on a broken connection (a pooled socket that a Redis restart
        # closed); timeouts are not retried: the on_error policy answers them.
        options["retry"] = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    if scheme == "redis+sentinel":
        options["use_replicas"] = False  # counters are read where they are written
        options["sentinel_kwargs"] = dict(timeouts)
    limiter = storage_from_string(
        _LIMITS_SCHEMES[scheme] + cfg.url[len(scheme) :],
        implementation="redispy",
        wrap_exceptions=True,
        key_prefix=cfg.key_prefix + "rl",
        **options,
    )
    bridge = limiter.bridge  # type: ignore[attr-defined]
    client = bridge.get_connection()
    closers: tuple[Any, ...] = (client,)
    if scheme == "redis+sentinel":
        closers = (client, *getattr(bridge.sentinel, "sentinels", ()))
    return StorageService(
        RedisKeyValue(client, closers),
        prefix=cfg.key_prefix,
        on_error=cfg.on_error,
        url_scheme=scheme,
        limiter=limiter,  # type: ignore[arg-type]
        keys=keys,
    )
