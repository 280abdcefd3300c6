"""Shared state: one storage service behind ``[storage]`` for every decision that must hold
across requests (and, with Redis, across replicas): rate limits, OTP counters, idempotency
records, RFC 9421 nonces, webhook duplicates.

Decisions never talk to a Redis client directly (``limits``' habit: the algorithm does not know
where counters live). They use the small :class:`KeyValue` contract (gateway/storage/keyvalue.py,
with the ``memory://`` backend; Redis's is gateway/storage/redis_backend.py); the backend raises
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
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import AuditEvent
from gateway.core.tasks import stop_task
from gateway.storage.keyvalue import STORAGE_ERRORS, KeyValue, MemoryKeyValue, StorageUnavailable, slot_wait
from gateway.storage.redis_backend import RedisKeyValue

if TYPE_CHECKING:
    from limits.aio.storage import Storage as LimiterStorage

    from gateway.config.schema import StorageConfig
    from gateway.storage.counters import MemoryCounters

log = logging.getLogger("smsgw")

__all__ = [
    "STORAGE_ERRORS",
    "KeyValue",
    "MemoryKeyValue",
    "RedisKeyValue",
    "StorageKeys",
    "StorageService",
    "StorageUnavailable",
    "open_storage",
    "skipped",
    "slot_wait",
]

#: While the storage is down, the probe pings it this often.
PROBE_INTERVAL_S: Final = 1.0

#: ``Retry-After`` of a 503 ``limiter_unavailable``: the probe's interval in whole seconds, the
#: soonest a retry can find the storage back (as every 429 tells the client when to come back).
UNAVAILABLE_RETRY_AFTER_S: Final = max(1, math.ceil(PROBE_INTERVAL_S))


class StorageKeys:
    """Keys derived from ``logging.hash_key`` for what is written to storage.

    Derived (not the log key itself), so a number's storage key is not its ``recipient = "hash"``
    value in the audit log; a rotated ``hash_key`` starts new counters and makes stored answers
    unreadable (they expire within 24 h).
    """

    __slots__ = ("_aead", "_ids")

    def __init__(self, secret: bytes) -> None:
        #: Keyed once; every digest starts from a copy (the key's pads are not hashed again).
        self._ids = hmac.new(
            hmac.new(secret, b"smsgw storage identifiers v1", hashlib.sha256).digest(),
            digestmod=hashlib.sha256,
        )
        self._aead = AESGCM(hmac.new(secret, b"smsgw storage records v1", hashlib.sha256).digest())

    def digest(self, *parts: str | bytes) -> str:
        """A stable, keyed name for a number, a client-chosen key or a request (128 bits, hex).

        Parts are length-prefixed, so no two different part lists give the same input.
        """
        mac = self._ids.copy()
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
