"""The admin listener: health, readiness and metrics, never on the public listener."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.core.errors import Reason
from gateway.core.oplog import new_request_id
from gateway.storage.service import StorageService
from gateway.transport.handler import error_answer

if TYPE_CHECKING:
    from gateway.server.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _headers_middleware(security_headers: dict[str, str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every admin answer carries the security headers and a request id; an unknown path or
    method gets the gateway's JSON error shape, not aiohttp's page."""

    @web.middleware
    async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            code = Reason.ROUTE_NOT_FOUND if exc.status == 404 else Reason.METHOD_NOT_ALLOWED
            return error_answer(exc.status, code, exc.reason, security_headers)
        response.headers.update(security_headers)
        response.headers["X-Request-ID"] = new_request_id()
        return response

    return headers_middleware


def _scrape(metrics: Metrics) -> Handler:
    async def scrape(_: web.Request) -> web.Response:
        from gateway.server.metrics import CONTENT_TYPE

        metrics.flush()
        if metrics.multiprocess_dir is None:
            body = metrics.exposition()
        else:  # every worker's files are read
            body = await asyncio.to_thread(metrics.exposition)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    return scrape


def build_admin_app(
    security_headers: dict[str, str],
    ready: Callable[[], bool],
    storage: StorageService | None = None,
    info: Callable[[], Mapping[str, object]] | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """``/readyz`` also pings the storage: ``"storage": "up"|"down"`` in its answer; a storage
    that is down makes the gateway not ready when ``on_error = "closed"`` (it would refuse
    every limited send), and stays a warning in the answer with ``"open"``. ``info`` adds the
    config in force (generation and hash). ``/metrics`` is the Prometheus text format."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok = ready()
        answer: dict[str, object] = {}
        if storage is not None:
            up = await storage.check()
            answer["storage"] = "up" if up else "down"
            ok = ok and (up or storage.on_error == "open")
        if info is not None:
            answer.update(info())
        answer = {"status": "ready" if ok else "not ready", **answer}
        return web.json_response(answer, status=200 if ok else 503)

    app = web.Application(middlewares=[_headers_middleware(security_headers)])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        app.router.add_get("/metrics", _scrape(metrics))
    return app
