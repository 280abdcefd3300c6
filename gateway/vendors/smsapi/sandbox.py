"""SMSAPI ``sms.do`` in the sandbox."""

from __future__ import annotations

import secrets

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, form_of, record, token_ok

__all__ = ["smsapi_send"]


async def smsapi_send(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not token_ok(request.headers.get("Authorization"), "Bearer", state.auth_token):
        return web.json_response({"error": 101, "message": "Authorization failed"}, status=401)
    form = form_of(body) or {}
    numbers = [n for n in form.get("to", "").split(",") if n]
    items = [{"id": secrets.token_hex(12), "points": 0.16, "number": n, "status": "QUEUE"} for n in numbers]
    return web.json_response({"count": len(items), "list": items})
