"""The request body: its declared size before routing, and reading it within size and time bounds.

The gateway forwards exactly the bytes it checked. A body whose meaning depends on a header that
could be read two ways is refused here: aiohttp decodes by the *last* ``Content-Encoding`` while
a check might look at the first, and two ``Content-Type`` values (or a ``charset`` given twice)
let the vendor pick another than the gateway did.
"""

from __future__ import annotations

from aiohttp import web

from gateway.connections import check_expectation, read_body_within
from gateway.errors import bad_request, refuse
from gateway.exchange import Exchange

__all__ = ["CheckExpectation", "DeclaredBodySize", "ReadBody", "too_large"]


def too_large() -> Exception:
    return refuse("body_too_large", "the request body is larger than allowed")


class DeclaredBodySize:
    """413 from the declared length, before anything else is read."""

    name = "body_size"
    __slots__ = ("_max",)

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes

    async def run(self, ex: Exchange) -> None:
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
    if len(headers.getall("Content-Type", ())) > 1:
        raise bad_request("Content-Type must be given at most once")


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


class CheckExpectation:
    """417 for an ``Expect`` other than ``100-continue`` (marked by the listener's expect handler)."""

    name = "expect"
    __slots__ = ()

    async def run(self, ex: Exchange) -> None:
        check_expectation(ex.request)
