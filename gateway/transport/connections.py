"""Client connections: admission caps, the TLS handshake, deadlines for slow and idle clients, and
the answer to requests too malformed for the application.

aiohttp's ``TCPSite`` cannot do this: it passes no ``ssl_handshake_timeout`` (asyncio waits 60 s
for a ClientHello), it has no connection caps, and with ``create_server(ssl=...)`` a protocol sees a
connection only after its handshake and never hears of one whose handshake failed, so a count kept
there is wrong under exactly the load it is meant to stop. Here the listening socket is plain TCP:

1. :class:`_Gate` sees each accepted connection first and counts it by TCP peer address
   (IPv4-mapped IPv6 folded to IPv4); over ``max_connections`` or ``max_connections_per_ip`` it is
   closed at once, before any TLS work.
2. With TLS it runs ``loop.start_tls`` with ``handshake_timeout_s`` and stays the protocol above the
   TLS layer, buffering whatever application data arrives before the handshake coroutine resumes.
3. It then hands the connection to a :class:`GuardedRequestHandler` (aiohttp's ``RequestHandler``
   with a deadline for each request head and a fixed JSON answer to malformed requests) and
   forwards every event to it. The count is released exactly once, when the socket is gone: from
   ``connection_lost`` or from a failed handshake, whichever comes first.

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
import ssl
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import netaddr
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, HttpProcessingError
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from gateway.config.schema import ServerConfig
from gateway.core.addresses import ClientAddressResolver, parse_ip
from gateway.core.errors import Reason, refuse
from gateway.core.events import Detail

log = logging.getLogger("smsgw")

#: Set by :func:`expect_handler` on a request whose ``Expect`` is anything but ``100-continue``.
BAD_EXPECT: web.RequestKey[bool] = web.RequestKey("smsgw.bad_expect", bool)

MALFORMED = "the request is malformed"
#: The protocol handler's own log lines: fixed texts whose one argument is an exception type name.
LOG_MALFORMED = "refused a malformed request (%s)"
LOG_FAILED = "request failed outside the gateway (%s)"

#: The most a request head (request line and header lines together) may take on the wire.
MAX_HEAD_BYTES = 64 * 1024
#: A body may take ``2 * max_body_bytes + FRAMING_ALLOWANCE`` bytes on the wire, framing included.
FRAMING_ALLOWANCE = 64 * 1024


class HeadTooLarge(BadHttpMessage):
    """A request head over :data:`MAX_HEAD_BYTES` (its name is all that is logged)."""

    def __init__(self) -> None:
        super().__init__("the request head is too large")


class FramingTooLarge(RequestPayloadError):
    """A body whose chunk framing (sizes, extensions, trailers) outgrew its allowance."""


class MalformedBody(RequestPayloadError):
    """The parser found a body's framing malformed after its head was handed on."""


#: Answers for aiohttp-made refusals that never reached the gateway's middleware.
_AIOHTTP_REFUSALS = {
    400: (Reason.BAD_REQUEST, MALFORMED),
    413: (Reason.BODY_TOO_LARGE, "the request body is larger than allowed"),
    417: (Reason.EXPECTATION_FAILED, "only Expect: 100-continue is supported"),
}


# --- request bodies and Expect ----------------------------------------------------------------


async def read_body_within(request: web.Request, timeout_s: float) -> bytes:
    """The whole body, or 408 ``body_timeout`` if it has not arrived within ``timeout_s`` of this call.

    After a timeout the connection takes no further request and is closed once the answer is
    written: the rest of a slow body is not waited for. A body with malformed framing, or one the
    client stopped sending by closing the connection, is 400 ``bad_request`` (``detail``
    ``malformed_body`` / ``incomplete_body``), never an internal error: both are the client's doing.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        _no_further_request(request)
        raise refuse(
            Reason.BODY_TIMEOUT, "the request body did not arrive in time", {"Connection": "close"}
        ) from None
    except (RequestPayloadError, HttpProcessingError):
        _no_further_request(request)
        raise refuse(
            Reason.BAD_REQUEST, MALFORMED, {"Connection": "close"}, detail=Detail.MALFORMED_BODY
        ) from None
    except OSError:  # the connection was lost (reset, closed, a broken TLS record) mid-body
        _no_further_request(request)
        raise refuse(
            Reason.BAD_REQUEST,
            "the request body ended early",
            {"Connection": "close"},
            detail=Detail.INCOMPLETE_BODY,
        ) from None


def _no_further_request(request: web.Request) -> None:
    request.protocol.close()  # no further request on this connection
    request.content.feed_eof()  # and no lingering read of the rest of this body


async def expect_handler(request: web.Request) -> None:
    """aiohttp's default for ``Expect: 100-continue``; any other expectation only marks the request.

    aiohttp's default answers an unknown expectation itself, before any middleware, with a 417 that
    echoes the header and carries no security headers. Marked requests are refused by the pipeline
    (:func:`check_expectation`), so they are answered, audited and logged like every other refusal.
    """
    if request.version != HttpVersion11:
        return  # RFC 9110: a server ignores Expect from an HTTP/1.0 client
    values = request.headers.getall(hdrs.EXPECT, ())
    if len(values) == 1 and values[0].strip().lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not the start of the real one
    else:
        request[BAD_EXPECT] = True


def check_expectation(request: web.Request) -> None:
    """417 ``expectation_failed`` for a request :func:`expect_handler` marked."""
    if request.get(BAD_EXPECT):
        code, message = _AIOHTTP_REFUSALS[417]
        raise refuse(code, message, {"Connection": "close"})


def error_answer(status: int, code: str, message: str, headers: Mapping[str, str]) -> web.Response:
    """The gateway's JSON error with the security headers, for answers made outside the app."""
    request_id = uuid.uuid4().hex
    return web.json_response(
        {"error": {"code": code, "message": message, "request_id": request_id}},
        status=status,
        headers={**headers, "X-Request-ID": request_id},
    )


# --- the HTTP protocol ------------------------------------------------------------------------


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, plus a deadline for each request head and safe error answers.

    The head clock starts with the first byte of a request (a connection with no request under way
    is aiohttp's keep-alive business) and stops when aiohttp has parsed the head. A head still
    incomplete when it runs out closes the connection (after the answer under way, if any).
    """

    __slots__ = (
        "_body_limit",
        "_error_headers",
        "_head_timeout",
        "_head_timer",
        "_in_head",
        "_last_payload",
        "_wire",
    )

    def __init__(
        self,
        manager: Server,
        *,
        loop: asyncio.AbstractEventLoop,
        header_timeout_s: float,
        error_headers: Mapping[str, str],
        max_body_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._head_timeout = header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._last_payload: Any = None  # the newest request's body stream; None before the first
        self._error_headers = dict(error_headers)
        # Wire bytes a body may take, framing included (None: no cap beyond the parser's).
        self._body_limit = None if max_body_bytes is None else 2 * max_body_bytes + FRAMING_ALLOWANCE
        self._wire = 0  # bytes received in the current head, or in the current body
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:
            return  # aiohttp ignores these bytes too
        # These bytes start a head when the newest request's body is complete (or there is none yet).
        payload = self._last_payload
        head_expected = payload is None or payload.is_eof()
        if head_expected != self._in_head:
            self._in_head, self._wire = head_expected, 0
        self._wire += len(data)
        parsed = self._request_count
        super().data_received(data)
        fresh = self._request_count - parsed
        if fresh:
            self._stop_head_clock()
            self._wire = 0
            self._check_fresh(fresh, payload)
        elif head_expected and self._wire > MAX_HEAD_BYTES:
            self._refuse_head()
        elif not head_expected and self._body_limit is not None and self._wire > self._body_limit:
            assert payload is not None
            payload.set_exception(FramingTooLarge())
            self.close()  # the reader answers 400 (Connection: close); no further bytes are parsed
        elif data and head_expected and self._head_timer is None and not (self._close or self._force_close):
            self._start_head_clock()

    def _check_fresh(self, fresh: int, earlier: Any) -> None:
        """The requests parsed by the last read: fail the body before them if the parser refused
        its framing, and turn any head over :data:`MAX_HEAD_BYTES` into a 400."""
        messages = self._messages
        first = len(messages) - fresh
        for index in range(max(first, 0), len(messages)):
            message, _ = messages[index]
            if isinstance(message, _ErrInfo):
                if index == first and earlier is not None and not earlier.is_eof():
                    # llhttp found the framing of the body under way malformed; the request that
                    # owns it would otherwise wait for the body deadline.
                    earlier.set_exception(MalformedBody())
            elif _head_size(message) > MAX_HEAD_BYTES:
                # Still queued (the handler runs later): answered as malformed, then closed.
                exc = HeadTooLarge()
                messages[index] = (_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD)
                self._close = True
        self._last_payload = messages[-1][1] if messages else None

    def _refuse_head(self) -> None:
        """Answer an over-large head as aiohttp answers a malformed one: a queued 400, then close."""
        self._stop_head_clock()
        exc = HeadTooLarge()
        self._request_count += 1
        self._messages.append((_ErrInfo(status=400, exc=exc, message=exc.message), EMPTY_PAYLOAD))
        self._last_payload = EMPTY_PAYLOAD
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._close = True  # parse nothing more; the 400 closes the connection

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_clock()
        self._last_payload = None
        super().connection_lost(exc)

    def _start_head_clock(self) -> None:
        deadline = self._loop.time() + self._head_timeout
        self._head_timer = self._loop.call_at(deadline, self._head_timed_out)
        # aiohttp's keep-alive timer must not cut a request whose head has started; this clock rules now.
        self._next_keepalive_close_time = max(self._next_keepalive_close_time, deadline)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None:
            return
        if self._waiter is not None and not self._waiter.done():
            self.force_close()  # nothing under way: close now
        else:
            self.close()  # a pipelined head stalled behind a request: close after its answer

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A fixed JSON answer with the security headers; aiohttp's own echoes request bytes."""
        # The exception's text quotes the request (credentials included): log its type only.
        if status == 400:
            # Not HTTP at all as a connection's first bytes (scanners, TLS on a plain port): routine.
            routine = self._request_count == 1 and isinstance(exc, BadHttpMethod)
            level = logging.DEBUG if routine else logging.WARNING
            self.logger.log(level, LOG_MALFORMED, type(exc).__name__)
        else:
            self.logger.error(LOG_FAILED, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already started")
        code, text = _AIOHTTP_REFUSALS.get(status, (Reason.INTERNAL_ERROR, "the gateway failed"))
        response = error_answer(status, code, text, self._error_headers)
        response.force_close()
        return response

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        # An aiohttp error raised before the gateway's middleware ran (its Expect handler's 417):
        # answered like handle_error, never with aiohttp's text, which can echo request headers.
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            code, text = _AIOHTTP_REFUSALS.get(
                resp.status,
                (Reason.BAD_REQUEST, MALFORMED)
                if resp.status < 500
                else (Reason.INTERNAL_ERROR, "the gateway failed"),
            )
            resp = error_answer(resp.status, code, text, self._error_headers)
            resp.force_close()
        return await super().finish_response(request, resp, start_time)


def _head_size(message: Any) -> int:
    """About what a parsed head took on the wire: its target and header lines."""
    return len(message.path) + sum(len(name) + len(value) + 4 for name, value in message.raw_headers)


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
    """One listening socket's shared state: the policy, the TLS context and open handshakes."""

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

    def protocol(self) -> _Gate:
        return _Gate(self)

    async def close(self) -> None:
        """Abandon handshakes under way (their connections are closed and released)."""
        tasks = list(self.handshakes)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Gate(asyncio.Protocol):
    """Admits a raw TCP connection, runs its TLS handshake, and carries its events to the handler."""

    __slots__ = ("_buffer", "_eof", "_handler", "_key", "_listener", "_lost", "_raw")

    def __init__(self, listener: _Listener) -> None:
        self._listener = listener
        self._raw: asyncio.Transport | None = None
        self._key: str | None = None  # set while this connection is counted
        self._handler: GuardedRequestHandler | None = None
        self._buffer: list[bytes] = []
        self._eof = False
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw: asyncio.Transport = transport  # type: ignore[assignment]
        self._raw = raw
        self._key = self._listener.policy.limits.admit(raw.get_extra_info("peername"))
        if self._key is None:
            raw.abort()  # before any TLS work; connection_lost follows with nothing to release
            return
        if self._listener.ssl_context is None:
            self._attach(raw)
            return
        raw.pause_reading()  # the ClientHello is for the TLS layer, not for this protocol
        task = self._listener.loop.create_task(self._handshake(raw, self._listener.ssl_context))
        self._listener.handshakes.add(task)
        task.add_done_callback(self._listener.handshakes.discard)

    async def _handshake(self, raw: asyncio.Transport, ctx: ssl.SSLContext) -> None:
        if self._lost or raw.is_closing():
            self._release()
            return
        timeout = self._listener.policy.handshake_timeout_s
        try:
            tls = await self._listener.loop.start_tls(
                raw,
                self,
                ctx,
                server_side=True,
                ssl_handshake_timeout=timeout,
                ssl_shutdown_timeout=timeout,
            )
        except BaseException as exc:
            # A timeout, a TLS alert, a reset or a shutdown: the socket is closed and the slot freed.
            raw.abort()
            self._release()
            if not isinstance(exc, Exception):
                raise
            return
        if tls is None or self._lost:
            raw.abort()
            self._release()
            return
        self._attach(tls)

    def _attach(self, transport: asyncio.Transport) -> None:
        handler = self._listener.make_handler()
        self._handler = handler
        handler.connection_made(transport)
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            handler.data_received(data)
        if self._eof:
            handler.eof_received()

    def _release(self) -> None:
        if self._key is not None:
            self._listener.policy.limits.release(self._key)
            self._key = None

    # -- events, forwarded once the handler is attached -------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.data_received(data)
        else:
            self._buffer.append(data)  # decrypted before the handshake coroutine resumed

    def eof_received(self) -> bool | None:
        if self._handler is not None:
            return self._handler.eof_received()
        self._eof = True
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._release()
        handler, self._handler = self._handler, None
        self._buffer.clear()
        if handler is not None:
            handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()


class GatedSite(web.BaseSite):
    """A TCP listener for an aiohttp runner whose connections pass :class:`_Gate` first."""

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
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._listener.protocol,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )

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
