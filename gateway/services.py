"""Long-lived services the request path uses: built once, started and closed in one list.

A :class:`~gateway.policy.Policy` is immutable and cheap to rebuild from a new config; the
services it points at (the vendor connection pool, the log files, storage, key caches) live
across policies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.audit import AuditLog, Retention, open_audit_log, record_start
from gateway.config import Config
from gateway.config.files import tighten_log_modes
from gateway.credentials import VendorCredentials
from gateway.identity.jwks import JwksService
from gateway.jsonlog import JsonLinesSink, worker_log_path
from gateway.pipeline import StageTimer
from gateway.proxy import Upstream
from gateway.storage import StorageService, open_storage
from gateway.transport import ReloadableServerTLS, upstream_context
from gateway.webhooks.forward import CallbackForwarder

__all__ = ["Services"]


class Services:
    def __init__(self, config: Config, worker: int | None = None) -> None:
        s = config.settings
        self.credentials = VendorCredentials.from_config(s.upstream.credentials)
        self.upstream = Upstream(
            s.upstream.base_url,
            self.credentials,
            upstream_context(
                config.resolve_path(s.upstream.ca_file) if s.upstream.ca_file else None, s.upstream.pin_sha256
            ),
            s.upstream.connect_timeout_s,
            s.upstream.timeout_s,
        )
        self.tls: ReloadableServerTLS | None = None
        if s.server.tls.mode == "terminate":
            tls = s.server.tls
            self.tls = ReloadableServerTLS(
                tls,
                config.resolve_path(tls.cert_file),
                config.resolve_path(tls.key_file),
                config.resolve_path(tls.client_ca_file) if tls.client_ca_file else None,
            )
        hash_key = s.logging.hash_key.get_secret_value().encode("utf-8") if s.logging.hash_key else None
        self.storage: StorageService = open_storage(s.storage, hash_key)
        #: JWKS key sets of the JWT issuers, fetched at start and refreshed (identity/jwks.py).
        self.jwks = JwksService(config)
        self.timer = StageTimer()
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

    @property
    def host_names(self) -> frozenset[str]:
        return self.tls.names if self.tls is not None else frozenset()

    async def start(self) -> None:
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
            record_start(self.audit, self._config, self._worker)
            self._closers.append(self._stopped)
            self.retention = Retention(self.audit, s.logging.retention_days)
            self.retention.start()
            self._closers.append(self.retention.close)
            self._closers.append(self.storage.close)
            self.storage.events = self.audit.event
            await self.storage.check()  # down at start: warned, audited, and probed until it answers
            await self.upstream.start()
            self._closers.append(self.upstream.close)
            self._closers.append(self.jwks.close)
            await self.jwks.start()
            await self.callbacks.start()
            self._closers.append(self.callbacks.close)
        except BaseException:
            await self.close()
            raise

    def _stopped(self) -> None:
        if self.audit is not None:
            self.audit.event("gateway_stopped", worker=self._worker)

    @property
    def ready(self) -> bool:
        return self.upstream.ready

    async def close(self) -> None:
        """Last opened, first closed."""
        while self._closers:
            result = self._closers.pop()()
            if result is not None:
                await result
