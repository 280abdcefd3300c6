"""Long-lived services the request path uses: opened together, closed together, in reverse.

A :class:`~gateway.server.policy.Policy` is immutable and cheap to rebuild from a new config; the
services it points at (the vendor connection pool, the log files, storage, key caches, metrics,
alerts) live across policies. :func:`open_services` opens them under one exit stack and yields a
frozen :class:`Services` in which everything is there from the start; leaving it closes what was
opened, last opened first, also when opening failed half-way.

What a reload changes is held apart, with one owner each: :class:`Switched` (the config, the
vendor pool and its credentials: :meth:`Services.reconfigure` replaces a pool only when
``[upstream]`` changed, and closes the old one once no request can still use it), the certificate
(:class:`~gateway.transport.tls.ReloadableServerTLS`), the alert webhook
(:meth:`~gateway.alerts.anomalies.AlertService.configure`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from gateway.alerts.anomalies import AlertService
from gateway.alerts.metrics import AlertMetrics
from gateway.audit.log import AuditLog, Retention, open_audit_log, record_start
from gateway.audit.metrics import LogMetrics
from gateway.callbacks.forward import CallbackForwarder
from gateway.config import Config, parse_listen
from gateway.config.files import tighten_log_modes
from gateway.core.events import AuditEvent
from gateway.core.jsonlog import JsonLinesSink, worker_log_path
from gateway.identity.jwks import JwksService
from gateway.identity.metrics import JwksMetrics
from gateway.server.metrics import MULTIPROC_ENV, Metrics
from gateway.storage.metrics import StorageMetrics
from gateway.storage.service import StorageService, open_storage
from gateway.transport.connections import ConnectionLimits, connection_limits
from gateway.transport.credentials import VendorCredentials
from gateway.transport.metrics import ConnectionMetrics
from gateway.transport.proxy import Upstream
from gateway.transport.tls import PreparedTLS, ReloadableServerTLS, upstream_context

if TYPE_CHECKING:
    from gateway.core.pipeline import StageTimer
    from gateway.tracing.otel import Tracing

__all__ = ["Services", "Switched", "dry_services", "open_services"]

T = TypeVar("T")


def _upstream(config: Config, credentials: VendorCredentials) -> Upstream:
    s = config.settings.upstream
    return Upstream(
        s.base_url,
        credentials,
        upstream_context(config.resolve_path(s.ca_file) if s.ca_file else None, s.pin_sha256),
        s.connect_timeout_s,
        s.timeout_s,
    )


def _tls_files(config: Config) -> tuple:
    tls = config.settings.server.tls
    return (
        tls,
        config.resolve_path(tls.cert_file),
        config.resolve_path(tls.key_file),
        config.resolve_path(tls.client_ca_file) if tls.client_ca_file else None,
    )


@dataclass(slots=True)
class _Staged:
    """What a new config needs that the running services do not have yet."""

    upstream: Upstream | None = None
    credentials: VendorCredentials | None = None
    tls: PreparedTLS | None = None


@dataclass(slots=True, repr=False)
class Switched:
    """What changes while the services run. Only :meth:`Services.reconfigure` switches the config
    and the vendor pool; the server sets ``https_port`` once, when the public listener is bound."""

    config: Config
    upstream: Upstream
    credentials: VendorCredentials
    #: The public listener's port (redirect targets): the configured one until it is bound.
    https_port: int = 0


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Services:
    """Everything a policy is built from, open for as long as the gateway serves."""

    worker: int | None
    storage: StorageService
    #: JWKS key sets of the JWT issuers, fetched at start and refreshed (identity/jwks.py).
    jwks: JwksService
    #: Prometheus metrics; with several workers, in the supervisor's multiprocess directory.
    metrics: Metrics
    #: Anomaly rules' state and where alerts go (gateway/alerts/anomalies.py).
    alerts: AlertService
    #: The public listeners' connection counts (shared by every public listener).
    connections: ConnectionLimits
    #: The pooled session that forwards verified vendor callbacks to internal services.
    callbacks: CallbackForwarder
    access_log: JsonLinesSink
    audit: AuditLog
    #: The certificate when ``server.tls.mode = "terminate"``, else None.
    tls: ReloadableServerTLS | None
    #: OpenTelemetry spans (``[tracing]``); None when off, and then nothing of it is imported.
    tracing: Tracing | None
    switched: Switched
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def config(self) -> Config:
        return self.switched.config

    @property
    def upstream(self) -> Upstream:
        return self.switched.upstream

    @property
    def credentials(self) -> VendorCredentials:
        return self.switched.credentials

    @property
    def https_port(self) -> int:
        return self.switched.https_port

    @property
    def timer(self) -> StageTimer:
        """The stage loop's timer: the metrics drain it."""
        return self.metrics.stages

    @property
    def host_names(self) -> frozenset[str]:
        return self.tls.names if self.tls is not None else frozenset()

    @property
    def ready(self) -> bool:
        return self.upstream.ready

    # -- reload ----------------------------------------------------------------------------

    async def reconfigure(self, config: Config, build: Callable[[], T]) -> T:
        """Take on ``config`` and return ``build()`` (the new policy) made with it.

        First everything the new config needs is made without being used (a vendor pool when
        ``[upstream]`` changed, the certificate from its files); then, with no await in between,
        the services are switched and ``build`` runs. Any failure puts everything back and
        raises: the old config goes on serving. The caller swaps the policy in on return.
        """
        current = self.switched
        old_config = current.config
        new, old = config.settings, old_config.settings
        staged = _Staged()
        try:
            if new.upstream != old.upstream:
                staged.credentials = VendorCredentials.from_config(new.upstream.credentials)
                staged.upstream = _upstream(config, staged.credentials)
                await staged.upstream.start()
            if self.tls is not None:
                staged.tls = self.tls.prepare(*_tls_files(config))
        except BaseException:
            if staged.upstream is not None:
                await staged.upstream.close()
            raise
        # From here on, no await until the caller has swapped the policy in.
        previous = (current.upstream, current.credentials)
        if staged.upstream is not None and staged.credentials is not None:
            current.upstream, current.credentials = staged.upstream, staged.credentials
        current.config = config
        try:
            built = build()
        except BaseException:
            current.upstream, current.credentials = previous
            current.config = old_config
            if staged.upstream is not None:
                self._retire(staged.upstream, 0)
            raise
        if staged.tls is not None and self.tls is not None:
            self.tls.use(staged.tls)
        self.storage.on_error = new.storage.on_error
        self.alerts.configure(new.alerts.webhook, config.base_dir)
        self.connections.trust(new.server.trusted_proxies)
        if new.logging.level != old.logging.level:
            logging.getLogger().setLevel(new.logging.level.upper())
        if staged.upstream is not None:
            # Requests that started under the old policy may still be on their way to the vendor.
            o = old.server
            self._retire(
                previous[0], o.body_timeout_s + old.upstream.connect_timeout_s + old.upstream.timeout_s + 10
            )
        return built

    def _retire(self, upstream: Upstream, after_s: float) -> None:
        async def close_later() -> None:
            try:
                await asyncio.sleep(after_s)
            finally:
                await upstream.close()

        task = asyncio.get_running_loop().create_task(close_later(), name="smsgw-retire-upstream")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_upstreams(self) -> None:
        for task in list(self._retiring):
            task.cancel()  # closes its pool at once
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.upstream.close()

    def _stopped(self) -> None:
        self.audit.event(AuditEvent.GATEWAY_STOPPED, worker=self.worker)


@dataclass(slots=True, repr=False)
class _Unopened:
    """The services made from the config before anything is opened (nothing here needs closing)."""

    switched: Switched
    tls: ReloadableServerTLS | None
    storage: StorageService
    jwks: JwksService
    metrics: Metrics
    alerts: AlertService
    tracing: Tracing | None

    @classmethod
    def make(cls, config: Config, worker: int | None) -> _Unopened:
        s = config.settings
        credentials = VendorCredentials.from_config(s.upstream.credentials)
        tls = ReloadableServerTLS(*_tls_files(config)) if s.server.tls.mode == "terminate" else None
        hash_key = s.logging.hash_key_bytes
        storage = open_storage(s.storage, hash_key)
        metrics = Metrics(os.environ.get(MULTIPROC_ENV) if worker is not None else None)
        tracing = None
        if s.tracing.enabled:
            from gateway.tracing.otel import Tracing

            tracing = Tracing(s.tracing)
        return cls(
            Switched(config, _upstream(config, credentials), credentials, parse_listen(s.server.listen)[1]),
            tls,
            storage,
            JwksService(config),
            metrics,
            AlertService(storage, AlertMetrics(metrics.registry)),
            tracing,
        )

    def services(self, worker: int | None, access_log: JsonLinesSink, audit: AuditLog) -> Services:
        config = self.switched.config
        return Services(
            worker,
            self.storage,
            self.jwks,
            self.metrics,
            self.alerts,
            connection_limits(config.settings.server),
            CallbackForwarder(),
            access_log,
            audit,
            self.tls,
            self.tracing,
            self.switched,
        )


@asynccontextmanager
async def open_services(
    config: Config, worker: int | None = None, generation: int = 1, sha256: str | None = None
) -> AsyncIterator[Services]:
    """Open every service for ``config``; ``worker``: this process's index under
    ``server.workers > 1``, else None. Leaving the block closes them, last opened first."""
    async with AsyncExitStack() as stack:
        yield await _open(stack, config, worker, generation, sha256)


async def _open(
    stack: AsyncExitStack, config: Config, worker: int | None, generation: int, sha256: str | None
) -> Services:
    made = _Unopened.make(config, worker)
    s = config.settings
    tighten_log_modes(s.logging, config.base_dir)
    access_log = JsonLinesSink(worker_log_path(s.logging.access_log, worker), config.base_dir)
    stack.callback(access_log.close)
    audit = open_audit_log(config, worker)
    stack.callback(audit.close)
    services = made.services(worker, access_log, audit)
    record_start(audit, config, worker, generation=generation, sha256=sha256)
    stack.callback(services._stopped)
    retention = Retention(audit, s.logging.retention_days)
    retention.start()
    stack.push_async_callback(retention.close)
    stack.push_async_callback(services.storage.close)
    services.storage.events = audit.event
    await services.storage.check()  # down at start: warned, audited, and probed until it answers
    await services.upstream.start()
    stack.push_async_callback(services._close_upstreams)
    stack.push_async_callback(services.jwks.close)
    await services.jwks.start()
    await services.callbacks.start()
    stack.push_async_callback(services.callbacks.close)
    alerts = services.alerts
    alerts.events, alerts.worker = audit.event, worker
    alerts.configure(s.alerts.webhook, config.base_dir)
    await alerts.start()
    stack.push_async_callback(alerts.close)
    if services.tracing is not None:
        stack.push_async_callback(services.tracing.close)
    _watch(services)
    services.metrics.config_loaded(generation)
    services.metrics.start()
    stack.push_async_callback(services.metrics.close)
    return services


def _watch(services: Services) -> None:
    """Every feature's families, registered into the server's registry and flushed with it."""
    metrics = services.metrics
    registry = metrics.registry
    metrics.add(
        StorageMetrics(registry, services.storage),
        JwksMetrics(registry, services.jwks),
        LogMetrics(registry, {"access": services.access_log, "audit": services.audit}),
        ConnectionMetrics(registry, services.connections),
    )


def dry_services(config: Config, jwks: JwksService, audit: AuditLog) -> Services:
    """Services to compile a policy with, never to serve (``smsgw explain``): nothing is started,
    the access log is the null device, and the caller brings the key sets and the audit log.
    Close its storage when done."""
    made = _Unopened.make(config, None)
    made.jwks = jwks
    return made.services(None, JsonLinesSink(os.devnull), audit)
