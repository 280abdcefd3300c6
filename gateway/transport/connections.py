"""Client connections: admission caps, the TLS handshake, deadlines for slow and idle clients, and
the answer to requests too malformed for the application.

aiohttp's ``TCPSite`` cannot do this: it passes no ``ssl_handshake_timeout`` (asyncio waits 60 s
for a ClientHello), it has no connection caps, and with ``create_server(ssl=...)`` a protocol sees a
connection only after its handshake and never hears of one whose handshake failed, so a count kept
there is wrong under exactly the load it is meant to stop. Here the gateway accepts itself:

1. :class:`_Listener` accepts on plain TCP sockets (``loop.sock_accept``) and counts each
   connection by its TCP peer address (IPv4-mapped IPv6 folded to IPv4); over ``max_connections``
   or ``max_connections_per_ip`` it is closed at once, before any TLS work.
2. An admitted socket goes to ``loop.connect_accepted_socket`` with the TLS context and
   ``handshake_timeout_s``, with a :class:`GuardedRequestHandler` (gateway/transport/handler.py:
   aiohttp's ``RequestHandler`` with a deadline for each request head and a fixed JSON answer to
   malformed requests) as its protocol, above the TLS layer, with no layer in between.
3. The count is released exactly once, when the socket is gone: from the handler's
   ``connection_lost`` or from a failed handshake, whichever comes first.

Both steps are public loop APIs that asyncio's loop and uvloop implement alike. (Pausing a plain
protocol and calling ``loop.start_tls`` from it, as this module once did, does not work on
uvloop: it delivers the ClientHello to the plain protocol before the handshake begins.)

Idle connections are closed by aiohttp after ``keepalive_timeout_s``; request bodies get
``body_timeout_s`` through :func:`read_body_within`, which the body-reading stage calls.

The handler also bounds what aiohttp's parser (llhttp) does not: a request head may take at most
:data:`MAX_HEAD_BYTES` in all (llhttp caps each line and the number of lines, which still allows
about 1 MiB per head), and a body at most ``2 * max_body_bytes +`` :data:`FRAMING_ALLOWANCE` on
the wire, chunk sizes, extensions and trailers included (llhttp skips chunk extensions of any
length without counting them, so a client could otherwise stream into one request until the body
deadline). A body whose framing turns out malformed after its head was handed on fails its reader
at once (400), instead of leaving it waiting for the body deadline.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import netaddr
from aiohttp import web
from aiohttp.web_server import Server

from gateway.config.schema import ServerConfig
from gateway.core.addresses import ClientAddressResolver, parse_ip
from gateway.transport.handler import (
    BAD_EXPECT,
    LOG_FAILED,
    LOG_MALFORMED,
    MAX_HEAD_BYTES,
    GuardedRequestHandler,
    check_expectation,
    expect_handler,
    read_body_within,
)

log = logging.getLogger("smsgw")

__all__ = [
    "BAD_EXPECT",
    "LOG_FAILED",
    "LOG_MALFORMED",
    "MAX_HEAD_BYTES",
    "ConnectionLimits",
    "ConnectionPolicy",
    "GatedSite",
    "GuardedRequestHandler",
    "check_expectation",
    "connection_limits",
    "expect_handler",
    "raise_open_file_limit",
    "read_body_within",
]


# --- admission --------------------------------------------------------------------------------


class ConnectionLimits:
    """Open connections, all together and per TCP peer address, counted from accept to close.

    One instance is shared by the listeners it caps. Trusted proxies are held to the global cap
    only: behind a load balancer every client shares its address.
    """

    REPORT_EVERY_S = 60.0

    def __init__(self, max_total: int, max_per_ip: int, trusted_proxies: Iterable[str] = ()) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self._trusted = ClientAddressResolver(trusted_proxies)
        self.total = 0
        self.per_ip: dict[str, int] = {}
        self.refused = 0
        self._unreported = 0
        self._reported_at = float("-inf")

    def trust(self, trusted_proxies: Iterable[str]) -> None:
        """A reload changed ``server.trusted_proxies``: they are held to the global cap only."""
        self._trusted = ClientAddressResolver(trusted_proxies)

    def admit(self, peername: Any) -> str | None:
        """The peer's key, now counted, or None when the connection must be closed."""
        try:
            address = parse_ip(str(peername[0]))
        except (netaddr.AddrFormatError, ValueError, TypeError, IndexError):
            return self._refuse("the peer address is unknown")
        key = str(address)
        if self.total >= self.max_total:
            return self._refuse("server.max_connections")
        count = self.per_ip.get(key, 0)
        if count >= self.max_per_ip and not self._trusted.is_trusted(address):
            return self._refuse("server.max_connections_per_ip")
        self.total += 1
        self.per_ip[key] = count + 1
        return key

    def release(self, key: str) -> None:
        self.total -= 1
        left = self.per_ip[key] - 1
        if left:
            self.per_ip[key] = left
        else:
            del self.per_ip[key]

    def _refuse(self, why: str) -> None:
        self.refused += 1
        self._unreported += 1
        now = time.monotonic()
        if now - self._reported_at >= self.REPORT_EVERY_S:
            # No address: operational messages carry no request data. One line a minute at most.
            log.warning("closed %d new connection(s) at accept: %s reached", self._unreported, why)
            self._unreported = 0
            self._reported_at = now
        return None


@dataclass(frozen=True)
class ConnectionPolicy:
    """What a listener enforces on each connection; built once from ``[server]``."""

    limits: ConnectionLimits
    handshake_timeout_s: float
    header_timeout_s: float
    keepalive_timeout_s: float
    error_headers: Mapping[str, str] = field(default_factory=dict)
    #: ``server.max_body_bytes``: bounds a body's framing on the wire (None: no such bound).
    max_body_bytes: int | None = None

    @classmethod
    def from_config(
        cls, server: ServerConfig, limits: ConnectionLimits, error_headers: Mapping[str, str]
    ) -> ConnectionPolicy:
        return cls(
            limits,
            server.handshake_timeout_s,
            server.header_timeout_s,
            server.keepalive_timeout_s,
            dict(error_headers),
            server.max_body_bytes,
        )


def connection_limits(server: ServerConfig) -> ConnectionLimits:
    return ConnectionLimits(server.max_connections, server.max_connections_per_ip, server.trusted_proxies)


class _Listener:
    """Listening sockets and their shared state: the policy, the TLS context, the accept loops
    and the handshakes under way."""

    def __init__(
        self,
        server: Server,
        policy: ConnectionPolicy,
        ssl_context: ssl.SSLContext | None,
        handler_kwargs: Mapping[str, Any],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.server = server
        self.policy = policy
        self.ssl_context = ssl_context
        self.handler_kwargs = dict(handler_kwargs)
        self.handshakes: set[asyncio.Task[None]] = set()
        self.sockets: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []

    def make_handler(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(
            self.server,
            loop=self.loop,
            header_timeout_s=self.policy.header_timeout_s,
            error_headers=self.policy.error_headers,
            max_body_bytes=self.policy.max_body_bytes,
            keepalive_timeout=self.policy.keepalive_timeout_s,
            **self.handler_kwargs,
        )

    def listen(self, host: str, port: int, backlog: int, reuse_port: bool) -> None:
        """Bind every address ``host`` names (as ``loop.create_server`` does) and accept on each."""
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            self.close_sockets()
            raise
        self._accepting = [self.loop.create_task(self._accept(sock)) for sock in self.sockets]

    async def _accept(self, sock: socket.socket) -> None:
        """Each accepted connection is counted (or closed) before any TLS work, by its TCP peer."""
        limits = self.policy.limits
        while True:
            try:
                conn, peer = await self.loop.sock_accept(sock)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:  # out of descriptors or buffers: wait, as asyncio's server does
                log.error("cannot accept connections (%s); trying again in 1 s", type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            key = limits.admit(peer)
            if key is None:
                conn.close()
                continue
            task = self.loop.create_task(self._serve(conn, key))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    async def _serve(self, conn: socket.socket, key: str) -> None:
        """The TLS handshake (within ``handshake_timeout_s``), then the request handler."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.policy.limits.release(key)

        handler = self.make_handler()
        handler.admitted(release)
        timeout = self.policy.handshake_timeout_s
        tls: dict[str, float] = {}
        if self.ssl_context is not None:
            tls = {"ssl_handshake_timeout": timeout, "ssl_shutdown_timeout": timeout}
        try:
            await self.loop.connect_accepted_socket(lambda: handler, conn, ssl=self.ssl_context, **tls)
        except BaseException as exc:
            # A timeout, a TLS alert, a reset or a shutdown: the socket is closed and the slot freed.
            conn.close()
            release()
            if not isinstance(exc, Exception):
                raise

    def stop_accepting(self) -> None:
        for task in self._accepting:
            task.cancel()
        self._accepting = []
        self.close_sockets()

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    async def close(self) -> None:
        """Stop accepting and abandon handshakes under way (their connections are closed and
        released)."""
        self.stop_accepting()
        tasks = list(self.handshakes)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Server:
    """What ``BaseSite.stop`` closes: the listener's sockets and accept loops."""

    __slots__ = ("_listener",)

    def __init__(self, listener: _Listener) -> None:
        self._listener = listener

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._listener.sockets)

    def close(self) -> None:
        self._listener.stop_accepting()


class GatedSite(web.BaseSite):
    """A TCP listener for an aiohttp runner whose connections are admitted before their handshake."""

    __slots__ = ("_handler_kwargs", "_host", "_listener", "_policy", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        policy: ConnectionPolicy,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
        reuse_port: bool = False,
        **handler_kwargs: Any,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port  # server.workers > 1: every worker binds the same port
        self._policy = policy
        self._handler_kwargs = handler_kwargs
        self._listener: _Listener | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._listener = _Listener(server, self._policy, self._ssl_context, self._handler_kwargs)
        self._listener.listen(self._host, self._port, self._backlog, self._reuse_port)
        self._server = _Server(self._listener)  # type: ignore[assignment]

    async def stop(self) -> None:
        await super().stop()
        if self._listener is not None:
            await self._listener.close()


# --- file descriptors -------------------------------------------------------------------------

_NOFILE_REPORTED = False


def raise_open_file_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (each connection is a descriptor)."""
    global _NOFILE_REPORTED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    raised_from = None
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            raised_from, soft = soft, target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, type(exc).__name__)
    if raised_from is not None:
        log.info("open-file limit raised from %d to %d", raised_from, soft)
    elif not _NOFILE_REPORTED:
        log.info("open-file limit is %d", soft)
    _NOFILE_REPORTED = True
    return soft
