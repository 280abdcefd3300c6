"""HTTP abuse on raw sockets, over real TLS to a real gateway.

Framing that two HTTP parsers could read two ways (Content-Length with Transfer-Encoding, two
lengths, request smuggling), malformed chunked bodies, folded, over-long or too many headers,
control bytes in header values, heads and bodies that never finish. Each gets a 4xx or a closed
connection, never a 500, and nothing reaches the vendor; the answers carry the security headers
and none of the request's bytes; and the gateway keeps serving: a normal send succeeds after each.

The gateway runs on aiohttp's C parser (llhttp), which its wheels ship; the first test makes sure
that is the parser these tests exercise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp.http_parser
import aiohttp.web_protocol
import pytest

from gateway.transport.connections import MAX_HEAD_BYTES
from tests.conftest import CLIENT_PASSWORD, CLIENT_USER, Gateway, GatewayFactory, Recorder, basic, client_ssl
from tests.test_connections import close_all, eventually, parse_head, send_from, tls

HSTS = "max-age=31536000; includeSubDomains"
BOUND = 5.0
AUTH = basic(CLIENT_USER, CLIENT_PASSWORD)
MARKER = "abuse-marker-7c41e9"  # in every abusive request; never in an answer or a log
BODY = f"To=%2B37255512367&From=MyBank&Body={MARKER}".encode()
SMUGGLED = b"To=%2B12015550123&From=MyBank&Body=smuggled"  # a second request hidden in a body
FAST = {"server": {"header_timeout_s": 1, "keepalive_timeout_s": 0.2, "body_timeout_s": 1}}


def head(extra: str = "", *, method: str = "POST", target: str = "", version: str = "HTTP/1.1") -> bytes:
    """A send's request head with the client's credential, plus ``extra`` header lines."""
    target = target or f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
    return (
        f"{method} {target} {version}\r\nHost: gw\r\nAuthorization: {AUTH}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nX-Marker: {MARKER}\r\n{extra}\r\n"
    ).encode("latin-1")


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


N = len(BODY)
SMUGGLE = head(f"Content-Length: {len(SMUGGLED)}\r\n") + SMUGGLED

# Each: the bytes of one abusive request (or more), as one write.
ABUSE: dict[str, bytes] = {
    # Content-Length and Transfer-Encoding together, or a length given twice
    "cl-and-te": head(f"Content-Length: {N}\r\nTransfer-Encoding: chunked\r\n") + chunked(BODY),
    "te-and-cl": head(f"Transfer-Encoding: chunked\r\nContent-Length: {N}\r\n") + chunked(BODY),
    "cl-twice-same": head(f"Content-Length: {N}\r\nContent-Length: {N}\r\n") + BODY,
    "cl-twice-different": head(f"Content-Length: {N}\r\nContent-Length: {N + 1}\r\n") + BODY + b"x",
    "cl-list": head(f"Content-Length: {N}, {N}\r\n") + BODY,
    "cl-signed": head(f"Content-Length: +{N}\r\n") + BODY,
    "cl-negative": head("Content-Length: -1\r\n") + BODY,
    "te-twice": head("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") + chunked(BODY),
    "te-chunked-not-last": head("Transfer-Encoding: chunked, gzip\r\n") + chunked(BODY),
    "te-other-coding-first": head("Transfer-Encoding: gzip, chunked\r\n") + chunked(BODY),
    "te-unknown": head("Transfer-Encoding: xchunked\r\n") + BODY,
    "te-space-before-colon": head("Transfer-Encoding : chunked\r\n") + chunked(BODY),
    "te-vertical-tab": head("Transfer-Encoding:\x0bchunked\r\n") + chunked(BODY),
    # bad chunked encoding
    "chunk-size-not-hex": head("Transfer-Encoding: chunked\r\n") + b"zz\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk-size-0x": head("Transfer-Encoding: chunked\r\n")
    + f"0x{N:x}\r\n".encode()
    + BODY
    + b"\r\n0\r\n\r\n",
    "chunk-size-overflow": head("Transfer-Encoding: chunked\r\n")
    + b"f" * 20
    + b"\r\n"
    + BODY
    + b"\r\n0\r\n\r\n",
    "chunk-missing-crlf": head("Transfer-Encoding: chunked\r\n")
    + f"{N:x}\r\n".encode()
    + BODY
    + b"0\r\n\r\n",
    "chunk-bare-lf": head("Transfer-Encoding: chunked\r\n") + f"{N:x}\n".encode() + BODY + b"\n0\n\n",
    "chunk-bare-cr": head("Transfer-Encoding: chunked\r\n") + f"{N:x}\r".encode() + BODY + b"\r\n0\r\n\r\n",
    "chunk-trailer-too-long": head("Transfer-Encoding: chunked\r\n")
    + f"{N:x}\r\n".encode()
    + BODY
    + b"\r\n0\r\nX-Trailer: "
    + b"t" * 20_000
    + b"\r\n\r\n",
    # header folding, over-long lines, too many headers, too large a head
    "obs-fold": head(f"X-Folded: a\r\n {MARKER}\r\nContent-Length: {N}\r\n") + BODY,
    "obs-fold-content-length": head(f"Content-Length:\r\n {N}\r\n") + BODY,
    "obs-fold-transfer-encoding": head(f"Content-Length: {N}\r\nTransfer-Encoding: x\r\n chunked\r\n") + BODY,
    "header-line-too-long": head(f"X-Long: {'a' * 9000}\r\nContent-Length: {N}\r\n") + BODY,
    "header-name-too-long": head(f"X-{'a' * 9000}: a\r\nContent-Length: {N}\r\n") + BODY,
    "request-line-too-long": head(f"Content-Length: {N}\r\n", target=f"/x?{'a' * 9000}") + BODY,
    "too-many-headers": head("".join(f"X-H{i}: v\r\n" for i in range(200)) + f"Content-Length: {N}\r\n")
    + BODY,
    "head-too-large": head(
        "".join(f"X-H{i}: {'v' * 4000}\r\n" for i in range(40)) + f"Content-Length: {N}\r\n"
    )
    + BODY,
    # control bytes and bare line ends in header values, other malformed heads
    "nul-in-header-value": head(f"X-A: a\x00{MARKER}\r\nContent-Length: {N}\r\n") + BODY,
    "bare-cr-in-header-value": head(f"X-A: a\r{MARKER}\r\nContent-Length: {N}\r\n") + BODY,
    "bare-lf-in-header-value": head(f"X-A: a\nX-B: {MARKER}\r\nContent-Length: {N}\r\n") + BODY,
    "bare-lf-line-ends": (head(f"Content-Length: {N}\r\n") + BODY).replace(b"\r\n", b"\n"),
    "space-before-colon": head(f"Content-Length : {N}\r\n") + BODY,
    "no-host": (head(f"Content-Length: {N}\r\n") + BODY).replace(b"Host: gw\r\n", b""),
    "two-hosts": head(f"Host: other\r\nContent-Length: {N}\r\n") + BODY,
    "lower-case-method": head(f"Content-Length: {N}\r\n", method="post") + BODY,
    "http-1.2": head(f"Content-Length: {N}\r\n", version="HTTP/1.2") + BODY,
    "http-0.9": b"GET /x\r\n\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "absolute-form-target": head(
        f"Content-Length: {N}\r\n",
        target=f"https://evil.example/2010-04-01/Accounts/{CLIENT_USER}/Messages.json",
    )
    + BODY,
    # request smuggling: the second request must never reach the vendor
    "smuggle-cl-te": head(f"Content-Length: {5 + len(SMUGGLE)}\r\nTransfer-Encoding: chunked\r\n")
    + b"0\r\n\r\n"
    + SMUGGLE,
    "smuggle-te-cl": head("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n")
    + f"{len(SMUGGLE):x}\r\n".encode()
    + SMUGGLE
    + b"\r\n0\r\n\r\n",
    "smuggle-te-obfuscated": head(f"Content-Length: {4 + len(SMUGGLE)}\r\nTransfer-Encoding: chunked \r\n")
    + b"0\r\n\r\n"
    + SMUGGLE,
}


@dataclass
class Answer:
    raw: bytes
    closed: bool  # the server ended the connection within the bound

    def responses(self) -> list[tuple[int, dict[str, str], bytes]]:
        """Every response in the answer (Content-Length framed, as the gateway always answers)."""
        out, data = [], self.raw
        while data:
            top, sep, rest = data.partition(b"\r\n\r\n")
            assert sep, f"a partial response: {data[:200]!r}"
            status, headers = parse_head(top)
            size = int(headers["content-length"])
            out.append((status, headers, rest[:size]))
            data = rest[size:]
        return out


async def exchange(gw: Gateway, *parts: bytes, pause: float = 0.0) -> Answer:
    """Write ``parts`` (``pause`` apart, so each arrives in its own read), then read until the
    server closes or the bound runs out."""
    reader, writer = await tls(gw.running.public_port, client_ssl(gw.pki))
    raw = bytearray()
    closed = False
    try:
        for index, part in enumerate(parts):
            if index and pause:
                await asyncio.sleep(pause)
            writer.write(part)
            try:
                await asyncio.wait_for(writer.drain(), timeout=BOUND)
            except (ConnectionError, ssl.SSLError):
                break  # the server already gave up on this connection
        async with asyncio.timeout(BOUND):
            while chunk := await reader.read(65536):
                raw += chunk
        closed = True
    except (ConnectionError, ssl.SSLError):
        closed = True
    except TimeoutError:
        pass
    finally:
        writer.close()
    return Answer(bytes(raw), closed)


def assert_refused(
    answer: Answer, *, statuses: range = range(400, 500)
) -> list[tuple[int, dict[str, str], bytes]]:
    """A closed connection whose answers, if any, are gateway refusals that echo nothing."""
    assert answer.closed
    assert MARKER.encode() not in answer.raw
    assert b"37255512367" not in answer.raw
    responses = answer.responses()
    for status, headers, body in responses:
        assert status in statuses, (status, body)
        assert headers["strict-transport-security"] == HSTS
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        error = json.loads(body)["error"]
        assert error["request_id"] == headers["x-request-id"]
    return responses


async def assert_still_serving(gw: Gateway, recorder: Recorder) -> None:
    """A normal send goes through, and it is the only request the vendor ever saw."""
    assert await send_from(gw, "127.0.0.1") == 201
    assert len(recorder.seen) == 1
    assert recorder.seen[0].body == b"To=%2B37255512367&From=MyBank&Body=hello"


def assert_no_trace(gw: Gateway, text: str) -> None:
    for secret in (MARKER, CLIENT_PASSWORD, "37255512367", "12015550123"):
        assert secret not in text
        assert secret not in gw.logs()


async def start(make_gateway: GatewayFactory, vendors, **server: Any) -> tuple[Gateway, Recorder]:
    recorder = Recorder()
    vendor = await vendors(recorder)
    settings = {"server": {**FAST["server"], **server}}
    return await make_gateway(vendor.base_url, settings=settings), recorder


# --------------------------------------------------------------------------- the parser


def test_the_gateway_parses_requests_with_llhttp() -> None:
    # The pure-Python parser (AIOHTTP_NO_EXTENSIONS=1) accepts things llhttp refuses (HTTP/1.2,
    # lower-case methods): the cases below are only proven for the parser the gateway ships with.
    assert aiohttp.web_protocol.HttpRequestParser is not aiohttp.http_parser.HttpRequestParserPy


# --------------------------------------------------------------------------- one write, refused


@pytest.mark.parametrize("name", list(ABUSE))
async def test_abusive_request_is_refused_and_the_gateway_keeps_serving(
    make_gateway: GatewayFactory, vendors, capfd, caplog, name: str
) -> None:
    caplog.set_level(logging.DEBUG)
    gw, recorder = await start(make_gateway, vendors)
    answer = await exchange(gw, ABUSE[name])
    assert_refused(answer)
    assert recorder.seen == []
    await assert_still_serving(gw, recorder)
    out, err = capfd.readouterr()
    assert_no_trace(gw, out + err + caplog.text)
    assert all(record["status"] != 500 for record in gw.access())


async def test_plain_pipelining_is_not_smuggling(make_gateway: GatewayFactory, vendors) -> None:
    """The control for the smuggling cases: two well-framed requests are two checked sends."""
    gw, recorder = await start(make_gateway, vendors)
    answer = await exchange(gw, head(f"Content-Length: {N}\r\n") + BODY + SMUGGLE)
    assert [status for status, _, _ in answer.responses()] == [201, 201]
    assert [seen.body for seen in recorder.seen] == [BODY, SMUGGLED]
    assert len([r for r in gw.audit() if r["event"] == "request"]) == 2


# --------------------------------------------------------------------------- bodies that go wrong later


@pytest.mark.parametrize(
    "rest",
    [
        b"zz\r\n3725551\r\n0\r\n\r\n",  # a chunk size that is not hex
        b"7\r\n3725551XX0\r\n\r\n",  # a chunk without its CRLF
        b"0\r\nX-Trailer: " + b"t" * 20_000 + b"\r\n\r\n",  # a trailer over the line limit
    ],
    ids=["bad-size", "missing-crlf", "trailer-too-long"],
)
@pytest.mark.parametrize("parser", ["llhttp", "python"])
async def test_body_framing_that_breaks_after_the_head_is_a_400_at_once(
    make_gateway: GatewayFactory, vendors, monkeypatch, caplog, rest: bytes, parser: str
) -> None:
    """Before: llhttp's error left the request waiting for the body deadline (then 408), and the
    Python parser's made request.read() raise into a 500. The body deadline here is the default
    30 s, so an answer within the 5 s bound can only be the framing error's."""
    if parser == "python":
        monkeypatch.setattr(
            aiohttp.web_protocol, "HttpRequestParser", aiohttp.http_parser.HttpRequestParserPy
        )
    caplog.set_level(logging.DEBUG)
    gw, recorder = await start(make_gateway, vendors, body_timeout_s=30)
    first = head("Transfer-Encoding: chunked\r\n") + b"4\r\nTo=%\r\n"
    answer = await exchange(gw, first, b"2\r\n2B\r\n" + rest, pause=0.1)
    ((status, _, body),) = assert_refused(answer)
    assert (status, json.loads(body)["error"]["code"]) == (400, "bad_request")
    (record,) = gw.audit()
    assert (record["decision"], record["reason"], record["detail"]) == (
        "deny",
        "bad_request",
        "malformed_body",
    )
    assert recorder.seen == []
    assert "failed" not in caplog.text  # no internal error was logged
    await assert_still_serving(gw, recorder)


async def test_client_leaving_mid_body_is_a_400_not_an_internal_error(
    make_gateway: GatewayFactory, vendors, caplog
) -> None:
    """Before: the lost connection surfaced as an exception from request.read(): a 500
    ``internal_error`` in the access and audit logs and an ERROR line, once per client that
    hung up, which anyone could produce at will."""
    caplog.set_level(logging.DEBUG)
    gw, recorder = await start(make_gateway, vendors, body_timeout_s=30)
    for _ in range(3):
        _, writer = await tls(gw.running.public_port, client_ssl(gw.pki))
        writer.write(head(f"Content-Length: {N}\r\n") + BODY[:10])
        await writer.drain()
        await asyncio.sleep(0.2)  # let the gateway start reading the body
        writer.transport.abort()
    await eventually(lambda: len(gw.access()) == 3)
    assert {(r["status"], r["reason"]) for r in gw.access()} == {(400, "bad_request")}
    assert {(r["reason"], r["detail"]) for r in gw.audit()} == {("bad_request", "incomplete_body")}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert recorder.seen == []
    await assert_still_serving(gw, recorder)


# --------------------------------------------------------------------------- heads and framing without end


async def test_head_growing_without_end_is_cut_off_at_the_head_cap(
    make_gateway: GatewayFactory, vendors
) -> None:
    """Each line is under llhttp's line cap and there are fewer than its 128 lines, but together
    they pass MAX_HEAD_BYTES. Before: llhttp kept buffering (up to ~1 MiB per head) until the
    header deadline closed the connection without an answer."""
    gw, recorder = await start(make_gateway, vendors, header_timeout_s=30)
    line = f"X-Pad: {'p' * 4000}\r\n".encode()
    lines = MAX_HEAD_BYTES // len(line) + 4
    assert lines < 100
    parts = [head().removesuffix(b"\r\n"), *[line] * lines]
    answer = await exchange(gw, *parts, pause=0.01)
    ((status, _, body),) = assert_refused(answer)
    assert (status, json.loads(body)["error"]["code"]) == (400, "bad_request")
    await assert_still_serving(gw, recorder)


async def test_chunk_extensions_without_end_are_cut_off(make_gateway: GatewayFactory, vendors) -> None:
    """llhttp skips chunk extensions of any length without counting them as body. Before, a client
    could stream into one request until the body deadline; now a body may take at most
    2 * max_body_bytes + 64 KiB on the wire."""
    gw, recorder = await start(make_gateway, vendors, body_timeout_s=30, max_body_bytes=4096)
    parts = [head("Transfer-Encoding: chunked\r\n") + f"{N:x};ext=".encode()] + [b"e" * 32768] * 16  # 512 KiB
    parts.append(b"\r\n" + BODY + b"\r\n0\r\n\r\n")
    answer = await exchange(gw, *parts, pause=0.01)
    ((status, _, body),) = assert_refused(answer)
    assert (status, json.loads(body)["error"]["code"]) == (400, "bad_request")
    (record,) = gw.audit()
    assert (record["reason"], record["detail"]) == ("bad_request", "malformed_body")
    await assert_still_serving(gw, recorder)


async def test_many_small_chunks_within_the_framing_allowance_are_sent(
    make_gateway: GatewayFactory, vendors
) -> None:
    """The control: legal chunking with short extensions is read and sent as one body."""
    gw, recorder = await start(make_gateway, vendors)
    framed = b"".join(
        f"{len(BODY[i : i + 3]):x};n={i}\r\n".encode() + BODY[i : i + 3] + b"\r\n" for i in range(0, N, 3)
    )
    answer = await exchange(gw, head("Transfer-Encoding: chunked\r\n") + framed, b"0\r\n\r\n", pause=0.05)
    assert [status for status, _, _ in answer.responses()] == [201]
    assert [seen.body for seen in recorder.seen] == [BODY]


# --------------------------------------------------------------------------- stalled clients, bounded load


async def test_forty_stalled_clients_are_cut_off_while_real_sends_succeed(
    make_gateway: GatewayFactory, vendors, caplog
) -> None:
    """20 bodies that stop half way and 20 heads that stop half way, all at once from one address,
    while real sends go through from another; then every stalled connection is closed (the bodies
    with a 408 each), and every slot is given back."""
    caplog.set_level(logging.DEBUG)
    # keep-alive is long here: only the head and body deadlines may close these connections
    gw, recorder = await start(
        make_gateway,
        vendors,
        body_timeout_s=1,
        header_timeout_s=1,
        keepalive_timeout_s=30,
        max_connections_per_ip=45,
    )
    port, ctx = gw.running.public_port, client_ssl(gw.pki)
    half_body = head(f"Content-Length: {N}\r\n") + BODY[:10]
    stalled: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for index in range(40):
            reader, writer = await tls(port, ctx)
            stalled.append((reader, writer))
            writer.write(half_body if index % 2 else head().removesuffix(b"\r\n"))
            await asyncio.wait_for(writer.drain(), timeout=BOUND)
        await eventually(lambda: gw.running.connections.total >= 40)
        statuses = await asyncio.gather(*(send_from(gw, "127.0.0.2") for _ in range(5)))
        assert statuses == [201] * 5

        async def outcome(reader: asyncio.StreamReader) -> int | None:
            async with asyncio.timeout(BOUND):
                data = await reader.read()
            return parse_head(data.partition(b"\r\n\r\n")[0])[0] if data else None

        answers = await asyncio.gather(*(outcome(reader) for reader, _ in stalled))
    finally:
        await close_all([writer for _, writer in stalled])
    assert answers == [None, 408] * 20  # half heads: closed without an answer; half bodies: 408
    await eventually(lambda: gw.running.connections.total == 0)
    assert len(recorder.seen) == 5
    denied = [r for r in gw.audit() if r["event"] == "request" and r["decision"] == "deny"]
    assert len(denied) == 20
    assert {r["reason"] for r in denied} == {"body_timeout"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
