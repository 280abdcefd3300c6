"""Anomaly rules over counters in the storage service (``[alerts]``); the stages that run them
and the service that raises their alerts are in :mod:`gateway.alerts.anomalies`.

Rules (a rule is on when its table is present; ``action = "alert"`` only reports,
``action = "block"`` also refuses with 429 ``anomaly_blocked``):

- ``auth_failures``: more than ``threshold`` authentication failures (401) from one client address
  within ``window``. Counted in the response phase of a failed request; a blocked address is
  refused before authentication until the window ends, by every replica that has seen one of
  its failures over the threshold (no storage call on the way in).
- ``client_volume``: a client's messages in the current ``window`` over ``multiple`` times its
  average window of the ``baseline`` before (read once per client and window), and over
  ``min_messages``. Blocked messages are not counted, so a flood cannot raise the baseline.
- ``number_prefix``: more than ``threshold`` distinct numbers within ``window`` in one prefix (the
  number without its last 4 digits: pumping runs through a range of consecutive numbers). Blocked:
  a new number in such a prefix; numbers already counted still pass.
- ``new_country``: a send to a country outside the client's usual ones. Countries the client sends
  to in its first ``learn`` are usual; in alert mode a new country is alerted once and then usual;
  in block mode it stays refused. A country not sent to for ``remember`` is forgotten.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final, Protocol

from gateway.config.schema import (
    AlertsConfig,
    AuthFailuresRule,
    ClientVolumeRule,
    NewCountryRule,
    NumberPrefixRule,
    parse_duration,
)
from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.core.values import NO_COUNTRY
from gateway.storage.service import StorageService, StorageUnavailable


class Alerts(Protocol):
    """What a rule needs from the alert service: its storage, the blocked addresses, and raising
    an alert once per subject and window."""

    storage: StorageService
    blocked: dict[str, float]

    def fire(self, rule: str, action: str, **fields: Any) -> None: ...

    async def once(self, subject: str, ttl_s: float) -> bool: ...


#: A process re-reads a client's known countries (and renews their TTL) this often.
COUNTRY_REFRESH_S: Final = 3600.0
#: At most this many blocked addresses are remembered by one process (expired ones go first).
MAX_BLOCKED: Final = 100_000


def _blocked(message: str, rule: str, retry_after: float | None = None) -> GatewayError:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return refuse(Reason.ANOMALY_BLOCKED, message, headers=headers, detail=rule)


def masked_prefix(prefix: str) -> str:
    """A number prefix as alerts show it: the country code and a digit or two, never the range
    (an audit record holds no more of a number than a masked recipient does)."""
    return prefix[:5] + "****"


class _Rule:
    """What every rule keeps: its action (``block`` also refuses) and the service it alerts through."""

    def __init__(self, action: str, service: Alerts) -> None:
        self.block = action == "block"
        self._action = action
        self._service = service


class AuthFailures(_Rule):
    """More than ``threshold`` 401s from one address within a window (fixed windows)."""

    def __init__(self, cfg: AuthFailuresRule, service: Alerts) -> None:
        super().__init__(cfg.action, service)
        self._threshold = cfg.threshold
        self._window_s = float(parse_duration(cfg.window))

    def refusal(self, ip: str) -> GatewayError | None:
        """Block mode: the refusal for an address blocked here, else None (no storage call)."""
        blocked = self._service.blocked
        until = blocked.get(ip)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del blocked[ip]
            return None
        return _blocked("too many failed authentications from this address", Detail.AUTH_FAILURES, left)

    async def failed(self, ex: Exchange) -> None:
        """Count one failure of ``ex.ip``; over the threshold, raise the alert (once) and block."""
        storage = self._service.storage
        now = time.time()
        bucket = int(now // self._window_s)
        ip_key = storage.keys.digest("ip", ex.ip) if storage.keys is not None else ex.ip
        key = storage.key("al", "auth", ip_key, str(bucket))
        try:
            count, _ = await storage.kv.add(key, 1, self._window_s + 1)
        except StorageUnavailable:
            storage.note_failure("alerts")
            return
        if count <= self._threshold:
            return
        if self.block:
            blocked = self._service.blocked
            if len(blocked) >= MAX_BLOCKED:
                mono = time.monotonic()
                for ip in [ip for ip, until in blocked.items() if until <= mono]:
                    del blocked[ip]
                if len(blocked) >= MAX_BLOCKED:
                    blocked.pop(next(iter(blocked)))
            blocked[ex.ip] = time.monotonic() + (bucket + 1) * self._window_s - now
        if count == self._threshold + 1:  # exactly one failure crosses it, on whichever replica
            self._service.fire(
                Detail.AUTH_FAILURES,
                self._action,
                ip=ex.ip,
                route=ex.route_name,
                count=count,
                threshold=self._threshold,
                window_s=self._window_s,
                request_id=ex.request_id,
            )


class ClientVolume(_Rule):
    """A client's messages per window against its own recent average (fixed windows)."""

    def __init__(self, cfg: ClientVolumeRule, service: Alerts) -> None:
        super().__init__(cfg.action, service)
        self._multiple = cfg.multiple
        self._minimum = cfg.min_messages
        self._window_s = float(parse_duration(cfg.window))
        self._windows = parse_duration(cfg.baseline) // parse_duration(cfg.window)
        #: client -> (window number, (threshold, average)) for the current window
        self._limits: dict[str, tuple[int, tuple[int, float]]] = {}

    def _key(self, client: str, bucket: int) -> str:
        # {client} keeps a client's counters on one Redis Cluster node, so they are read at once.
        return self._service.storage.key("al", "vol", "{" + client + "}", str(bucket))

    async def _limit(self, client: str, bucket: int) -> tuple[int, float]:
        cached = self._limits.get(client)
        if cached is not None and cached[0] == bucket:
            return cached[1]
        keys = [self._key(client, b) for b in range(bucket - self._windows, bucket)]
        counts = await self._service.storage.kv.counts(keys)
        average = sum(counts) / self._windows
        limit = (max(self._minimum, math.floor(self._multiple * average)), average)
        self._limits[client] = (bucket, limit)
        return limit

    async def check(self, ex: Exchange, client: str, messages: int) -> GatewayError | None:
        now = time.time()
        bucket = int(now // self._window_s)
        limit, average = await self._limit(client, bucket)
        ttl = self._window_s * (self._windows + 2)
        count, added = await self._service.storage.kv.add(
            self._key(client, bucket), messages, ttl, limit if self.block else -1
        )
        if added:
            if count > limit >= count - messages:  # alert mode: exactly one request crosses it
                self._fire(ex, client, count, limit, average)
            return None
        if await self._service.once(f"vol:{client}:{bucket}", self._window_s):
            self._fire(ex, client, count + messages, limit, average)
        return _blocked(
            "this client's volume is far above its usual rate",
            Detail.CLIENT_VOLUME,
            (bucket + 1) * self._window_s - now,
        )

    def _fire(self, ex: Exchange, client: str, count: int, limit: int, average: float) -> None:
        self._service.fire(
            Detail.CLIENT_VOLUME,
            self._action,
            client=client,
            route=ex.route_name,
            count=count,
            threshold=limit,
            baseline=round(average, 2),
            window_s=self._window_s,
            request_id=ex.request_id,
        )


class NumberPrefix(_Rule):
    """Distinct numbers per prefix (the number without its last 4 digits) in a sliding window."""

    def __init__(self, cfg: NumberPrefixRule, service: Alerts) -> None:
        super().__init__(cfg.action, service)
        self._threshold = cfg.threshold
        self._window_s = float(parse_duration(cfg.window))
        self._cap = 2 * cfg.threshold + 10  # enough to see the crossing; bounds the set

    async def check(self, ex: Exchange, e164: str, region: str | None) -> GatewayError | None:
        storage = self._service.storage
        keys = storage.keys
        assert keys is not None  # check-config requires logging.hash_key for number_prefix
        prefix = e164[:-4]
        prefix_id = keys.digest("prefix", prefix)
        count, outcome = await storage.kv.add_member(
            storage.key("al", "pfx", prefix_id),
            keys.digest("number", e164),
            self._window_s,
            self._threshold if self.block else -1,
            self._cap,
        )
        over = outcome == -1 or (outcome == 1 and count > self._threshold)
        bucket = int(time.time() // self._window_s)
        if over and await self._service.once(f"pfx:{prefix_id}:{bucket}", self._window_s):
            self._service.fire(
                Detail.NUMBER_PREFIX,
                self._action,
                client=ex.client_id,
                route=ex.route_name,
                prefix=masked_prefix(prefix),
                prefix_id=prefix_id[:12],
                country=region or NO_COUNTRY,
                count=count + 1 if outcome == -1 else count,
                threshold=self._threshold,
                window_s=self._window_s,
                request_id=ex.request_id,
            )
        if outcome == -1:
            return _blocked("too many different numbers in one number range", Detail.NUMBER_PREFIX)
        return None


class NewCountry(_Rule):
    """Countries a client usually sends to: learnt in its first ``learn``, forgotten after ``remember``."""

    def __init__(self, cfg: NewCountryRule, service: Alerts) -> None:
        super().__init__(cfg.action, service)
        self._learn_s = float(parse_duration(cfg.learn))
        self._remember_s = float(parse_duration(cfg.remember))
        #: (client, country) -> when this process last confirmed it as usual (monotonic)
        self._known: dict[tuple[str, str], float] = {}
        #: client -> (when it started sending (wall clock), when that was read (monotonic))
        self._since: dict[str, tuple[float, float]] = {}

    async def _started(self, client: str) -> float:
        mono = time.monotonic()
        cached = self._since.get(client)
        if cached is not None and mono - cached[1] < COUNTRY_REFRESH_S:
            return cached[0]
        kv, key = self._service.storage.kv, self._service.storage.key("al", "since", client)
        now = time.time()
        if await kv.set_if_absent(key, repr(now).encode("ascii"), self._remember_s):
            since = now
        else:
            stored = await kv.get(key)
            since = float(stored) if stored else now
            await kv.set(key, repr(since).encode("ascii"), self._remember_s)  # sending: remembered on
        self._since[client] = (since, mono)
        return since

    async def check(self, ex: Exchange, client: str, countries: set[str]) -> GatewayError | None:
        mono = time.monotonic()
        todo = [c for c in countries if mono - self._known.get((client, c), -math.inf) >= COUNTRY_REFRESH_S]
        if not todo:
            return None
        learning = time.time() - await self._started(client) < self._learn_s
        kv, storage = self._service.storage.kv, self._service.storage
        refusal = None
        for country in sorted(todo):
            key = storage.key("al", "cc", client, country)
            if self.block and not learning:
                known = await kv.get(key) is not None
                if not known:
                    if await self._service.once(f"cc:{client}:{country}", COUNTRY_REFRESH_S):
                        self._fire(ex, client, country)
                    refusal = _blocked(
                        "a send to a country this client does not usually send to", Detail.NEW_COUNTRY
                    )
                    continue
                await kv.set(key, b"1", self._remember_s)
            elif not await kv.set_if_absent(key, b"1", self._remember_s):
                await kv.set(key, b"1", self._remember_s)  # known: remembered for longer
            elif not learning:
                self._fire(ex, client, country)  # new: alerted once (it is usual from now on)
            self._known[(client, country)] = mono
        return refusal

    def _fire(self, ex: Exchange, client: str, country: str) -> None:
        self._service.fire(
            Detail.NEW_COUNTRY,
            self._action,
            client=client,
            route=ex.route_name,
            country=country,
            request_id=ex.request_id,
        )


class AnomalyRules:
    """The rules of one ``[alerts]`` table, with what they cache (shared by every route)."""

    def __init__(self, cfg: AlertsConfig, service: Alerts) -> None:
        self.auth = AuthFailures(cfg.auth_failures, service) if cfg.auth_failures else None
        self.volume = ClientVolume(cfg.client_volume, service) if cfg.client_volume else None
        self.prefix = NumberPrefix(cfg.number_prefix, service) if cfg.number_prefix else None
        self.country = NewCountry(cfg.new_country, service) if cfg.new_country else None
        self.sends = self.volume is not None or self.prefix is not None or self.country is not None
