"""Listeners and lifecycle: the TLS listener, the optional plain-HTTP one, and the admin one.

``start`` is what ``smsgw serve``, ``smsgw demo`` and the tests use, so all three run the same
code; ``serve`` adds signals (SIGTERM/SIGINT drain, SIGHUP reloads the config, the policies and
the certificate) and the pid file ``smsgw reload`` reads. Every listener admits, handshakes and
times its connections through ``gateway.transport.connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from gateway.audit.log import config_sha256, record_start
from gateway.config import Config, ConfigError, Problem, parse_listen
from gateway.config.weakening import weakenings
from gateway.core.events import AuditEvent
from gateway.server.admin import build_admin_app
from gateway.server.app import Gateway, build_public_app
from gateway.server.config import load_config
from gateway.server.policy import build_policy
from gateway.server.reload import restart_problems
from gateway.server.services import Services, open_services
from gateway.transport.connections import (
    LOG_FAILED,
    LOG_MALFORMED,
    ConnectionLimits,
    ConnectionPolicy,
    GatedSite,
    raise_open_file_limit,
)
from gateway.transport.tls import ReloadableServerTLS, security_headers

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
    #: Closes the services (``open_services``) once the listeners have drained.
    closing: AsyncExitStack
    draining: bool = False
    worker: int | None = None
    #: 1 at start, one more for each accepted reload; with its hash, on /readyz.
    generation: int = 1
    config_sha256: str = ""
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[bool]] = field(default_factory=set)

    @property
    def tls(self) -> ReloadableServerTLS | None:
        return self.services.tls

    def readiness(self) -> dict[str, object]:
        """What /readyz shows besides the status: the config in force."""
        info: dict[str, object] = {"config_generation": self.generation, "config_sha256": self.config_sha256}
        if self.worker is not None:
            info["worker"] = self.worker
        return info

    def reload_certificate(self) -> None:
        """New handshakes use the certificate files' current pair; a broken pair keeps the old one."""
        if self.tls is None:
            return
        try:
            self.tls.reload()
            log.info("certificate reloaded")
            self._audit(AuditEvent.CERTIFICATE_RELOADED, ok=True)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("certificate reload failed, keeping the old one: %s", type(exc).__name__)
            self._audit(AuditEvent.CERTIFICATE_RELOADED, ok=False, error=type(exc).__name__)

    def request_reload(self) -> None:
        """SIGHUP: reload in the background (reloads run one at a time, in order)."""
        task = asyncio.get_running_loop().create_task(self.reload(), name="smsgw-reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        """Re-read the config file, the policies and the certificate; swap the new policy in whole.

        Requests in flight finish under the policy they started with (the exchange holds it); new
        ones get the new one. A config with any problem, or one that changes a key only a restart
        can change (gateway/server/reload.py), is refused: each problem is logged with its file and key,
        a ``config_rejected`` audit event lists them, and the old config keeps serving.
        """
        async with self._reload_lock:
            if self.draining:
                return False
            try:
                new = await asyncio.to_thread(load_config, self.config.path)
            except ConfigError as exc:
                return self._refused(exc.problems)
            problems = restart_problems(self.config, new)
            if problems:
                return self._refused(problems)
            try:
                policy = await self.services.reconfigure(new, lambda: build_policy(new, self.services))
            except Exception as exc:  # a file that changed since it was checked, a bug: keep serving
                if isinstance(exc, OSError | ssl.SSLError | ValueError) and self.tls is not None:
                    self._audit(AuditEvent.CERTIFICATE_RELOADED, ok=False, error=type(exc).__name__)
                return self._refused(
                    [Problem(str(self.config.path), "", f"could not be applied ({type(exc).__name__})")]
                )
            self.gateway.policy = policy  # from the next request on
            settle_heap(again=True)
            weakened = weakenings(self.config, new)
            self.config = new
            self.generation += 1
            self.config_sha256 = config_sha256(new)
            record_start(
                self.services.audit,
                new,
                self.worker,
                trigger="reload",
                generation=self.generation,
                sha256=self.config_sha256,
            )
            if self.tls is not None:
                self._audit(AuditEvent.CERTIFICATE_RELOADED, ok=True)
            if weakened:
                self._audit(
                    AuditEvent.POLICY_WEAKENED,
                    trigger="reload",
                    generation=self.generation,
                    weakened=[w.as_record() for w in weakened],
                )
            for warning in new.warnings:
                log.warning("%s", warning.as_warning())
            for weakening in weakened:
                log.warning("reload weakens the policy: %s", weakening)
            self.services.metrics.reload(True)
            self.services.metrics.config_loaded(self.generation)
            log.info("config reloaded: generation %d, sha256 %s", self.generation, self.config_sha256[:16])
            return True

    def _refused(self, problems: tuple[Problem, ...] | list[Problem]) -> bool:
        for problem in problems:
            log.error("reload refused: %s", problem)
        log.error(
            "reload refused (%d problem(s)); config generation %d keeps serving",
            len(problems),
            self.generation,
        )
        self._audit(
            AuditEvent.CONFIG_REJECTED,
            trigger="reload",
            generation=self.generation,
            problems=[{"file": p.file, "key": p.key, "message": p.message} for p in problems[:50]],
        )
        self.services.metrics.reload(False)
        return False

    def _audit(self, event: str, **fields: object) -> None:
        self.services.audit.event(event, **fields)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (``server.shutdown_timeout_s``), close."""
        self.draining = True
        self.gateway.draining = True
        for task in list(self._tasks):
            task.cancel()
        # Every public listener stops accepting at once and drains; the admin listener goes last,
        # so /readyz answers 503 meanwhile.
        public, admin = self.runners[:-1], self.runners[-1:]
        await asyncio.gather(*(runner.cleanup() for runner in public))
        for runner in admin:
            await runner.cleanup()
        await self.closing.aclose()


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
    """A runner whose connections are capped and timed by ``policy`` (gateway.transport.connections)."""
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


async def start(config: Config, worker: int | None = None, generation: int = 1) -> Running:
    """``worker``: this process's index (1..N) under ``server.workers > 1``, else None;
    ``generation``: the config generation (a restarted worker continues its supervisor's)."""
    _check_open_file_limit(config)
    sha256 = config_sha256(config)
    closing = AsyncExitStack()
    try:
        services = await closing.enter_async_context(open_services(config, worker, generation, sha256))
        return await _listen_all(
            Running(
                config,
                Gateway(build_policy(config, services), services),
                services,
                [],
                0,
                0,
                None,
                services.connections,
                closing,
                worker=worker,
                generation=generation,
                config_sha256=sha256,
            )
        )
    except BaseException:
        await closing.aclose()
        raise


def _check_open_file_limit(config: Config) -> None:
    server = config.settings.server
    open_files = raise_open_file_limit()
    if open_files < server.max_connections + 256:
        log.warning(
            "the open-file limit (%d) is too low for server.max_connections = %d: "
            "connections will fail with 'Too many open files' before the cap",
            open_files,
            server.max_connections,
        )


async def _listen_all(running: Running) -> Running:
    """The public listener, the plain-HTTP one if configured, then the admin listener; on a
    failure, those already listening are closed again."""
    config, services, gateway, runners = running.config, running.services, running.gateway, running.runners
    s = config.settings.server
    headers = security_headers(config.settings.hsts)
    # The public listeners share one count; the admin listener has its own, so a flood of public
    # connections cannot starve health checks.
    public_policy = ConnectionPolicy.from_config(s, services.connections, headers)
    admin_policy = ConnectionPolicy.from_config(
        s, ConnectionLimits(s.max_connections, s.max_connections_per_ip), headers
    )
    listen = functools.partial(_listen, shutdown_timeout=s.shutdown_timeout_s, reuse_port=s.workers > 1)
    try:
        public = await listen(
            build_public_app(gateway, s.max_body_bytes),
            s.listen,
            services.tls.context if services.tls else None,
            policy=public_policy,
        )
        runners.append(public)
        running.public_port = _bound_port(public)
        services.switched.https_port = running.public_port  # port 0: redirects name the bound one
        if s.http.listen:
            plain = await listen(
                build_public_app(gateway, s.max_body_bytes), s.http.listen, None, policy=public_policy
            )
            runners.append(plain)
            running.http_port = _bound_port(plain)
        admin = await listen(
            build_admin_app(
                headers,
                lambda: services.ready and not running.draining,
                services.storage,
                running.readiness,
                services.metrics,
            ),
            config.settings.admin.listen,
            None,
            policy=admin_policy,
        )
        runners.append(admin)
        running.admin_port = _bound_port(admin)
        return running
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        raise


async def serve(
    config: Config,
    worker: int | None = None,
    ready_fd: int | None = None,
    generation: int = 1,
) -> None:
    """Run until SIGTERM or SIGINT; in-flight requests get ``shutdown_timeout_s`` to finish.
    SIGHUP reloads (``Running.reload``).

    ``ready_fd``: a worker's pipe to its supervisor, written once the listeners are up. A single
    process writes ``server.pid_file``; under workers, the supervisor does.
    """
    running = await start(config, worker, generation)
    settle_heap()
    pid_file = pid_path(config) if worker is None else None
    if pid_file is not None:
        write_pid_file(pid_file)
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, running.request_reload)
    log.info(
        "smsgw %slistening on %s (admin %s)",
        f"worker {worker} " if worker is not None else "",
        config.settings.server.listen,
        config.settings.admin.listen,
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")  # a SIGHUP while draining is answered by doing nothing
        await running.stop()
        if pid_file is not None:
            remove_pid_file(pid_file)


#: Young-generation collections start after this many more tracked objects than were freed
#: (Python's default: 700). At 700 a collection came every dozen or so sends, each walking the
#: objects of every request in flight; at 10,000 the gateway goes seconds under load without one.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_heap(again: bool = False) -> None:
    """Move what start built (config, policy, phone metadata, the libraries) out of the cyclic
    collector's reach, once serving begins: those objects live as long as the process, yet every
    full collection walked all of them (a few times a minute under load, tens of ms each), which
    made every function, aiohttp's included, cost more here than in a bare proxy. Each accepted
    reload settles again: unfrozen first, so what an earlier settle froze and is garbage now (a
    replaced policy's cycles) is collected then; at most the policy before the current one waits.
    That full collection is one pause of tens of ms per reload, where there were several a minute.
    What a reload freezes includes the requests then in flight: one of them left as cyclic garbage
    (an exception's traceback) stays in memory until the next reload collects it, never in a log;
    bounded by the requests in flight at one reload.

    ``again`` (a reload): only where serving began by settling, so a gateway run inside another
    program (a test) leaves that program's collector as it was."""
    if again and not gc.get_freeze_count():
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


# --------------------------------------------------------------------------- the pid file


def pid_path(config: Config) -> Path | None:
    value = config.settings.server.pid_file
    return config.resolve_path(value) if value else None


def write_pid_file(path: Path) -> None:
    """This process's id, written whole (a new file renamed into place). A failure is a warning:
    the gateway serves on, and SIGHUP still reloads it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(f"{os.getpid()}\n")
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        log.warning(
            "cannot write the pid file %s (%s): smsgw reload will not find this process", path, exc.strerror
        )


def remove_pid_file(path: Path) -> None:
    """Only if it still names this process (a newer gateway may have taken it over)."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
