"""The request body: its declared size before routing, and reading it within size and time bounds.

The gateway forwards exactly the bytes it checked. A body whose meaning depends on a header that
could be read two ways is refused here: aiohttp decodes by the *last* ``Content-Encoding`` while
a check might look at the first, two ``Content-Type`` values (or a ``charset`` given twice, or an
RFC 2231 ``charset*``) let the vendor pick another than the gateway did, and a JSON document sent
as a form is read as JSON by a vendor that looks at the body rather than at its type.
"""

from __future__ import annotations

from aiohttp import web

from gateway.core.errors import Reason, bad_request, refuse
from gateway.core.exchange import Exchange, SyncStage
from gateway.transport.connections import check_expectation, read_body_within

__all__ = ["CheckExpectation", "DeclaredBodySize", "ReadBody", "RefuseNul", "too_large"]


def too_large() -> Exception:
    return refuse(Reason.BODY_TOO_LARGE, "the request body is larger than allowed")


class DeclaredBodySize(SyncStage):
    """413 from the declared length, before anything else is read."""

    name = "body_size"
    __slots__ = ("_max",)

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes

    def run_sync(self, ex: Exchange) -> None:
        length = ex.request.content_length
        if length is not None and length > self._max:
            raise too_large()


def check_body_headers(request: web.Request) -> None:
    """Refuse compressed bodies and any header about the body given more than once."""
    headers = request.headers
    encodings = headers.getall("Content-Encoding", ())
    if len(encodings) > 1 or any("," in value for value in encodings):
        raise bad_request("Content-Encoding must be given at most once")
    # aiohttp would decode a compressed body; the gateway forwards only what it checked, and a
    # compressed body could also hide its real size. Senders' SDKs do not compress.
    if encodings and encodings[0].strip().lower() not in ("", "identity"):
        raise bad_request("compressed request bodies are not accepted")
    types = headers.getall("Content-Type", ())
    if len(types) > 1:
        raise bad_request("Content-Type must be given at most once")
    # RFC 2231 (charset*=utf-8''latin1) is honoured by some parsers (Werkzeug, Python's email)
    # and ignored by others: the gateway would read UTF-8 while the vendor decodes another charset.
    if types and any(p.split("=", 1)[0].strip().lower().startswith("charset*") for p in types[0].split(";")):
        raise bad_request("the Content-Type charset must be given as a plain parameter")
    # llhttp frames "gzip, chunked" by its last coding and passes the rest on undecoded.
    codings = [t.strip().lower() for v in headers.getall("Transfer-Encoding", ()) for t in v.split(",")]
    if codings and codings != ["chunked"]:
        raise bad_request("only the chunked transfer coding is accepted")


class ReadBody:
    """Reads the whole body within ``server.max_body_bytes`` and ``server.body_timeout_s``."""

    name = "read_body"
    __slots__ = ("_timeout",)

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s

    async def run(self, ex: Exchange) -> None:
        if ex.body is not None:  # read earlier for an authenticator that needed it
            return
        request = ex.request
        check_body_headers(request)
        try:
            ex.body = await read_body_within(request, self._timeout)
        except web.HTTPRequestEntityTooLarge:
            raise too_large() from None


class RefuseNul(SyncStage):
    """400 when a recipient, sender or text holds a NUL character.

    The gateway checks and logs the whole string, while a vendor stack written in C ends it at the
    NUL, and a GSM-7 encoder may turn it into "@": what is sent would not be what was checked. A
    NUL reaches a message field as ``%00`` in a form or ``\\u0000`` in JSON; the shared readers
    refuse it anywhere in a body, and this stage is the backstop for fields an adapter reads from
    elsewhere (Messente's legacy API reads the query string too).
    """

    name = "message_nul"
    __slots__ = ()

    def run_sync(self, ex: Exchange) -> None:
        message = ex.message
        assert message is not None
        for value in (*message.recipients, *message.senders, *message.bodies):
            if "\x00" in value:
                raise bad_request("a message field holds a NUL character")


class CheckExpectation(SyncStage):
    """417 for an ``Expect`` other than ``100-continue`` (marked by the listener's expect handler)."""

    name = "expect"
    __slots__ = ()

    def run_sync(self, ex: Exchange) -> None:
        check_expectation(ex.request)
