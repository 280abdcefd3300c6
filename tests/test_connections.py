"""Client connections: connection caps, the handshake, header, body and keep-alive deadlines, and
the answer to requests too malformed for the app.

Everything runs over real sockets on loopback with short configured timeouts. A wait is always
bounded; "closed" means the server ended the connection (EOF or reset) before a generous bound.
Linux routes all of 127.0.0.0/8 on loopback, so 127.0.0.2 and 127.0.0.3 serve as other clients.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import resource
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from gateway.core.errors import GatewayError
from gateway.server.config import ConfigError, load_config
from gateway.server.main import start
from gateway.transport.connections import (
    BAD_EXPECT,
    ConnectionLimits,
    ConnectionPolicy,
    GatedSite,
    expect_handler,
    read_body_within,
)
from tests.conftest import CLIENT_PASSWORD, CLIENT_USER, basic, client_ssl, write_config

HSTS = "max-age=31536000; includeSubDomains"
BOUND = 5.0  # generous: every "is closed" below must happen well within this
FAST = {"handshake_timeout_s": 0.5, "header_timeout_s": 0.5, "keepalive_timeout_s": 0.5}
OTHER = "127.0.0.2"  # another client address on loopback


# -- helpers ---------------------------------------------------------------------------------


async def tcp(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), timeout=BOUND
    )


async def tls(
    port: int, ctx: ssl.SSLContext, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1", local_addr=(source, 0)
        ),
        timeout=BOUND,
    )


async def closed_by_server(reader: asyncio.StreamReader, bound: float = BOUND) -> bool:
    """True when the server ends the connection (EOF, reset, TLS alert) within ``bound``."""
    try:
        async with asyncio.timeout(bound):
            while await reader.read(65536):
                pass
            return True
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length (after any 1xx), read within the bound."""
    async with asyncio.timeout(BOUND):
        status = 100
        while status < 200:
            status, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def split_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Consecutive HTTP/1.1 responses with Content-Length, as they came off one connection."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        size = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:size]))
        data = rest[size:]
    return out


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) for a counter that the server updates when a socket closes."""
    async with asyncio.timeout(BOUND):
        while not predicate():  # noqa: ASYNC110 - polls server state, no event to wait on
            await asyncio.sleep(0.02)


def settings(**server: Any) -> dict[str, Any]:
    return {"server": server}


async def send_from(gw, source: str) -> int:
    """A real send through the gateway from ``source``; the status it got."""
    connector = aiohttp.TCPConnector(ssl=client_ssl(gw.pki), local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            gw.base + gw.send_path,
            data={"To": "+37255512367", "From": "MyBank", "Body": "hello"},
            headers={"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)},
            timeout=aiohttp.ClientTimeout(total=BOUND),
        ) as response:
            await response.read()
            return response.status


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout=BOUND)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass


def client_hello(ctx: ssl.SSLContext) -> bytes:
    """The first flight of a real TLS client (its ClientHello), without a socket."""
    obj = ctx.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


async def with_the_handshake(port: int, ctx: ssl.SSLContext, data: bytes) -> bytes:
    """TLS 1.3 where ``data`` leaves in the same write as the client's Finished, so the server
    decrypts it while its handshake completes; returns everything the server answered."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    reader, writer = await tcp(port)
    answer = bytearray()
    try:
        async with asyncio.timeout(BOUND):
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    writer.write(outgoing.read())
                    chunk = await reader.read(65536)
                    assert chunk, "the server closed during the handshake"
                    incoming.write(chunk)
            assert obj.version() == "TLSv1.3"
            obj.write(data)
            writer.write(outgoing.read())  # Finished and the request together
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                incoming.write(chunk)
                try:
                    while piece := obj.read(65536):
                        answer += piece
                    break  # b"": the server's close_notify
                except ssl.SSLWantReadError:
                    continue
                except ssl.SSLZeroReturnError:
                    break
    finally:
        writer.close()
    return bytes(answer)


@pytest.fixture
async def serve_app(pki: dict[str, Path]) -> AsyncIterator[Callable[..., Any]]:
    """``await serve_app(app, client_ca=False, **timeouts)``: the app on a GatedSite with TLS."""
    runners: list[web.AppRunner] = []

    async def factory(app: web.Application, *, client_ca: bool = False, **timeouts: float) -> int:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki["gateway_cert"], pki["gateway_key"])
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(pki["ca"]))
        policy = ConnectionPolicy(
            ConnectionLimits(40, 40),
            timeouts.get("handshake", 5.0),
            timeouts.get("header", 5.0),
            timeouts.get("keepalive", 5.0),
            {"Strict-Transport-Security": HSTS},
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = GatedSite(runner, "127.0.0.1", 0, policy=policy, ssl_context=ctx, access_log=None)
        await site.start()
        return int(runner.addresses[0][1])

    yield factory
    for runner in runners:
        await runner.cleanup()


# -- config ----------------------------------------------------------------------------------


def test_connection_keys_default_to_the_design(tmp_path: Path, pki: dict[str, Path]) -> None:
    server = load_config(write_config(tmp_path, pki, "https://127.0.0.1:1")).settings.server
    assert (
        server.handshake_timeout_s,
        server.header_timeout_s,
        server.body_timeout_s,
        server.keepalive_timeout_s,
        server.max_connections,
        server.max_connections_per_ip,
    ) == (10, 10, 30, 15, 4096, 256)


@pytest.mark.parametrize(
    ("server", "key", "fragment"),
    [
        ({"handshake_timeout_s": 0}, "server.handshake_timeout_s", "greater than 0"),
        ({"handshake_timeout_s": 61}, "server.handshake_timeout_s", "less than or equal to 60"),
        ({"header_timeout_s": -1}, "server.header_timeout_s", "greater than 0"),
        ({"header_timeout_s": 121}, "server.header_timeout_s", "less than or equal to 120"),
        ({"body_timeout_s": 0}, "server.body_timeout_s", "greater than 0"),
        ({"body_timeout_s": 601}, "server.body_timeout_s", "less than or equal to 600"),
        ({"keepalive_timeout_s": 0}, "server.keepalive_timeout_s", "greater than 0"),
        ({"keepalive_timeout_s": 3601}, "server.keepalive_timeout_s", "less than or equal to 3600"),
        ({"max_connections": 0}, "server.max_connections", "greater than or equal to 1"),
        ({"max_connections": 2_000_000}, "server.max_connections", "less than or equal to 1000000"),
        ({"max_connections_per_ip": 0}, "server.max_connections_per_ip", "greater than or equal to 1"),
        (
            {"max_connections": 100, "max_connections_per_ip": 101},
            "server.max_connections_per_ip",
            "must not be larger than max_connections",
        ),
    ],
)
def test_connection_keys_are_validated(
    tmp_path: Path, pki: dict[str, Path], server: dict[str, Any], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, pki, "https://127.0.0.1:1", settings(**server)))
    (problem,) = info.value.problems
    assert problem.key == key
    assert fragment in problem.message


# -- deadlines -------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01"], ids=["silent", "partial-hello"])
async def test_connection_without_a_handshake_is_closed(make_gateway, vendor, sent):
    gw = await make_gateway(vendor.base_url, settings=settings(**FAST))
    reader, writer = await tcp(gw.running.public_port)
    writer.write(sent)
    try:
        assert await closed_by_server(reader)
    finally:
        writer.close()
    await eventually(lambda: gw.running.connections.total == 0)


async def test_idle_tls_connection_is_closed(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, settings=settings(**FAST))
    reader, writer = await tls(gw.running.public_port, client_ssl(gw.pki))
    try:
        assert await closed_by_server(reader)
    finally:
        writer.close()


@pytest.mark.parametrize("earlier_request", [False, True], ids=["first-request", "keep-alive-request"])
async def test_request_head_sent_slowly_is_cut_off(make_gateway, vendor, earlier_request):
    # keep-alive is long here, so only the head deadline can close this connection
    gw = await make_gateway(vendor.base_url, settings=settings(header_timeout_s=0.5, keepalive_timeout_s=30))
    reader, writer = await tls(gw.running.public_port, client_ssl(gw.pki))
    try:
        if earlier_request:
            writer.write(b"GET /nothing HTTP/1.1\r\nHost: gw\r\n\r\n")
            status, headers, _ = await read_response(reader)
            assert status == 404
            assert headers.get("connection", "keep-alive").lower() != "close"
        writer.write(f"POST {gw.send_path} HTTP/1.1\r\nHost: gw\r\n".encode())
        cut_off = False
        for line in range(40):  # one header line every 0.2 s, never finishing: at most 8 s
            writer.write(f"X-Slow-{line}: x\r\n".encode())
            if await closed_by_server(reader, bound=0.2):
                cut_off = True
                break
        assert cut_off
    finally:
        writer.close()
    assert vendor.received == []


async def test_pause_between_requests_is_keep_alive_not_a_slow_head(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, settings=settings(header_timeout_s=0.3, keepalive_timeout_s=5))
    reader, writer = await tls(gw.running.public_port, client_ssl(gw.pki))
    try:
        for _ in range(2):
            writer.write(b"GET /nothing HTTP/1.1\r\nHost: gw\r\n\r\n")
            status, _, _ = await read_response(reader)
            assert status == 404
            await asyncio.sleep(0.8)  # idle longer than the head deadline, shorter than keep-alive
    finally:
        writer.close()


async def test_body_sent_slowly_gets_408_and_the_connection_closes(serve_app, pki):
    async def handler(request: web.Request) -> web.Response:
        try:
            body = await read_body_within(request, 0.5)
        except GatewayError as exc:  # the gateway's middleware does this in the real app
            return web.json_response({"code": exc.code}, status=exc.status, headers=dict(exc.headers))
        return web.json_response({"length": len(body)})

    app = web.Application()
    app.router.add_post("/upload", handler)
    port = await serve_app(app, keepalive=30)

    reader, writer = await tls(port, client_ssl(pki))
    try:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        assert (await read_response(reader))[2] == b'{"length": 5}'

        writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
        answer = b""
        for _ in range(40):  # one byte every 0.2 s: the whole body would take 20 s
            writer.write(b"x")
            try:
                answer += await asyncio.wait_for(reader.read(65536), timeout=0.2)
            except TimeoutError:
                continue
            if answer.endswith(b"}"):
                break
        (status, headers, body), *_ = split_responses(answer)
        assert status == 408
        assert json.loads(body) == {"code": "body_timeout"}
        assert headers["connection"].lower() == "close"
        assert await closed_by_server(reader)
    finally:
        writer.close()


async def test_shutdown_does_not_wait_for_handshakes_under_way(tmp_path, pki, vendor):
    running = await start(load_config(write_config(tmp_path, pki, vendor.base_url)))  # 10 s handshakes
    try:
        reader, writer = await tcp(running.public_port)
        await eventually(lambda: running.connections.total == 1)
    finally:
        await asyncio.wait_for(running.stop(), timeout=BOUND)
    try:
        assert await closed_by_server(reader, bound=1)
    finally:
        writer.close()
    assert running.connections.total == 0


# -- connection caps -------------------------------------------------------------------------


async def test_connections_over_the_per_address_cap_are_closed_at_accept(make_gateway, vendor):
    gw = await make_gateway(
        vendor.base_url,
        settings=settings(max_connections_per_ip=5, max_connections=40, keepalive_timeout_s=30),
    )
    port, ctx = gw.running.public_port, client_ssl(gw.pki)
    idle = [(await tls(port, ctx))[1] for _ in range(5)]
    try:
        # The sixth from the same address is closed at once, before any TLS: even a silent TCP
        # connection, which the 10 s handshake deadline would otherwise keep.
        reader, writer = await tcp(port)
        try:
            assert await closed_by_server(reader, bound=3)
        finally:
            writer.close()
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await tls(port, ctx)

        # Another address is served while this one is at its cap.
        assert await send_from(gw, OTHER) == 201
        assert len(vendor.received) == 1

        # A closed connection frees its slot.
        await close_all(idle[:1])
        await eventually(lambda: gw.running.connections.per_ip.get("127.0.0.1") == 4)
        assert await send_from(gw, "127.0.0.1") == 201
    finally:
        await close_all(idle)
    await eventually(lambda: gw.running.connections.total == 0)
    assert gw.running.connections.refused == 2


async def test_connections_over_the_global_cap_are_closed_at_accept(make_gateway, vendor):
    gw = await make_gateway(
        vendor.base_url,
        settings=settings(max_connections=5, max_connections_per_ip=5, keepalive_timeout_s=30),
    )
    port, ctx = gw.running.public_port, client_ssl(gw.pki)
    idle = [(await tls(port, ctx, source))[1] for source in ["127.0.0.1"] * 3 + ["127.0.0.3"] * 2]
    try:
        reader, writer = await tcp(port, OTHER)
        try:
            assert await closed_by_server(reader, bound=3)
        finally:
            writer.close()
        # The admin listener counts its own connections: health checks still answer.
        async with gw.session.get(gw.admin + "/healthz") as health:
            assert health.status == 200

        await close_all(idle[:1])
        await eventually(lambda: gw.running.connections.total == 4)
        assert await send_from(gw, OTHER) == 201
    finally:
        await close_all(idle)
    await eventually(lambda: gw.running.connections.total == 0)


async def test_trusted_proxy_is_held_to_the_global_cap_only(make_gateway, vendor):
    # Behind a load balancer every client arrives from its address.
    gw = await make_gateway(
        vendor.base_url,
        settings=settings(
            tls={"mode": "offloaded"},
            trusted_proxies=["127.0.0.1/32"],
            max_connections=20,
            max_connections_per_ip=2,
            keepalive_timeout_s=30,
        ),
    )
    port = gw.running.public_port
    idle = [(await tcp(port, source))[1] for source in ["127.0.0.1"] * 3 + [OTHER] * 2]
    try:
        await eventually(lambda: gw.running.connections.total == 5)
        reader, writer = await tcp(port, OTHER)  # an untrusted address is still capped
        try:
            assert await closed_by_server(reader, bound=3)
        finally:
            writer.close()
        reader, writer = await tcp(port)  # the proxy's fourth connection is served
        try:
            writer.write(b"GET /nothing HTTP/1.1\r\nHost: gw\r\nX-Forwarded-Proto: https\r\n\r\n")
            assert (await read_response(reader))[0] == 404
        finally:
            writer.close()
    finally:
        await close_all(idle)
    await eventually(lambda: gw.running.connections.total == 0)


def test_ipv4_mapped_peers_count_as_their_ipv4_address() -> None:
    limits = ConnectionLimits(10, 2)
    assert limits.admit(("127.0.0.1", 1000)) == "127.0.0.1"
    assert limits.admit(("::ffff:127.0.0.1", 1001, 0, 0)) == "127.0.0.1"
    assert limits.admit(("::ffff:127.0.0.1", 1002, 0, 0)) is None
    assert limits.admit(("::1", 1003, 0, 0)) == "::1"
    assert limits.admit(None) is None
    limits.release("127.0.0.1")
    limits.release("127.0.0.1")
    limits.release("::1")
    assert (limits.total, limits.per_ip, limits.refused) == (0, {}, 2)


async def test_failed_handshakes_give_their_slot_back(make_gateway, vendor, ca):
    gw = await make_gateway(
        vendor.base_url, settings=settings(max_connections_per_ip=3, handshake_timeout_s=0.5)
    )
    port = gw.running.public_port
    hello = client_hello(client_ssl(gw.pki))

    async def silent() -> None:  # the handshake deadline closes it
        reader, writer = await tcp(port)
        assert await closed_by_server(reader)
        writer.close()

    async def not_tls() -> None:  # the TLS layer refuses it
        reader, writer = await tcp(port)
        writer.write(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert await closed_by_server(reader)
        writer.close()

    async def gives_up() -> None:  # the client leaves halfway through the handshake
        reader, writer = await tcp(port)
        writer.write(hello)
        await asyncio.wait_for(reader.read(1), timeout=BOUND)  # the server's first flight
        writer.transport.abort()

    async def wrong_version() -> None:  # TLS 1.1 only: a handshake failure alert
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1, on purpose
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await tls(port, old)

    for kind in (silent, not_tls, gives_up, wrong_version):
        await asyncio.gather(*(kind() for _ in range(3)))  # a full address's worth at a time
        await eventually(lambda: gw.running.connections.total == 0)
    assert gw.running.connections.refused == 0
    assert await send_from(gw, "127.0.0.1") == 201


# -- HTTP through the gate -------------------------------------------------------------------


async def test_tls_details_reach_the_app_through_the_gate(serve_app, pki, ca: trustme.CA):
    async def whoami(request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        ssl_object = transport.get_extra_info("ssl_object")
        subject = dict(pair for rdn in transport.get_extra_info("peercert")["subject"] for pair in rdn)
        again = dict(pair for rdn in ssl_object.getpeercert()["subject"] for pair in rdn)
        return web.json_response(
            {
                "peer": transport.get_extra_info("peername")[0],
                "remote": request.remote,
                "tls": ssl_object.version(),
                "cert": subject["commonName"],
                "cert_again": again["commonName"],
            }
        )

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    port = await serve_app(app, client_ca=True)
    ctx = client_ssl(pki)
    ca.issue_cert("billing-client", common_name="billing-client").configure_cert(ctx)
    connector = aiohttp.TCPConnector(ssl=ctx, local_addr=(OTHER, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"https://127.0.0.1:{port}/whoami") as response:
            assert await response.json() == {
                "peer": OTHER,
                "remote": OTHER,
                "tls": "TLSv1.3",
                "cert": "billing-client",
                "cert_again": "billing-client",
            }
    # Without a client certificate there is no session at all.
    with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError)):
        reader, writer = await tls(port, client_ssl(pki))  # TLS 1.3: refused after the client's Finished
        try:
            writer.write(b"GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n")
            await read_response(reader)
        finally:
            writer.close()


@pytest.fixture
async def echo_port(serve_app) -> int:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "n": request.query.get("n"),
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "connection": id(request.protocol),
            }
        )

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_route("*", "/echo", echo)
    return await serve_app(app)


async def test_keep_alive_and_large_bodies_through_the_gate(echo_port, pki):
    big = bytes(range(256)) * 8192  # 2 MiB
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki), limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        seen = []
        for n in range(4):
            url = f"https://127.0.0.1:{echo_port}/echo?n={n}"
            async with session.post(url, data=io.BytesIO(big)) as response:
                answer = await response.json()
            assert (answer["n"], answer["length"]) == (str(n), len(big))
            assert answer["sha256"] == hashlib.sha256(big).hexdigest()
            seen.append(answer["connection"])
    assert len(set(seen)) == 1  # one connection carried all four


async def test_pipelined_requests_sent_with_the_handshake_are_all_answered(echo_port, pki):
    ctx = client_ssl(pki, minimum_version=ssl.TLSVersion.TLSv1_3)
    requests = (
        b"GET /echo?n=1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /echo?n=2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /echo?n=3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    answers = split_responses(await with_the_handshake(echo_port, ctx, requests))
    assert [(status, json.loads(body)["n"]) for status, _, body in answers] == [
        (200, "1"),
        (200, "2"),
        (200, "3"),
    ]
    assert json.loads(answers[1][2])["length"] == 5


# -- malformed requests and Expect -----------------------------------------------------------

SECRET = "malformed-case-secret-5e1f"
MARKER = base64.b64encode(f"{CLIENT_USER}:{SECRET}".encode()).decode()


@pytest.mark.parametrize(
    "request_head",
    [
        f"GET /lookup/+37255599911\x01 HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic {MARKER}\r\n",
        f"GET /lookup HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic {MARKER}\x01\r\n",
        f"GET /lookup HTTP/1.1\r\nAuthorization: Basic {MARKER}\r\nHo st: gw\r\n",
        f"GET /lookup HTTP/1.1\r\nHost: gw\r\nX-Big: {MARKER}{'a' * 9000}\r\n",
    ],
    ids=["control-char-in-request-line", "control-char-in-authorization", "bad-header-name", "long-line"],
)
async def test_malformed_request_gets_a_fixed_json_answer(gateway, vendor, capfd, caplog, request_head):
    caplog.set_level(logging.DEBUG)
    reader, writer = await tls(gateway.running.public_port, client_ssl(gateway.pki))
    try:
        writer.write(request_head.encode("latin-1") + b"\r\n")
        async with asyncio.timeout(BOUND):
            raw = await reader.read()
    finally:
        writer.close()
    status, headers, body = split_responses(raw)[0]
    assert status == 400
    assert headers["strict-transport-security"] == HSTS
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "error": {
            "code": "bad_request",
            "message": "the request is malformed",
            "request_id": headers["x-request-id"],
        }
    }
    out, err = capfd.readouterr()
    logged = out + err + caplog.text + gateway.logs()
    assert "refused a malformed request" in caplog.text
    for secret in (MARKER, SECRET, "37255599911"):
        assert secret.encode() not in raw
        assert secret not in logged
    assert vendor.received == []


async def test_unknown_expectation_is_refused_without_echo(gateway, vendor):
    reader, writer = await tls(gateway.running.public_port, client_ssl(gateway.pki))
    try:
        writer.write(
            f"POST {gateway.send_path} HTTP/1.1\r\nHost: gw\r\nExpect: {MARKER}\r\n"
            f"Authorization: Basic {MARKER}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        async with asyncio.timeout(BOUND):
            status, headers, body = await read_response(reader)
    finally:
        writer.close()
    assert status == 417
    assert headers["strict-transport-security"] == HSTS
    assert headers["cache-control"] == "no-store"
    error = json.loads(body)["error"]
    assert (error["code"], error["request_id"]) == ("expectation_failed", headers["x-request-id"])
    assert MARKER.encode() not in body
    assert vendor.received == []


async def test_expect_handler_continues_or_marks(serve_app, pki):
    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"bad_expect": request.get(BAD_EXPECT, False), "length": len(body)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler, expect_handler=expect_handler)
    port = await serve_app(app)

    connector = aiohttp.TCPConnector(ssl=client_ssl(pki))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(f"https://127.0.0.1:{port}/x", data=b"hello", expect100=True) as response:
            assert await response.json() == {"bad_expect": False, "length": 5}

    async def raw(version: str, expect: str) -> dict[str, Any]:
        reader, writer = await tls(port, client_ssl(pki))
        try:
            head = f"POST /x HTTP/{version}\r\nHost: a\r\nExpect: {expect}\r\nContent-Length: 2\r\n\r\n"
            writer.write(head.encode() + b"hi")
            status, _, body = await read_response(reader)
        finally:
            writer.close()
        assert status == 200
        return json.loads(body)

    assert await raw("1.1", "100-continue") == {"bad_expect": False, "length": 2}
    assert await raw("1.1", "something-else") == {"bad_expect": True, "length": 2}
    assert await raw("1.0", "something-else") == {"bad_expect": False, "length": 2}


# -- file descriptors ------------------------------------------------------------------------


async def test_soft_open_file_limit_is_raised_at_start(make_gateway, vendor, caplog):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 2048:
        pytest.skip("needs a finite hard open-file limit of at least 2048")
    caplog.set_level(logging.INFO, logger="smsgw")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        await make_gateway(vendor.base_url)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert f"open-file limit raised from 1024 to {hard}" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_listener_admits_and_serves_on_uvloop_too(pki: dict[str, Path]) -> None:
    """Admission happens at accept, before the handshake, with loop APIs uvloop has as well: the
    caps hold and TLS requests are answered there as on asyncio's loop."""
    uvloop = pytest.importorskip("uvloop")

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"loop": type(asyncio.get_running_loop()).__module__})

    async def main() -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki["gateway_cert"], pki["gateway_key"])
        limits = ConnectionLimits(40, 2)
        policy = ConnectionPolicy(limits, 5.0, 5.0, 5.0, {"Strict-Transport-Security": HSTS})
        app = web.Application()
        app.router.add_get("/hello", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await GatedSite(runner, "127.0.0.1", 0, policy=policy, ssl_context=ctx, access_log=None).start()
            port = int(runner.addresses[0][1])
            connector = aiohttp.TCPConnector(ssl=client_ssl(pki), limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"https://127.0.0.1:{port}/hello") as response:
                    assert response.status == 200
                    assert (await response.json())["loop"].startswith("uvloop")
                # the session's connection is one of the two this address may hold
                held = await asyncio.open_connection("127.0.0.1", port)
                refused = await asyncio.open_connection("127.0.0.1", port)
                assert await asyncio.wait_for(refused[0].read(), BOUND) == b""  # closed at accept
                assert limits.refused == 1
                held[1].close()
                refused[1].close()
        finally:
            await runner.cleanup()

    uvloop.run(main())
