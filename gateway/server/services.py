"""Long-lived services the request path uses: built once, started and closed in one list.

A :class:`~gateway.server.policy.Policy` is immutable and cheap to rebuild from a new config; the
services it points at (the vendor connection pool, the log files, storage, key caches, metrics,
alerts) live across policies. A reload (:meth:`Services.reconfigure`) replaces only what the new
config changes: a new vendor pool when ``[upstream]`` changed (the old one is closed once no
request can still use it), the certificate, the alert webhook.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from gateway.alerts.anomalies import AlertService
from gateway.audit.log import AuditLog, Retention, open_audit_log, record_start
from gateway.callbacks.forward import CallbackForwarder
from gateway.config import Config
from gateway.config.files import tighten_log_modes
from gateway.core.events import AuditEvent
from gateway.core.jsonlog import JsonLinesSink, worker_log_path
from gateway.identity.jwks import JwksService
from gateway.server.metrics import MULTIPROC_ENV, Metrics
from gateway.storage.service import StorageService, open_storage
from gateway.transport.credentials import VendorCredentials
from gateway.transport.proxy import Upstream
from gateway.transport.tls import PreparedTLS, ReloadableServerTLS, upstream_context

if TYPE_CHECKING:
    from gateway.tracing.otel import Tracing
    from gateway.transport.connections import ConnectionLimits

__all__ = ["Services"]

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


class Services:
    def __init__(self, config: Config, worker: int | None = None) -> None:
        s = config.settings
        self.credentials = VendorCredentials.from_config(s.upstream.credentials)
        self.upstream = _upstream(config, self.credentials)
        self.tls: ReloadableServerTLS | None = None
        if s.server.tls.mode == "terminate":
            self.tls = ReloadableServerTLS(*_tls_files(config))
        hash_key = s.logging.hash_key.get_secret_value().encode("utf-8") if s.logging.hash_key else None
        self.storage: StorageService = open_storage(s.storage, hash_key)
        #: JWKS key sets of the JWT issuers, fetched at start and refreshed (identity/jwks.py).
        self.jwks = JwksService(config)
        #: Prometheus metrics; with several workers, in the supervisor's multiprocess directory.
        self.metrics = Metrics(os.environ.get(MULTIPROC_ENV) if worker is not None else None)
        #: The stage loop's timer: the metrics drain it.
        self.timer = self.metrics.stages
        #: Anomaly rules' state and where alerts go (gateway/alerts/anomalies.py).
        self.alerts = AlertService(self.storage, self.metrics)
        #: The public listeners' connection counts (set by the server once they listen).
        self.connections: ConnectionLimits | None = None
        #: OpenTelemetry spans (``[tracing]``); None when off, and then nothing of it is imported.
        self.tracing: Tracing | None = None
        if s.tracing.enabled:
            from gateway.tracing.otel import Tracing

            self.tracing = Tracing(s.tracing)
        #: The pooled session that forwards verified vendor callbacks to internal services.
        self.callbacks = CallbackForwarder()
        #: The public listener's bound port (redirect targets); set once the listener is up.
        self.https_port = 0
        self.access_log: JsonLinesSink | None = None
        self.audit: AuditLog | None = None
        self.retention: Retention | None = None
        self._config = config
        self._worker = worker
        self._closers: list[Callable[[], Awaitable[None] | None]] = []
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def config(self) -> Config:
        return self._config

    @property
    def host_names(self) -> frozenset[str]:
        return self.tls.names if self.tls is not None else frozenset()

    async def start(self, generation: int = 1, sha256: str | None = None) -> None:
        """Open everything; on failure, what was opened is closed again."""
        s = self._config.settings
        tighten_log_modes(s.logging, self._config.base_dir)
        try:
            self.access_log = JsonLinesSink(
                worker_log_path(s.logging.access_log, self._worker), self._config.base_dir
            )
            self._closers.append(self.access_log.close)
            self.audit = open_audit_log(self._config, self._worker)
            self._closers.append(self.audit.close)
            record_start(self.audit, self._config, self._worker, generation=generation, sha256=sha256)
            self._closers.append(self._stopped)
            self.retention = Retention(self.audit, s.logging.retention_days)
            self.retention.start()
            self._closers.append(self.retention.close)
            self._closers.append(self.storage.close)
            self.storage.events = self.audit.event
            await self.storage.check()  # down at start: warned, audited, and probed until it answers
            await self.upstream.start()
            self._closers.append(self._close_upstreams)
            self._closers.append(self.jwks.close)
            await self.jwks.start()
            await self.callbacks.start()
            self._closers.append(self.callbacks.close)
            self.alerts.events = self.audit.event
            self.alerts.worker = self._worker
            self.alerts.configure(s.alerts.webhook, self._config.base_dir)
            await self.alerts.start()
            self._closers.append(self.alerts.close)
            if self.tracing is not None:
                self._closers.append(self.tracing.close)
            self.metrics.watch(self)
            self.metrics.config_loaded(generation)
            self.metrics.start()
            self._closers.append(self.metrics.close)
        except BaseException:
            await self.close()
            raise

    def _stopped(self) -> None:
        if self.audit is not None:
            self.audit.event(AuditEvent.GATEWAY_STOPPED, worker=self._worker)

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
        old_config = self._config
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
        previous = (self.upstream, self.credentials)
        if staged.upstream is not None and staged.credentials is not None:
            self.upstream, self.credentials = staged.upstream, staged.credentials
        self._config = config
        try:
            built = build()
        except BaseException:
            self.upstream, self.credentials = previous
            self._config = old_config
            if staged.upstream is not None:
                self._retire(staged.upstream, 0)
            raise
        if staged.tls is not None and self.tls is not None:
            self.tls.use(staged.tls)
        self.storage.on_error = new.storage.on_error
        self.alerts.configure(new.alerts.webhook, config.base_dir)
        if self.connections is not None:
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

    async def close(self) -> None:
        """Last opened, first closed."""
        while self._closers:
            result = self._closers.pop()()
            if result is not None:
                await result
