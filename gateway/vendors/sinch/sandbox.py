"""Sinch batches in the sandbox."""

from __future__ import annotations

import secrets

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, json_doc, record, token_ok

__all__ = ["sinch_batches"]


async def sinch_batches(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not token_ok(request.headers.get("Authorization"), "Bearer", state.auth_token):
        return web.json_response({"code": "unauthorized", "text": "Unauthorized"}, status=401)
    doc = json_doc(body) or {}
    return web.json_response(
        {
            "id": secrets.token_hex(13).upper(),
            "to": doc.get("to"),
            "from": doc.get("from"),
            "canceled": False,
        },
        status=201,
    )
