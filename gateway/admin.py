"""The admin listener: health and readiness, never on the public listener."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import GatewayError
from gateway.storage import StorageService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_admin_app(
    security_headers: dict[str, str], ready: Callable[[], bool], storage: StorageService | None = None
) -> web.Application:
    """``/readyz`` also pings the storage: ``"storage": "up"|"down"`` in its answer; a storage
    that is down makes the gateway not ready when ``on_error = "closed"`` (it would refuse
    every limited send), and stays a warning in the answer with ``"open"``."""

    @web.middleware
    async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            code = "route_not_found" if exc.status == 404 else "method_not_allowed"
            error = GatewayError(exc.status, code, exc.reason)
            response = web.json_response(
                {"error": {"code": error.code, "message": error.message, "request_id": request_id}},
                status=exc.status,
            )
        response.headers.update(security_headers)
        response.headers["X-Request-ID"] = request_id
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok = ready()
        answer: dict[str, str] = {}
        if storage is not None:
            up = await storage.check()
            answer["storage"] = "up" if up else "down"
            ok = ok and (up or storage.on_error == "open")
        answer = {"status": "ready" if ok else "not ready", **answer}
        return web.json_response(answer, status=200 if ok else 503)

    app = web.Application(middlewares=[headers_middleware])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
