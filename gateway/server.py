"""Listeners and lifecycle: the TLS listener, the optional plain-HTTP one, and the admin one.

``start`` is what ``smsgw serve``, ``smsgw demo`` and the tests use, so all three run the same
code; ``serve`` adds signals (SIGTERM/SIGINT drain, SIGHUP reloads the certificate). Every
listener admits, handshakes and times its connections through ``gateway.connections``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass

from aiohttp import web

from gateway.admin import build_admin_app
from gateway.app import Gateway, build_public_app
from gateway.config import Config, parse_listen
from gateway.connections import (
    LOG_FAILED,
    LOG_MALFORMED,
    ConnectionLimits,
    ConnectionPolicy,
    GatedSite,
    connection_limits,
    raise_open_file_limit,
)
from gateway.policy import build_policy
from gateway.services import Services
from gateway.transport import ReloadableServerTLS, security_headers

log = logging.getLogger("smsgw")


class _ProtocolErrorFilter(logging.Filter):
    """aiohttp logs a malformed request with the offending bytes, which can hold a phone number
    or a credential; keep only the fact and the exception type."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in (LOG_MALFORMED, LOG_FAILED) and not record.exc_info:
            return True  # the gateway's own handler: a fixed text and a type name
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = LOG_MALFORMED
        record.args = (type(exc).__name__ if exc is not None else "unknown",)
        record.exc_info = None
        record.exc_text = None
        return True


#: Given to aiohttp's protocol handlers instead of its ``aiohttp.server`` logger.
protocol_log = logging.getLogger("smsgw.protocol")
protocol_log.addFilter(_ProtocolErrorFilter())


@dataclass
class Running:
    config: Config
    gateway: Gateway
    services: Services
    runners: list[web.AppRunner]
    public_port: int
    admin_port: int
    http_port: int | None
    connections: ConnectionLimits
    draining: bool = False

    @property
    def tls(self) -> ReloadableServerTLS | None:
        return self.services.tls

    def reload_certificate(self) -> None:
        """SIGHUP: new handshakes use the new pair; a broken pair keeps the old one."""
        if self.tls is None:
            return
        try:
            self.tls.reload()
            log.info("certificate reloaded")
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("certificate reload failed, keeping the old one: %s", type(exc).__name__)

    async def stop(self) -> None:
        self.draining = True
        # Public listeners drain first; admin goes last so /readyz answers 503 meanwhile.
        for runner in self.runners:
            await runner.cleanup()
        await self.services.close()


def _bound_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])


async def _listen(
    app: web.Application,
    listen: str,
    ssl_context: ssl.SSLContext | None,
    shutdown_timeout: float,
    policy: ConnectionPolicy,
) -> web.AppRunner:
    """A runner whose connections are capped and timed by ``policy`` (gateway.connections)."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout, logger=protocol_log
    )
    await runner.setup()
    site = GatedSite(
        runner, host, port, policy=policy, ssl_context=ssl_context, access_log=None, logger=protocol_log
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def start(config: Config) -> Running:
    s = config.settings
    open_files = raise_open_file_limit()
    if open_files < s.server.max_connections + 256:
        log.warning(
            "the open-file limit (%d) is too low for server.max_connections = %d: "
            "connections will fail with 'Too many open files' before the cap",
            open_files,
            s.server.max_connections,
        )
    services = Services(config)
    await services.start()
    _, services.https_port = parse_listen(s.server.listen)
    shutdown = s.server.shutdown_timeout_s
    headers = security_headers(s.hsts)
    # The public listeners share one count; the admin listener has its own, so a flood of public
    # connections cannot starve health checks.
    public_limits = connection_limits(s.server)
    public_policy = ConnectionPolicy.from_config(s.server, public_limits, headers)
    admin_policy = ConnectionPolicy.from_config(
        s.server, ConnectionLimits(s.server.max_connections, s.server.max_connections_per_ip), headers
    )
    runners: list[web.AppRunner] = []
    try:
        gateway = Gateway(build_policy(config, services), services)
        tls_context = services.tls.context if services.tls else None
        public = await _listen(
            build_public_app(gateway, s.server.max_body_bytes),
            s.server.listen,
            tls_context,
            shutdown,
            public_policy,
        )
        runners.append(public)
        public_port = _bound_port(public)
        if public_port != services.https_port:  # port 0: redirects name the port actually bound
            services.https_port = public_port
            gateway.policy = build_policy(config, services)
        http_port = None
        if s.server.http.listen:
            plain = await _listen(
                build_public_app(gateway, s.server.max_body_bytes),
                s.server.http.listen,
                None,
                shutdown,
                public_policy,
            )
            runners.append(plain)
            http_port = _bound_port(plain)
        running = Running(config, gateway, services, runners, public_port, 0, http_port, public_limits)
        admin = await _listen(
            build_admin_app(headers, lambda: services.ready and not running.draining),
            s.admin.listen,
            None,
            shutdown,
            admin_policy,
        )
        runners.append(admin)
        running.admin_port = _bound_port(admin)
        return running
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        await services.close()
        raise


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT; in-flight requests get ``shutdown_timeout_s`` to finish."""
    running = await start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, running.reload_certificate)
    log.info("smsgw listening on %s (admin %s)", config.settings.server.listen, config.settings.admin.listen)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await running.stop()
