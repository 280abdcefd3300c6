"""Anomaly alerts (``[alerts]``): the stages that run the rules of :mod:`gateway.alerts.rules`,
and where an alert goes.

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
import random
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from aiohttp import web

from gateway.alerts.conversion import ConversionGuard
from gateway.alerts.conversion_store import MemoryConversionStore, make_store
from gateway.alerts.metrics import AlertMetrics
from gateway.alerts.rules import AnomalyRules, AuthFailures
from gateway.audit.log import utc_now
from gateway.config.schema import AlertsConfig, AlertWebhookConfig, ConversionRule
from gateway.core.errors import GatewayError
from gateway.core.events import AuditEvent, Detail
from gateway.core.exchange import Exchange, SyncStage
from gateway.core.signing import sign
from gateway.core.tasks import stop_task
from gateway.core.values import NO_COUNTRY
from gateway.storage.service import StorageService, StorageUnavailable, skipped

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger("smsgw")

__all__ = ["AlertMetrics", "AlertService", "CheckAnomalies", "WatchAuthFailures"]


#: The first retry of a failed alert POST waits this long, then twice as long each time, at most
#: :data:`BACKOFF_MAX_S` (each wait varied by up to 20 %, so replicas do not retry in step).
BACKOFF_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0


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

    def __init__(self, storage: StorageService, metrics: AlertMetrics) -> None:
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


# --------------------------------------------------------------------------- the stages


class WatchAuthFailures(SyncStage):
    """Stage, before authentication: refuses a blocked address (block mode); its response phase
    counts the request's authentication failure."""

    name = "auth_failures"
    __slots__ = ("_rule",)

    def __init__(self, rule: AuthFailures) -> None:
        self._rule = rule

    def run_sync(self, ex: Exchange) -> None:
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
