"""A failing vendor: resets, garbage instead of HTTP, truncated, slow, endless or hanging answers.

The vendor here is a raw TLS server on loopback (real certificates from the test CA) that reads
one request and then misbehaves on the wire in ways an aiohttp server never would. Every case
must end in 502 ``upstream_unavailable`` or 504 ``upstream_timeout`` with the gateway's headers,
an audit ``outcome`` record and an access record saying so, never a 500; and the send is never
repeated (the vendor saw it exactly once). Certificate failures are in test_forwarding.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Gateway, GatewayFactory, Recorder, error_of, policy

HSTS = "max-age=31536000; includeSubDomains"
BOUND = 5.0
# upstream.timeout_s is short here, so a hanging vendor costs about a second
SHORT = {"upstream": {"timeout_s": 0.5, "connect_timeout_s": 0.5}}

Answer = Callable[[asyncio.StreamWriter, "RawVendor"], Awaitable[None]]


@dataclass
class RawVendor:
    """A TLS server that counts the requests it read in full and answers them with ``answer``."""

    answer: Answer
    tls: bool = True
    requests: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.tls:
                async with asyncio.timeout(BOUND):
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.decode("latin-1").split("\r\n"):
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value)
                    await reader.readexactly(length)
                self.requests += 1
            await self.answer(writer, self)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_vendor(pki: dict[str, Path]) -> AsyncIterator[Callable[..., Awaitable[RawVendor]]]:
    servers: list[tuple[asyncio.Server, RawVendor]] = []

    async def factory(answer: Answer, tls: bool = True) -> RawVendor:
        vendor = RawVendor(answer, tls)
        ctx = None
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(pki["vendor_cert"], pki["vendor_key"])
        server = await asyncio.start_server(vendor.handle, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        vendor.url = f"https://127.0.0.1:{port}"
        servers.append((server, vendor))
        return vendor

    yield factory
    for server, vendor in servers:
        vendor.release.set()
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- ways to answer


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def sends(data: bytes, then: str = "close") -> Answer:
    """Write ``data``, then close (FIN), reset (RST) or hang until the test ends."""

    async def answer(writer: asyncio.StreamWriter, vendor: RawVendor) -> None:
        if data:
            writer.write(data)
            await writer.drain()
        if then == "reset":
            reset(writer)
        elif then == "hang":
            await vendor.release.wait()

    return answer


async def dribble(writer: asyncio.StreamWriter, vendor: RawVendor) -> None:
    """A whole answer, one byte every 0.2 s: it would take 20 s."""
    writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    for _ in range(100):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.2)


async def endless(writer: asyncio.StreamWriter, vendor: RawVendor) -> None:
    """A chunked answer that never ends, as fast as the gateway reads it."""
    writer.write(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"8000\r\n" + b"x" * 0x8000 + b"\r\n"
    for _ in range(4096):  # 128 MiB at most; the gateway stops reading after 1 MiB
        writer.write(chunk)
        await writer.drain()


CREATED = b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"sid": "SM'

FAILURES: dict[str, tuple[Answer, int, str]] = {
    # the connection goes away
    "reset-before-answering": (sends(b"", "reset"), 502, "upstream_unavailable"),
    "close-before-answering": (sends(b"", "close"), 502, "upstream_unavailable"),
    "reset-mid-head": (sends(b"HTTP/1.1 201 Cre", "reset"), 502, "upstream_unavailable"),
    "reset-mid-body": (sends(CREATED, "reset"), 502, "upstream_unavailable"),
    "truncated-chunked-body": (
        sends(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" + b"x" * 32 + b"\r\n"),
        502,
        "upstream_unavailable",
    ),
    # garbage instead of HTTP
    "binary-garbage": (sends(bytes(range(256)) * 4), 502, "upstream_unavailable"),
    "another-protocol": (sends(b"SSH-2.0-OpenSSH_9.6\r\n"), 502, "upstream_unavailable"),
    "bad-status-line": (sends(b"HTTP/1.1 two-oh-one Created\r\n\r\n"), 502, "upstream_unavailable"),
    "bad-chunk-size": (
        sends(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"),
        502,
        "upstream_unavailable",
    ),
    "length-and-chunked": (
        sends(
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n"
        ),
        502,
        "upstream_unavailable",
    ),
    "header-line-too-long": (
        sends(b"HTTP/1.1 201 Created\r\nX-Big: " + b"b" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n{}"),
        502,
        "upstream_unavailable",
    ),
    "too-many-headers": (
        sends(b"HTTP/1.1 201 Created\r\n" + b"X-H: v\r\n" * 1000 + b"Content-Length: 2\r\n\r\n{}"),
        502,
        "upstream_unavailable",
    ),
    "endless-body": (endless, 502, "upstream_unavailable"),
    # too slow
    "silent": (sends(b"", "hang"), 504, "upstream_timeout"),
    "head-then-silent": (sends(CREATED, "hang"), 504, "upstream_timeout"),
    "only-100-continue": (sends(b"HTTP/1.1 100 Continue\r\n\r\n", "hang"), 504, "upstream_timeout"),
    "dribbling-body": (dribble, 504, "upstream_timeout"),
}


def assert_failed(gw: Gateway, status: int, payload: bytes, headers: Any, expected: tuple[int, str]) -> None:
    code = expected[1]
    assert status == expected[0], payload
    error = error_of(payload)
    assert error["code"] == code
    assert error["request_id"] == headers["X-Request-ID"]
    assert headers["Strict-Transport-Security"] == HSTS
    assert headers["Cache-Control"] == "no-store"
    outcomes = [r for r in gw.audit() if r["event"] == "outcome"]
    assert [(r["status"], r["reason"]) for r in outcomes] == [expected]
    assert [(r["status"], r["reason"]) for r in gw.access()] == [expected]


@pytest.mark.parametrize("name", list(FAILURES))
async def test_failing_vendor_is_502_or_504_audited_and_not_retried(
    make_gateway: GatewayFactory, raw_vendor, caplog, name: str
) -> None:
    caplog.set_level(logging.DEBUG)
    answer, status, code = FAILURES[name]
    vendor = await raw_vendor(answer)
    gw = await make_gateway(vendor.url, settings=SHORT)
    response = await gw.send()
    payload = await response.read()
    assert_failed(gw, response.status, payload, response.headers, (status, code))
    assert vendor.requests == 1  # exactly once: never retried
    assert b"xxxx" not in payload  # nothing of a partial answer reaches the client
    assert "failed" not in caplog.text  # no internal error logged


async def test_vendor_that_never_completes_the_handshake_is_502_and_gets_nothing(
    make_gateway: GatewayFactory, raw_vendor
) -> None:
    """A plain TCP server where TLS was expected: upstream.connect_timeout_s covers the handshake."""
    vendor = await raw_vendor(sends(b"", "hang"), tls=False)
    gw = await make_gateway(vendor.url, settings={"upstream": {"timeout_s": 2, "connect_timeout_s": 0.5}})
    response = await gw.send()
    assert_failed(gw, response.status, await response.read(), response.headers, (502, "upstream_unavailable"))
    assert vendor.requests == 0


async def test_vendor_speaking_plain_http_on_the_tls_port_is_502(
    make_gateway: GatewayFactory, raw_vendor
) -> None:
    vendor = await raw_vendor(sends(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"), tls=False)
    gw = await make_gateway(vendor.url, settings=SHORT)
    response = await gw.send()
    assert_failed(gw, response.status, await response.read(), response.headers, (502, "upstream_unavailable"))


# --------------------------------------------------------------------------- never a second send


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_a_send_is_not_repeated_when_the_vendor_hangs_up_without_an_answer(
    make_gateway: GatewayFactory, vendors, method: str
) -> None:
    """aiohttp's client sends an idempotent request (PUT, DELETE) a second time when the server
    closes the connection without answering. Before: a PUT send route reached the vendor twice,
    and the vendor may well have delivered the first."""

    async def hang_up(request: web.Request, _: bytes) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await recorder.release.wait()  # never answers (released when the test ends)
        return web.Response(status=201)

    recorder = Recorder(hang_up)
    v = await vendors(recorder)
    gw = await make_gateway(v.base_url, policies=policy(route={"methods": [method]}))
    response = await gw.send(method=method)
    assert_failed(gw, response.status, await response.read(), response.headers, (502, "upstream_unavailable"))
    assert len(recorder.seen) == 1


async def test_leftover_bytes_after_an_answer_never_become_the_next_answer(
    make_gateway: GatewayFactory, raw_vendor
) -> None:
    """A vendor that appends a second, unasked-for answer to the first on a kept-alive
    connection: the next send must get its own answer (or fail), never the leftover."""
    planted = b'{"sid": "SMplanted00000000000000000000000"}'

    async def twice(writer: asyncio.StreamWriter, vendor: RawVendor) -> None:
        own = json.dumps({"sid": f"SM{vendor.requests:032d}"}).encode()
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(own), own)
        )
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(planted), planted)
        )
        await writer.drain()
        await vendor.release.wait()  # keep the connection open for reuse

    vendor = await raw_vendor(twice)
    gw = await make_gateway(vendor.url, settings=SHORT)
    first = await gw.send()
    assert first.status == 201
    assert b"planted" not in await first.read()
    second = await gw.send()
    payload = await second.read()
    assert b"planted" not in payload
    assert second.status == 201, payload
    assert json.loads(payload) == {"sid": f"SM{2:032d}"}  # the answer to the second request
