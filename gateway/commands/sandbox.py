"""A fake SMS vendor on loopback, for the demo and the tests.

It answers like the real vendors do, in each one's shape (each vendor package's ``sandbox.py``:
Twilio's Messages and Verify, Vonage SMS and Messages, Messente legacy and Omnimessage, Plivo,
Sinch, Infobip, SMSAPI, MessageBird, AWS SNS ``Publish``, and a generic JSON API). It checks the
credential it was given, so a demo or a test shows that the gateway injected the vendor's
credential and not the client's: every vendor but the generic one uses ``account_sid``/``auth_token``
as its username and password (Basic, query, SigV4 access key and secret) or ``auth_token`` as its
token (Bearer, App, AccessKey).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Iterable

from aiohttp import web

from gateway.vendors import SANDBOX
from gateway.vendors.base import Handler, SandboxRoute
from gateway.vendors.standin import SANDBOX_KEY, SandboxState

__all__ = ["SandboxState", "build_sandbox_app", "run_sandbox"]


def _shared(routes: list[SandboxRoute]) -> Handler:
    """One path several vendors serve: the first that accepts the request answers it."""
    choosy = [r for r in routes if r.accepts is not None]
    rest = [r.handler for r in routes if r.accepts is None]
    if len(rest) > 1:
        raise ValueError(f"{routes[0].method} {routes[0].path}: two sandbox routes accept every request")

    async def handler(request: web.Request) -> web.StreamResponse:
        for route in choosy:
            if route.accepts is not None and route.accepts(request):
                return await route.handler(request)
        if not rest:
            raise web.HTTPNotFound()
        return await rest[0](request)

    return handler


def build_sandbox_app(state: SandboxState, routes: Iterable[SandboxRoute] = SANDBOX) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SANDBOX_KEY] = state
    by_path: dict[tuple[str, str], list[SandboxRoute]] = {}
    for route in routes:
        by_path.setdefault((route.method, route.path), []).append(route)
    for (method, path), found in by_path.items():
        only = found[0].handler if len(found) == 1 and found[0].accepts is None else _shared(found)
        app.router.add_route(method, path, only)
    return app


async def run_sandbox(
    listen: str,
    account_sid: str,
    auth_token: str,
    cert_file: str | None = None,
    key_file: str | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """``smsgw sandbox``: serve until SIGTERM or SIGINT, over HTTPS when given a certificate
    (a gateway reaches a vendor that is not on loopback over https only). The auth token is
    also the bearer token."""
    from gateway.config import parse_listen

    state = SandboxState(account_sid, auth_token, auth_token)
    runner = web.AppRunner(build_sandbox_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    context = None
    if cert_file and key_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
    host, port = parse_listen(listen)
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        bound = runner.addresses[0][1]
        logging.getLogger("smsgw").info(
            "sandbox vendor listening on %s://%s:%d", "https" if context else "http", host, bound
        )
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()
