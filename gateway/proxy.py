"""Forwarding to the vendor: one pooled client session, verified TLS, no automatic retry.

A send that reached the vendor may have been delivered, so a failed exchange is reported to the
client (502/504) and never repeated here; ``Idempotency-Key`` is the safe way to retry.
"""

from __future__ import annotations

import ssl
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.credentials import VendorCredentials
from gateway.errors import GatewayError

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

#: Client-side headers that must never reach the vendor: the client's own credentials, and the
#: client's network details (internal addresses are nobody else's business).
CLIENT_ONLY = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "authorization",
        "signature",
        "signature-input",
        "cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "forwarded",
        # and every X-Forwarded-* header (matched by prefix in upstream_headers)
        "x-real-ip",
        "idempotency-key",
    }
)

#: Response headers the gateway sets itself or that describe the vendor's connection.
RESPONSE_DROP = HOP_BY_HOP | {"content-length", "strict-transport-security"}

MAX_VENDOR_ANSWER = 1024 * 1024


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
    drop = _ALWAYS_DROP | credentials.header_names
    tokens = _connection_tokens(incoming)
    if tokens or strip:
        drop = drop | tokens | {name.lower() for name in strip}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower not in drop and not lower.startswith("x-forwarded-"):
            out.add(name, value)
    for name, value in credentials.headers:
        out[name] = value
    return out


def response_headers(incoming: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    drop = RESPONSE_DROP | _connection_tokens(incoming)
    return CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in drop)


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
        self._query_suffix = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in credentials.query
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

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def ready(self) -> bool:
        return self._session is not None and not self._session.closed

    def url(self, path: str, query_string: str) -> str:
        """``query_string`` is the client's raw query; a parameter named like the vendor's query
        credential is dropped, so a client cannot put its own credential first."""
        if query_string and self._query_names:
            query_string = "&".join(
                part
                for part in query_string.split("&")
                if unquote_plus(part.partition("=")[0]).lower() not in self._query_names
            )
        query = "&".join(q for q in (query_string, self._query_suffix) if q)
        return f"{self._base}{path}" + (f"?{query}" if query else "")

    async def forward(self, method: str, url: str, headers: CIMultiDict[str], body: bytes) -> VendorAnswer:
        """One attempt; connection failures are 502 ``upstream_unavailable``, slowness 504."""
        assert self._session is not None, "Upstream.start() was not awaited"
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, URL(url, encoded=True), headers=headers, data=body or None, allow_redirects=False
            ) as response:
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_VENDOR_ANSWER:
                        raise GatewayError(502, "upstream_unavailable", "the vendor's answer is too large")
                    chunks.append(chunk)
                return VendorAnswer(
                    response.status,
                    response_headers(response.headers),
                    b"".join(chunks),
                    round((time.perf_counter() - started) * 1000, 3),
                )
        except aiohttp.ConnectionTimeoutError:
            raise GatewayError(502, "upstream_unavailable", "the vendor could not be reached") from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise GatewayError(504, "upstream_timeout", "the vendor did not answer in time") from None
        except (aiohttp.ClientError, ssl.SSLError, OSError):
            raise GatewayError(502, "upstream_unavailable", "the vendor could not be reached") from None
