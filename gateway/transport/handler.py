"""Requests on an admitted connection: aiohttp's ``RequestHandler`` with a deadline for each
request head, caps on what a head and a body's framing may take on the wire, a fixed JSON answer to
requests too malformed for the application, and the body and ``Expect`` helpers of the body
stage. Why each bound exists is told in gateway/transport/connections.py, which admits the
connections these handlers serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, HttpProcessingError
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from gateway.core.errors import Reason, refuse
from gateway.core.events import Detail
from gateway.core.oplog import new_request_id

__all__ = [
    "BAD_EXPECT",
    "FRAMING_ALLOWANCE",
    "MAX_HEAD_BYTES",
    "FramingTooLarge",
    "GuardedRequestHandler",
    "HeadTooLarge",
    "MalformedBody",
    "check_expectation",
    "error_answer",
    "expect_handler",
    "read_body_within",
]

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
        if request.content.is_eof():  # the whole body came with the head: nothing left to wait for
            return await request.read()
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
    request_id = new_request_id()
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
        "_admitted",
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
        #: Called once when the connection is gone: gives its admission slot back.
        self._admitted: Callable[[], None] | None = None

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

    def admitted(self, release: Callable[[], None]) -> None:
        """``release`` is called once, when this connection is gone."""
        self._admitted = release

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_clock()
        self._last_payload = None
        release, self._admitted = self._admitted, None
        if release is not None:
            release()
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
