"""Forwarding a verified callback to its route's ``forward_to``: one pooled session for every
webhook route (a :class:`~gateway.server.services.Services` member), one attempt per callback.

The gateway never retries: the vendor does, when it gets anything but a 2xx, so the internal
service's status goes back to the vendor as it is (and its body, say TwiML answering an inbound
SMS). What the internal service receives:

- the method, the raw body and its ``Content-Type``, and the part of the callback's query the
  signature covers appended to ``forward_to`` (GET callbacks carry their data there; beside a
  body, parameters named like the vendor's fields are left out: ``events.forwarded_query``);
- ``X-Smsgw-Verified: <scheme>``, ``X-Smsgw-Verified-Fields: body|query|none`` (where the
  vendor's fields are signed; ``none``: the signature covers no field, Plivo V2),
  ``X-Smsgw-Route: <route name>``, ``X-Request-ID``;
- nothing else: the vendor's signature headers, ``Authorization`` (Vonage's JWT), cookies and
  every ``X-Forwarded-*`` stay at the gateway. ``X-Smsgw-Verified`` is information, not a
  credential: the internal service must accept callbacks from the gateway only.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web
from yarl import URL

from gateway.audit.attempt import Attempt
from gateway.audit.log import AuditLog
from gateway.callbacks.base import NOWHERE
from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.exchange import Exchange

__all__ = ["MAX_ANSWER", "CallbackForwarder", "ForwardCallback", "ForwardTarget"]

MAX_ANSWER: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class ForwardTarget:
    url: str
    timeout_s: float
    ssl: ssl.SSLContext | None  # https only

    def with_query(self, raw_query: str) -> str:
        if not raw_query:
            return self.url
        return self.url + ("&" if "?" in self.url else "?") + raw_query


@dataclass(frozen=True, slots=True)
class InternalAnswer:
    status: int
    content_type: str | None
    body: bytes
    elapsed_ms: float


def unavailable(message: str = "the internal service could not be reached") -> GatewayError:
    return refuse(Reason.UPSTREAM_UNAVAILABLE, message)


class CallbackForwarder:
    """The session to internal services; started and closed with the other services."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=128, ttl_dns_cache=60, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def ready(self) -> bool:
        return self._session is not None and not self._session.closed

    async def send(
        self, method: str, target: ForwardTarget, raw_query: str, headers: dict[str, str], body: bytes
    ) -> InternalAnswer:
        """One attempt: unreachable is 502 ``upstream_unavailable``, too slow 504 ``upstream_timeout``."""
        assert self._session is not None, "CallbackForwarder.start() was not awaited"
        timeout = aiohttp.ClientTimeout(
            total=target.timeout_s,
            connect=min(3.0, target.timeout_s),
            sock_connect=min(3.0, target.timeout_s),
        )
        started = time.perf_counter()
        try:
            async with self._session.request(
                method,
                URL(target.with_query(raw_query), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                ssl=target.ssl if target.ssl is not None else True,
            ) as response:
                if 300 <= response.status < 400:
                    raise unavailable("the internal service answered with a redirect")
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(16384):
                    size += len(chunk)
                    if size > MAX_ANSWER:
                        raise unavailable("the internal service's answer is too large")
                    chunks.append(chunk)
                return InternalAnswer(
                    response.status,
                    response.headers.get("Content-Type"),
                    b"".join(chunks),
                    round((time.perf_counter() - started) * 1000, 3),
                )
        except aiohttp.ConnectionTimeoutError:
            raise unavailable() from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise refuse(Reason.UPSTREAM_TIMEOUT, "the internal service did not answer in time") from None
        except (aiohttp.ClientError, ssl.SSLError, OSError):
            raise unavailable() from None


class ForwardCallback:
    """The last stage of a webhook route: the verified callback goes to ``forward_to``."""

    name = "forward"
    __slots__ = ("_audit", "_forwarder", "_route", "_scheme", "_target")

    def __init__(
        self, forwarder: CallbackForwarder, target: ForwardTarget, audit: AuditLog, scheme: str, route: str
    ) -> None:
        self._forwarder = forwarder
        self._target = target
        self._audit = audit
        self._scheme = scheme
        self._route = route

    async def run(self, ex: Exchange) -> web.StreamResponse:
        request = ex.request
        headers = {
            "User-Agent": "smsgw",
            "X-Smsgw-Verified": self._scheme,
            "X-Smsgw-Route": self._route,
            "X-Request-ID": ex.request_id,
        }
        content_type = request.headers.get("Content-Type")
        if content_type:
            headers["Content-Type"] = content_type
        event = ex.callback
        headers["X-Smsgw-Verified-Fields"] = event.verified_fields if event is not None else NOWHERE
        query = event.forward_query if event is not None else ""
        attempt = Attempt(self._audit, ex)
        try:
            answer = await self._forwarder.send(request.method, self._target, query, headers, ex.body or b"")
        except GatewayError as exc:
            attempt.failed(exc)
            raise
        attempt.answered(answer.status, answer.elapsed_ms)
        attempt.record()
        out = {"Content-Type": answer.content_type} if answer.content_type and answer.body else {}
        return web.Response(status=answer.status, body=answer.body or None, headers=out)
