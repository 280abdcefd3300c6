"""Anomaly alerts (``[alerts]``): four rules over counters in the storage service, and where an
alert goes.

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

Counters live in the storage service (Redis: shared by every replica and worker), with TTLs;
numbers and prefixes are keyed by the storage HMAC (``StorageKeys.digest``, as the limits do),
never in clear. Each alert is raised once per subject and window across all replicas (the storage
decides who raises it), and becomes an audit event (``alert``), a metric (``smsgw_alerts_total``)
and, with ``[alerts.webhook]``, a signed POST, sent from a bounded queue by a background task that
retries with backoff: a slow or failing webhook never delays a request.

Cost on the request path, in storage calls: a send pays one per rule that counts it
(``client_volume``: one; ``number_prefix``: one per distinct recipient; ``new_country``: none once
the client's countries are known to the process, re-read hourly), all at once; a failed
authentication pays one; nothing else pays anything.

A storage failure never refuses because of an ``alert`` rule (it is counted, and the send goes
on); a ``block`` rule follows ``storage.on_error``, like the rate limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from aiohttp import web

from gateway.alerts.conversion import ConversionGuard
from gateway.alerts.conversion_store import MemoryConversionStore, make_store
from gateway.audit.log import utc_now
from gateway.config.schema import (
    AlertsConfig,
    AlertWebhookConfig,
    AuthFailuresRule,
    ClientVolumeRule,
    ConversionRule,
    NewCountryRule,
    NumberPrefixRule,
    parse_duration,
)
from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import AuditEvent, Detail
from gateway.core.exchange import Exchange
from gateway.core.signing import sign
from gateway.core.tasks import stop_task
from gateway.limits.stage import NO_COUNTRY
from gateway.storage.service import StorageService, StorageUnavailable, skipped

if TYPE_CHECKING:
    from pathlib import Path

    from gateway.config.schema import RouteConfig
    from gateway.server.metrics import Metrics
    from gateway.server.policy import Build

log = logging.getLogger("smsgw")

__all__ = ["AlertService", "CheckAnomalies", "WatchAuthFailures", "build_anomalies", "build_auth_watch"]

#: The first retry of a failed alert POST waits this long, then twice as long each time, at most
#: :data:`BACKOFF_MAX_S` (each wait varied by up to 20 %, so replicas do not retry in step).
BACKOFF_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
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


# --------------------------------------------------------------------------- where alerts go


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    key_id: str
    secret: str
    timeout_s: float
    retries: int
    ssl: ssl.SSLContext | None


class AlertService:
    """Raises alerts (audit event, metric, webhook queue) and keeps what rules remember across
    reloads: the compiled rules of the current ``[alerts]`` table and the blocked addresses."""

    def __init__(self, storage: StorageService, metrics: Metrics) -> None:
        self.storage = storage
        self.metrics = metrics
        #: ``event(name, **fields)`` of the audit log, set once the log is open.
        self.events: Callable[..., Any] | None = None
        self.worker: int | None = None
        #: Client address -> when its block ends (time.monotonic()).
        self.blocked: dict[str, float] = {}
        self._rules: tuple[tuple[object, ...], AnomalyRules] | None = None
        self._conversion: tuple[ConversionRule, ConversionGuard] | None = None
        #: The pumping guard's counters under ``memory://`` (kept across reloads, as storage is).
        self.conversion_memory = MemoryConversionStore()
        self._target: WebhookTarget | None = None
        self._queue: asyncio.Queue[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0

    def rules(self, cfg: AlertsConfig) -> AnomalyRules:
        """The compiled rules of ``cfg``; the same object (and what it learnt) while the rules are
        unchanged, so a reload that leaves them alone keeps their caches."""
        rules = (cfg.auth_failures, cfg.client_volume, cfg.number_prefix, cfg.new_country)
        if self._rules is None or self._rules[0] != rules:
            self._rules = (rules, AnomalyRules(cfg, self))
        return self._rules[1]

    def conversion(self, cfg: ConversionRule) -> ConversionGuard:
        """The compiled pumping guard of ``cfg``; the same object while the table is unchanged."""
        if self._conversion is None or self._conversion[0] != cfg:
            store = make_store(self.storage, self.conversion_memory)
            self._conversion = (cfg, ConversionGuard(cfg, self.storage, store))
        return self._conversion[1]

    def configure(self, hook: AlertWebhookConfig | None, base_dir: Path) -> None:
        """Where alerts are POSTed from now on (at start and on reload); None: nowhere."""
        if hook is None:
            self._target = None
            return
        context = None
        if hook.url.startswith("https:"):
            ca = str(base_dir / hook.ca_file) if hook.ca_file else None
            context = ssl.create_default_context(cafile=ca)
        self._target = WebhookTarget(
            hook.url, hook.key_id, hook.secret.get_secret_value(), hook.timeout_s, hook.retries, context
        )
        if self._queue is None or self._queue.maxsize != hook.queue:
            old = self._queue
            self._queue = asyncio.Queue(maxsize=hook.queue)
            while old is not None and not old.empty():
                body = old.get_nowait()
                if self._queue.full():
                    self.metrics.alert_webhook("dropped")
                else:
                    self._queue.put_nowait(body)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",), trust_env=False
        )
        self._task = asyncio.get_running_loop().create_task(self._deliver_all(), name="smsgw-alerts")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        if self._queue is not None and not self._queue.empty():
            log.warning("%d alert POST(s) not sent at shutdown (the audit log has them)", self._queue.qsize())
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- raising -------------------------------------------------------------------------------

    def fire(self, rule: str, action: str, **fields: Any) -> None:
        """One alert: audit event, metric, and a queued POST. Never raises, never waits."""
        record = {"rule": rule, "action": action, **fields}
        self.metrics.alert(rule, action)
        log.warning("alert %s (%s)", rule, action)
        if self.events is not None:
            try:
                self.events(AuditEvent.ALERT, **record)
            except Exception as exc:  # an audit failure must not turn into a request failure
                log.error("cannot record an alert: %s", type(exc).__name__)
        if self._target is None or self._queue is None:
            return
        body = {
            "event": AuditEvent.ALERT,
            "id": uuid.uuid4().hex,
            "ts": utc_now(),
            "worker": self.worker,
            **record,
        }
        try:
            self._queue.put_nowait(json.dumps(body, separators=(",", ":"), default=str).encode("utf-8"))
        except asyncio.QueueFull:
            self._dropped += 1
            self.metrics.alert_webhook("dropped")
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning("alert webhook queue is full: %d alert POST(s) dropped", self._dropped)

    async def once(self, subject: str, ttl_s: float) -> bool:
        """True for the first caller, across every replica, within ``ttl_s`` (who raises an alert);
        also True when storage cannot tell: an alert twice is better than none."""
        try:
            return await self.storage.kv.set_if_absent(self.storage.key("al", "fired", subject), b"1", ttl_s)
        except StorageUnavailable:
            self.storage.note_failure("alerts")
            return True

    # -- delivering ----------------------------------------------------------------------------

    async def _deliver_all(self) -> None:
        while True:
            queue = self._queue
            if queue is None:
                await asyncio.sleep(0.5)  # no webhook yet; a reload may add one
                continue
            try:  # a reload may replace the queue: look again every second
                body = await asyncio.wait_for(queue.get(), 1.0)
            except TimeoutError:
                continue
            try:
                await self._deliver(body)
            except Exception as exc:  # a bug here must not stop later alerts
                log.error("alert POST failed: %s", type(exc).__name__)

    async def _deliver(self, body: bytes) -> None:
        attempt = 0
        while True:
            target = self._target
            if target is None or self._session is None:
                return  # the webhook was removed by a reload
            outcome = await self._post(target, body)
            if outcome is None:
                self.metrics.alert_webhook("delivered")
                return
            if attempt >= target.retries:
                self.metrics.alert_webhook("failed")
                log.warning("alert POST given up after %d attempt(s) (%s)", attempt + 1, outcome)
                return
            self.metrics.alert_webhook("retried")
            wait = min(BACKOFF_MAX_S, BACKOFF_S * 2**attempt) * random.uniform(0.8, 1.2)  # noqa: S311
            attempt += 1
            await asyncio.sleep(wait)

    async def _post(self, target: WebhookTarget, body: bytes) -> str | None:
        """None when the webhook took it (2xx), else why not (a status or an error type)."""
        assert self._session is not None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "smsgw",
            **sign("POST", target.url, body, key_id=target.key_id, secret=target.secret, allow_http=True),
        }
        try:
            async with self._session.post(
                target.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=target.timeout_s),
                ssl=target.ssl if target.ssl is not None else True,
            ) as response:
                await response.read()
                return None if 200 <= response.status < 300 else f"status {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            return type(exc).__name__


# --------------------------------------------------------------------------- the rules


class AuthFailures:
    """More than ``threshold`` 401s from one address within a window (fixed windows)."""

    def __init__(self, cfg: AuthFailuresRule, service: AlertService) -> None:
        self.block = cfg.action == "block"
        self._action = cfg.action
        self._threshold = cfg.threshold
        self._window_s = float(parse_duration(cfg.window))
        self._service = service

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


class ClientVolume:
    """A client's messages per window against its own recent average (fixed windows)."""

    def __init__(self, cfg: ClientVolumeRule, service: AlertService) -> None:
        self.block = cfg.action == "block"
        self._action = cfg.action
        self._multiple = cfg.multiple
        self._minimum = cfg.min_messages
        self._window_s = float(parse_duration(cfg.window))
        self._windows = parse_duration(cfg.baseline) // parse_duration(cfg.window)
        self._service = service
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


class NumberPrefix:
    """Distinct numbers per prefix (the number without its last 4 digits) in a sliding window."""

    def __init__(self, cfg: NumberPrefixRule, service: AlertService) -> None:
        self.block = cfg.action == "block"
        self._action = cfg.action
        self._threshold = cfg.threshold
        self._window_s = float(parse_duration(cfg.window))
        self._cap = 2 * cfg.threshold + 10  # enough to see the crossing; bounds the set
        self._service = service

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


class NewCountry:
    """Countries a client usually sends to: learnt in its first ``learn``, forgotten after ``remember``."""

    def __init__(self, cfg: NewCountryRule, service: AlertService) -> None:
        self.block = cfg.action == "block"
        self._action = cfg.action
        self._learn_s = float(parse_duration(cfg.learn))
        self._remember_s = float(parse_duration(cfg.remember))
        self._service = service
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

    def __init__(self, cfg: AlertsConfig, service: AlertService) -> None:
        self.auth = AuthFailures(cfg.auth_failures, service) if cfg.auth_failures else None
        self.volume = ClientVolume(cfg.client_volume, service) if cfg.client_volume else None
        self.prefix = NumberPrefix(cfg.number_prefix, service) if cfg.number_prefix else None
        self.country = NewCountry(cfg.new_country, service) if cfg.new_country else None
        self.sends = self.volume is not None or self.prefix is not None or self.country is not None


# --------------------------------------------------------------------------- the stages


class WatchAuthFailures:
    """Stage, before authentication: refuses a blocked address (block mode); its response phase
    counts the request's authentication failure."""

    name = "auth_failures"
    __slots__ = ("_rule",)

    def __init__(self, rule: AuthFailures) -> None:
        self._rule = rule

    async def run(self, ex: Exchange) -> None:
        if self._rule.block and ex.ip:
            refusal = self._rule.refusal(ex.ip)
            if refusal is not None:
                raise refusal

    async def after(self, ex: Exchange, response: web.StreamResponse) -> None:
        if ex.reason == "unauthenticated" and ex.ip:
            await self._rule.failed(ex)


class CheckAnomalies:
    """Stage, after the limits: counts the send for the volume, prefix and country rules (at once)
    and refuses when a rule in block mode says so."""

    name = "anomalies"
    __slots__ = ("_rules", "_storage")

    def __init__(self, rules: AnomalyRules, storage: StorageService) -> None:
        self._rules = rules
        self._storage = storage

    async def run(self, ex: Exchange) -> None:
        client = ex.client
        if client is None:
            return
        rules = self._rules
        destinations = ex.destinations
        checks: list[tuple[bool, Awaitable[GatewayError | None]]] = []
        if rules.volume is not None:
            checks.append((rules.volume.block, rules.volume.check(ex, client.id, max(1, len(destinations)))))
        if rules.prefix is not None:
            numbers = {d.e164: d.region for d in destinations}
            checks.extend((rules.prefix.block, rules.prefix.check(ex, n, r)) for n, r in numbers.items())
        if rules.country is not None and destinations:
            countries = {d.region or NO_COUNTRY for d in destinations}
            checks.append((rules.country.block, rules.country.check(ex, client.id, countries)))
        if not checks:
            return
        if len(checks) == 1:
            results: list[Any] = [await _settled(checks[0][1])]
        else:
            results = await asyncio.gather(*(_settled(call) for _, call in checks))
        refusal = None
        for (block, _), result in zip(checks, results, strict=True):
            if isinstance(result, StorageUnavailable):
                if not block:
                    self._storage.note_failure("alerts")
                    continue
                error = self._storage.unavailable("alerts")
                if error is not None:
                    refusal = refusal or error
                else:
                    ex.detail = skipped(ex.detail, Detail.ALERTS_SKIPPED)
            elif result is not None:
                refusal = refusal or result
        if refusal is not None:
            raise refusal


async def _settled(call: Awaitable[GatewayError | None]) -> GatewayError | StorageUnavailable | None:
    try:
        return await call
    except StorageUnavailable as exc:
        return exc


def build_auth_watch(route: RouteConfig, b: Build) -> WatchAuthFailures | None:
    rules = b.services.alerts.rules(b.config.settings.alerts)
    return WatchAuthFailures(rules.auth) if rules.auth is not None else None


def build_anomalies(route: RouteConfig, b: Build) -> CheckAnomalies | None:
    """Sends only: an OTP check sends no message."""
    rules = b.services.alerts.rules(b.config.settings.alerts)
    if not rules.sends or route.kind == "otp-check":
        return None
    return CheckAnomalies(rules, b.services.storage)
