"""The storage contract (:class:`KeyValue`) and its in-process backend (``memory://``).

A backend raises :class:`StorageUnavailable` when it cannot answer; what that means for a request
is decided once, in gateway/storage/service.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final, Protocol

__all__ = ["STORAGE_ERRORS", "KeyValue", "MemoryKeyValue", "StorageUnavailable", "slot_wait"]


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

    ``times`` are the entries' timestamps, oldest first. The same rule as ``_TAKE_SLOT`` in
    gateway/storage/redis_backend.py.
    """
    wait = 0.0
    if gap_s > 0 and times:
        wait = max(wait, times[-1] + gap_s - now)
    in_window = [t for t in times if t > now - window_s]
    if len(in_window) >= limit:
        wait = max(wait, in_window[len(in_window) - limit] + window_s - now)
    return wait


def _storage_errors() -> tuple[type[BaseException], ...]:
    from limits.errors import StorageError
    from redis.exceptions import RedisError

    return (RedisError, StorageError, OSError, TimeoutError)


#: What a backend may raise when it cannot answer (redis-py, limits' wrapper, sockets, timeouts).
STORAGE_ERRORS: Final = _storage_errors()
