"""Forwarding to the vendor: one pooled client session, verified TLS, no automatic retry.

A send that reached the vendor may have been delivered, so a failed exchange is reported to the
client (502/504) and never repeated here; ``Idempotency-Key`` is the safe way to retry.
"""

from __future__ import annotations

import functools
import ssl
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote_plus

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.audit.attempt import Attempt
from gateway.audit.log import AuditLog
from gateway.core.errors import GatewayError, Reason, bad_request, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.core.headers import is_client_network_header, is_credential_header
from gateway.core.pipeline import SyncStage
from gateway.messages.base import client_query_credentials
from gateway.messages.forms import field_base
from gateway.tracing.otel import traceparent
from gateway.transport.credentials import VendorCredentials

if TYPE_CHECKING:
    from gateway.core.routing import PathTemplate
    from gateway.messages.base import ProviderAdapter

#: RFC 9110 hop-by-hop headers, plus those a proxy must not pass on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: Client-side headers that must never reach the vendor besides credentials and network details
#: (gateway/core/headers.py): framing the gateway redoes, and the client's idempotency key.
CLIENT_ONLY = frozenset({"host", "content-length", "expect", "idempotency-key"})


@functools.lru_cache(maxsize=1024)
def _client_private(lower_name: str) -> bool:
    """A credential, or the client's network details / routing overrides (cached by name)."""
    return is_credential_header(lower_name) or is_client_network_header(lower_name)


#: Response headers the gateway sets itself, that describe the vendor's connection, or that
#: would act on the client in the vendor's name (cookies, auth challenges, CORS, the banner).
RESPONSE_DROP = HOP_BY_HOP | {
    "content-length",
    "strict-transport-security",
    "set-cookie",
    "set-cookie2",
    "www-authenticate",
    "proxy-authenticate",
    "server",
    "x-powered-by",
}

#: Headers the message's meaning depends on: a ``Connection`` token naming one would make a
#: proxy drop it (``Connection: Content-Type`` strips the body's type on the way), so the vendor
#: would read the body differently from the gateway. Such requests are refused; ``content-*``
#: names are matched by prefix.
PROTECTED_FROM_CONNECTION: Final = frozenset(
    {
        "host",
        "transfer-encoding",
        "authorization",
        "signature",
        "signature-input",
        "idempotency-key",
        "date",
        "expect",
    }
)

#: Content codings the gateway can decode to inspect an answer; the client's Accept-Encoding is
#: narrowed to these so a vendor answer is never opaque.
DECODABLE: Final = ("gzip", "deflate", "identity")

MAX_VENDOR_ANSWER = 1024 * 1024

#: ``detail`` of a 502 where the connection to the vendor never opened: nothing was sent.
NOT_SENT: Final = Detail.NOT_SENT


def may_have_reached_vendor(ex: Exchange) -> bool:
    """True once forwarding began, unless the connection provably never opened.

    A send that may have reached the vendor may have been delivered: it keeps its OTP slot and
    its idempotency record (a repeat must not send it again).
    """
    return ex.upstream_attempted and not (ex.reason == Reason.UPSTREAM_UNAVAILABLE and ex.detail == NOT_SENT)


@dataclass(frozen=True, slots=True)
class VendorAnswer:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    elapsed_ms: float

    def decoded_body(self, limit: int = MAX_VENDOR_ANSWER) -> bytes | None:
        """The body without content coding, for reading the message id; None if it can't be had."""
        coding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if coding in ("", "identity"):
            return self.body
        if coding not in ("gzip", "deflate", "x-gzip"):
            return None
        try:
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
            out = inflater.decompress(self.body, limit)
            return out if inflater.eof and not inflater.unconsumed_tail else None
        except zlib.error:
            return None


_ALWAYS_DROP = HOP_BY_HOP | CLIENT_ONLY


def _connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Header names a sender listed in ``Connection``: hop-by-hop for this one message."""
    values = headers.getall("Connection", ())
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def upstream_headers(
    incoming: CIMultiDictProxy[str], credentials: VendorCredentials, strip: Iterable[str] = ()
) -> CIMultiDict[str]:
    """The client's headers as the vendor gets them; the vendor credentials are added by ``sign``."""
    drop = _ALWAYS_DROP | credentials.header_names
    tokens = _connection_tokens(incoming)
    if tokens or strip:
        drop = drop | tokens | {name.lower() for name in strip}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower not in drop and not _client_private(lower):
            out.add(name, value)
    encodings = out.getall("Accept-Encoding", ())
    if encodings:
        del out["Accept-Encoding"]
        kept = [
            token.strip()
            for value in encodings
            for token in value.split(",")
            if token.split(";")[0].strip().lower() in DECODABLE
        ]
        if kept:
            out["Accept-Encoding"] = ", ".join(kept)
    return out


def response_headers(incoming: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The vendor's answer headers the client may see (every answer passes here: one pass)."""
    drop = RESPONSE_DROP | _connection_tokens(incoming) if "Connection" in incoming else RESPONSE_DROP
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower not in drop and not lower.startswith("access-control-"):
            out.add(name, value)
    return out


def check_connection_tokens(headers: CIMultiDictProxy[str]) -> None:
    """Refuse a ``Connection`` header naming an end-to-end header (400), instead of dropping it."""
    for token in _connection_tokens(headers):
        if token in PROTECTED_FROM_CONNECTION or token.startswith("content-"):
            raise bad_request("the Connection header names a header the message depends on")


class AnswerScrubber:
    """What a vendor answer must not carry to the client: the vendor's secrets, and its real
    account id where the client used a virtual one (answer rewrites from the adapter)."""

    __slots__ = ("_secrets", "_text_secrets")

    def __init__(self, secrets: Iterable[str]) -> None:
        self._text_secrets = tuple(sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True))
        self._secrets = tuple((s.encode("utf-8"), b"REDACTED") for s in self._text_secrets)

    def scrub(
        self, answer: VendorAnswer, rewrites: tuple[tuple[bytes, bytes], ...]
    ) -> tuple[bytes, CIMultiDict[str]]:
        """The body and headers to send; decoded (and relabelled) only when something had to change."""
        pairs = self._secrets + rewrites
        headers = answer.headers
        if pairs:
            headers = CIMultiDict(
                (name, self._scrub_text(value, rewrites)) for name, value in answer.headers.items()
            )
        if not pairs or not answer.body:
            return answer.body, headers
        decoded = answer.decoded_body()
        if decoded is None:
            raise refuse(Reason.UPSTREAM_UNAVAILABLE, "the vendor's answer could not be inspected")
        changed = decoded
        for old, new in pairs:
            if old in changed:
                changed = changed.replace(old, new)
        if changed is decoded:
            return answer.body, headers
        headers.pop("Content-Encoding", None)
        return changed, headers

    def _scrub_text(self, value: str, rewrites: tuple[tuple[bytes, bytes], ...]) -> str:
        for secret in self._text_secrets:
            if secret in value:
                value = value.replace(secret, "REDACTED")
        for old, new in rewrites:
            text = old.decode("ascii")
            if text in value:
                value = value.replace(text, new.decode("ascii"))
        return value


class Upstream:
    def __init__(
        self,
        base_url: str,
        credentials: VendorCredentials,
        ssl_context: ssl.SSLContext,
        connect_timeout_s: float,
        timeout_s: float,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._credentials = credentials
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=connect_timeout_s, sock_connect=connect_timeout_s
        )
        self._query_names = frozenset(k.lower() for k, _ in credentials.query)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=256, ttl_dns_cache=60, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )
        # aiohttp silently sends a PUT, DELETE or GET a second time when the vendor closes the
        # connection without an answer (RFC 9112 §9.3.1 allows it for idempotent methods). A send
        # is never idempotent: the vendor may have delivered the first one. aiohttp has no public
        # switch (3.14); fail at start rather than retry if the attribute ever goes away.
        if not hasattr(self._session, "_retry_connection"):
            raise RuntimeError("this aiohttp cannot be told not to retry requests")
        self._session._retry_connection = False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def ready(self) -> bool:
        return self._session is not None and not self._session.closed

    def url(self, path: str, query_string: str, drop: frozenset[str] = frozenset()) -> str:
        """``query_string`` is the client's raw query; a parameter that could be read as the
        vendor's query credential (``api_key``, ``API_KEY[]``, after ``;`` too), or as a client
        credential the adapter reads there (``drop``, case-folded), is dropped, so a client cannot
        put its own credential first nor hand it to the vendor. The vendor's is added by ``sign``."""
        names = self._query_names | drop if drop else self._query_names
        if query_string and names:
            query_string = "&".join(
                part
                for part in query_string.split("&")
                if not any(
                    field_base(unquote_plus(piece.partition("=")[0], errors="replace")) in names
                    for piece in part.split(";")
                )
            )
        return f"{self._base}{path}" + (f"?{query_string}" if query_string else "")

    async def forward(
        self,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        query_credentials: tuple[str, str] | None = None,
    ) -> VendorAnswer:
        """One attempt; connection failures are 502 ``upstream_unavailable``, slowness 504."""
        assert self._session is not None, "Upstream.start() was not awaited"
        url = self._credentials.sign(method, url, headers, body, query_credentials)
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, URL(url, encoded=True), headers=headers, data=body or None, allow_redirects=False
            ) as response:
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_VENDOR_ANSWER:
                        raise refuse(Reason.UPSTREAM_UNAVAILABLE, "the vendor's answer is too large")
                    chunks.append(chunk)
                return VendorAnswer(
                    response.status,
                    response_headers(response.headers),
                    b"".join(chunks),
                    round((time.perf_counter() - started) * 1000, 3),
                )
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError):
            # No connection was made, so no request byte left: safe to retry (detail for
            # idempotency and OTP caps, see may_have_reached_vendor).
            raise refuse(
                Reason.UPSTREAM_UNAVAILABLE, "the vendor could not be reached", detail=NOT_SENT
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise refuse(Reason.UPSTREAM_TIMEOUT, "the vendor did not answer in time") from None
        except (aiohttp.ClientError, ssl.SSLError, OSError):
            raise refuse(Reason.UPSTREAM_UNAVAILABLE, "the vendor could not be reached") from None


# --------------------------------------------------------------------------- stages


class CheckHopHeaders(SyncStage):
    """Before the allow record: a request whose forwarding would change its meaning is refused."""

    name = "hop_headers"
    __slots__ = ()

    def run_sync(self, ex: Exchange) -> None:
        check_connection_tokens(ex.request.headers)


class Forward:
    """Step 11: one attempt upstream with the vendor's credentials; the answer comes back scrubbed."""

    name = "forward"
    __slots__ = ("_adapter", "_audit", "_credentials", "_drop", "_scrubber", "_template", "_upstream")

    def __init__(
        self,
        upstream: Upstream,
        credentials: VendorCredentials,
        adapter: ProviderAdapter,
        template: PathTemplate,
        audit: AuditLog,
        scrubber: AnswerScrubber,
    ) -> None:
        self._upstream = upstream
        self._credentials = credentials
        self._adapter = adapter
        self._template = template
        self._audit = audit
        self._scrubber = scrubber
        self._drop = client_query_credentials(adapter)

    async def run(self, ex: Exchange) -> web.StreamResponse:
        request = ex.request
        target = self._adapter.target(self._template, ex.params)
        drop = self._drop | frozenset(n.casefold() for n in target.query_credentials or ())
        url = self._upstream.url(target.path, request.raw_path.partition("?")[2], drop)
        headers = upstream_headers(request.headers, self._credentials)
        if ex.trace is not None:  # the vendor sees the gateway's span, never the caller's own
            headers.update(traceparent(ex))
        attempt = Attempt(self._audit, ex)
        try:
            answer = await self._upstream.forward(
                request.method, url, headers, ex.body or b"", target.query_credentials
            )
            body, answer_headers = self._scrubber.scrub(answer, target.answer_rewrites)
        except GatewayError as exc:
            attempt.failed(exc)
            raise
        attempt.answered(answer.status, answer.elapsed_ms)
        decoded = answer.decoded_body()
        if decoded is not None:
            ex.vendor_message_id = self._adapter.vendor_message_id(
                answer.status, decoded, answer.headers.get("Content-Type", "")
            )
        if ex.answer_hook is not None:
            ex.answer_hook(ex, answer.status, decoded)
        attempt.record()
        return web.Response(status=answer.status, body=body, headers=answer_headers)
