"""Listeners and lifecycle: the TLS listener, the optional plain-HTTP one, and the admin one.

``start`` is what ``smsgw serve``, ``smsgw demo`` and the tests use, so all three run the same
code; ``serve`` adds signals (SIGTERM/SIGINT drain, SIGHUP reloads the certificate). Every
listener admits, handshakes and times its connections through ``gateway.connections``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import time
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
        audit = self.services.audit
        try:
            self.tls.reload()
            log.info("certificate reloaded")
            if audit is not None:
                audit.event("certificate_reloaded", ok=True)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("certificate reload failed, keeping the old one: %s", type(exc).__name__)
            if audit is not None:
                audit.event("certificate_reloaded", ok=False, error=type(exc).__name__)

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
    reuse_port: bool = False,
) -> web.AppRunner:
    """A runner whose connections are capped and timed by ``policy`` (gateway.connections)."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout, logger=protocol_log
    )
    await runner.setup()
    site = GatedSite(
        runner,
        host,
        port,
        policy=policy,
        ssl_context=ssl_context,
        reuse_port=reuse_port,
        access_log=None,
        logger=protocol_log,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def start(config: Config, worker: int | None = None) -> Running:
    """``worker``: this process's index (1..N) under ``server.workers > 1``, else None."""
    s = config.settings
    reuse = s.server.workers > 1  # the workers share each port (SO_REUSEPORT)
    open_files = raise_open_file_limit()
    if open_files < s.server.max_connections + 256:
        log.warning(
            "the open-file limit (%d) is too low for server.max_connections = %d: "
            "connections will fail with 'Too many open files' before the cap",
            open_files,
            s.server.max_connections,
        )
    services = Services(config, worker)
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
            reuse,
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
                reuse,
            )
            runners.append(plain)
            http_port = _bound_port(plain)
        running = Running(config, gateway, services, runners, public_port, 0, http_port, public_limits)
        admin = await _listen(
            build_admin_app(headers, lambda: services.ready and not running.draining, services.storage),
            s.admin.listen,
            None,
            shutdown,
            admin_policy,
            reuse,
        )
        runners.append(admin)
        running.admin_port = _bound_port(admin)
        return running
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        await services.close()
        raise


async def serve(config: Config, worker: int | None = None, ready_fd: int | None = None) -> None:
    """Run until SIGTERM or SIGINT; in-flight requests get ``shutdown_timeout_s`` to finish.

    ``ready_fd``: a worker's pipe to its supervisor, written once the listeners are up.
    """
    running = await start(config, worker)
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, running.reload_certificate)
    log.info(
        "smsgw %slistening on %s (admin %s)",
        f"worker {worker} " if worker is not None else "",
        config.settings.server.listen,
        config.settings.admin.listen,
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await running.stop()


# --------------------------------------------------------------------------- workers


def run_workers(config: Config) -> int:
    """``server.workers = N``: N forked processes serve the same ports (SO_REUSEPORT).

    This process only supervises. SIGTERM/SIGINT are passed on (each worker drains for
    ``shutdown_timeout_s``; one still running 10 s later is killed), SIGHUP too (certificate
    reload). A worker that dies after it was serving is started again; one that dies before it
    ever listened (a port in use, say) stops them all, exit code 1, rather than looping. Each
    worker writes its own log files (``audit.w1.jsonl``, ...). Call it before any event loop
    exists in this process.
    """
    workers: dict[int, _Worker] = {}  # by pid
    state = {"stopping": False, "code": 0}

    def spawn(index: int) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_end)
            code = 0
            try:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                asyncio.run(serve(config, index, write_end))
            except OSError as exc:
                log.error("worker %d cannot listen: %s", index, exc.strerror)
                code = 1
            except BaseException as exc:
                log.error("worker %d failed: %s", index, type(exc).__name__)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(write_end)
        os.set_blocking(read_end, False)
        workers[pid] = _Worker(index, read_end)

    def forward(sig: int) -> None:
        for pid in list(workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(_sig: int, _frame: object) -> None:
        state["stopping"] = True
        forward(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda _sig, _frame: forward(signal.SIGHUP))
    for index in range(1, config.settings.server.workers + 1):
        spawn(index)
    deadline: float | None = None
    while workers:
        if state["stopping"] and deadline is None:
            deadline = time.monotonic() + config.settings.server.shutdown_timeout_s + 10
        if deadline is not None and time.monotonic() > deadline:
            forward(signal.SIGKILL)
            deadline = float("inf")
        for worker in workers.values():
            worker.poll_ready()
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.1)
            continue
        worker = workers.pop(pid)
        worker.poll_ready()
        worker.close()
        if state["stopping"]:
            continue
        code = os.waitstatus_to_exitcode(status)
        if not worker.ready:
            log.error("worker %d exited before it listened (%d); stopping", worker.index, code)
            state["stopping"], state["code"] = True, 1
            forward(signal.SIGTERM)
            continue
        log.warning("worker %d exited (%d); starting it again", worker.index, code)
        spawn(worker.index)
    for worker in workers.values():
        worker.close()
    return int(state["code"])


class _Worker:
    """A worker process as its supervisor sees it: its index and whether it has listened yet."""

    __slots__ = ("fd", "index", "ready")

    def __init__(self, index: int, fd: int) -> None:
        self.index = index
        self.fd: int | None = fd
        self.ready = False

    def poll_ready(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, 1)
        except BlockingIOError:
            return
        if data:
            self.ready = True
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
