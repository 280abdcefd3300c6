"""Shared state: one storage service behind ``[storage]`` for every decision that must hold
across requests (and, with Redis, across replicas): rate limits, OTP counters, idempotency
records, RFC 9421 nonces, webhook duplicates.

Decisions never talk to a Redis client directly (``limits``' habit: the algorithm does not know
where counters live). They use the small :class:`KeyValue` contract below; the backend raises
:class:`StorageUnavailable` when it cannot answer, and :meth:`StorageService.unavailable` turns
that into the configured ``storage.on_error`` policy: ``closed`` refuses (503
``limiter_unavailable``), ``open`` lets the request pass and records the event.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from gateway.errors import GatewayError, refuse

log = logging.getLogger("smsgw")

__all__ = ["KeyValue", "MemoryKeyValue", "StorageService", "StorageUnavailable"]


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

    async def ping(self) -> bool:
        """True when the backend answers now (readiness)."""
        ...

    async def close(self) -> None: ...


class MemoryKeyValue:
    """One process's memory: exact, and lost on restart (``storage.url = "memory://"``)."""

    __slots__ = ("_data", "_max_keys", "_writes")

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
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
        if self._writes % 1024 == 0 or len(self._data) >= self._max_keys:
            for key in [k for k, (_, expires) in self._data.items() if expires <= now]:
                del self._data[key]
            if len(self._data) >= self._max_keys:
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

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


class StorageService:
    """The configured backend, its key prefix, and the on-error policy, for every stage to share."""

    def __init__(self, kv: KeyValue, *, prefix: str, on_error: str, url_scheme: str = "memory") -> None:
        self.kv = kv
        self.prefix = prefix
        self.on_error = on_error
        self.scheme = url_scheme
        self.errors = 0  # outages seen (a metric reads it)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def unavailable(self, what: str) -> GatewayError | None:
        """The answer to a storage failure: a refusal (``closed``), or None to let the request
        pass (``open``; the caller records that it did)."""
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            log.warning(
                "limiter storage unavailable during %s (%d so far); on_error = %s",
                what,
                self.errors,
                self.on_error,
            )
        if self.on_error == "open":
            return None
        return refuse("limiter_unavailable", "the limiter storage is unavailable", detail=what)

    async def ready(self) -> bool:
        try:
            return await self.kv.ping()
        except StorageUnavailable:
            return False

    async def close(self) -> None:
        await self.kv.close()
