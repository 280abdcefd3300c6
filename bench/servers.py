"""The benchmark's server processes, each started by ``bench/run.py`` as ``python -m bench.servers``.

``bare``: the reference a gateway is measured against — an aiohttp proxy that terminates TLS and
forwards method, path, headers and body through one pooled ``ClientSession``, nothing else.
``gateway``: ``smsgw serve -c CONFIG`` itself, run through the CLI; it only records which event
loop class each serving process runs on, so the report can show that both proxies ran on the same.
``vendor``: a minimal keep-alive HTTP/1.1 stand-in vendor, used only when nginx is missing.

Each process runs on uvloop when ``--uvloop`` is given, so the bare proxy and the gateway are
compared on the same loop (the bench passes it to both or to neither).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

#: Headers that describe one connection, not the message; a proxy must not copy them across.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

#: The Twilio-shaped answer every contender gets from the stand-in vendor (nginx serves the same).
VENDOR_SID = "AC" + "b2" * 16
MESSAGE_SID = "SM" + "5e" * 16
VENDOR_ANSWER = (
    '{"account_sid": "' + VENDOR_SID + '", "api_version": "2010-04-01", "body": "Your statement is ready",'
    ' "date_created": "Thu, 20 Nov 2025 10:00:00 +0000", "date_sent": null,'
    ' "date_updated": "Thu, 20 Nov 2025 10:00:00 +0000", "direction": "outbound-api",'
    ' "error_code": null, "error_message": null, "from": "MyBank", "messaging_service_sid": null,'
    ' "num_media": "0", "num_segments": "1", "price": null, "price_unit": "USD",'
    ' "sid": "' + MESSAGE_SID + '", "status": "queued", "to": "+37255510000",'
    ' "uri": "/2010-04-01/Accounts/' + VENDOR_SID + "/Messages/" + MESSAGE_SID + '.json"}'
)
VENDOR_PATH = re.compile(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$")


def run_loop(main: Callable[[], Awaitable[None]], use_uvloop: bool) -> None:
    """Run ``main`` on uvloop or on asyncio's default loop, as asked."""
    if use_uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


async def wait_for_stop() -> None:
    """Until SIGTERM or SIGINT: the bench stops every process it started this way."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# --------------------------------------------------------------------------- bare proxy


async def bare_proxy(port: int, cert: str, key: str, vendor_url: str) -> None:
    """TLS in, one pooled session out; forwards the request and the answer as they are."""
    import aiohttp
    from aiohttp import web
    from multidict import CIMultiDict
    from yarl import URL

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(cert, key)
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        async with session.request(
            request.method,
            URL(vendor_url + request.raw_path, encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
            out = CIMultiDict((k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP)
            return web.Response(status=answer.status, body=payload, headers=out)

    app = web.Application(client_max_size=65536)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls, backlog=1024).start()
    print("ready", loop_name(asyncio.get_running_loop()), flush=True)
    try:
        await wait_for_stop()
    finally:
        await runner.cleanup()
        await session.close()


# --------------------------------------------------------------------------- fallback vendor


async def python_vendor(port: int) -> None:
    """The nginx vendor's answers from asyncio: keep-alive HTTP/1.1, Content-Length bodies only."""
    body = VENDOR_ANSWER.encode()
    created = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                if length:
                    await reader.readexactly(length)
                ok = method == "POST" and VENDOR_PATH.match(target.split("?", 1)[0])
                writer.write(created if ok else missing)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", port, backlog=1024)
    print("ready", loop_name(asyncio.get_running_loop()), flush=True)
    async with server:
        await wait_for_stop()


# --------------------------------------------------------------------------- gateway


def gateway(config: str, loop_report: str, use_uvloop: bool) -> int:
    """``smsgw serve -c CONFIG``; each process that starts serving appends its pid and loop class
    to ``loop_report`` (with ``server.workers > 1`` every forked worker does)."""
    import gateway.server.main as server
    from gateway.commands.cli import main

    if use_uvloop:
        import uvloop

        # ``smsgw serve`` calls asyncio.run() (in each worker too): the policy decides its loop.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    original = server.start

    def report(loop: asyncio.AbstractEventLoop) -> None:  # once per process, before it listens
        with Path(loop_report).open("a") as out:
            out.write(f"{os.getpid()} {loop_name(loop)}\n")

    async def start(*args: Any, **kwargs: Any) -> Any:
        report(asyncio.get_running_loop())
        return await original(*args, **kwargs)

    server.start = start
    return main(["serve", "-c", config])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    sub = parser.add_subparsers(dest="mode", required=True)
    bare = sub.add_parser("bare")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--cert", required=True)
    bare.add_argument("--key", required=True)
    bare.add_argument("--vendor", required=True, help="http://127.0.0.1:PORT")
    vendor = sub.add_parser("vendor")
    vendor.add_argument("--port", type=int, required=True)
    gw = sub.add_parser("gateway")
    gw.add_argument("--config", required=True)
    gw.add_argument("--loop-report", required=True)
    for p in (bare, vendor, gw):
        p.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "bare":
        run_loop(lambda: bare_proxy(args.port, args.cert, args.key, args.vendor), args.uvloop)
    elif args.mode == "vendor":
        run_loop(lambda: python_vendor(args.port), args.uvloop)
    else:
        return gateway(args.config, args.loop_report, args.uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
