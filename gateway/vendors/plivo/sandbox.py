"""Plivo Message in the sandbox."""

from __future__ import annotations

import uuid

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, basic_ok, json_doc, record

__all__ = ["plivo_message"]


async def plivo_message(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return web.json_response({"api_id": str(uuid.uuid4()), "error": "authentication failed"}, status=401)
    if request.match_info["auth_id"] != state.account_sid:
        return web.json_response({"api_id": str(uuid.uuid4()), "error": "not found"}, status=404)
    doc = json_doc(body) or {}
    count = len(str(doc.get("dst", "")).split("<"))
    return web.json_response(
        {
            "api_id": str(uuid.uuid4()),
            "message": "message(s) queued",
            "message_uuid": [str(uuid.uuid4()) for _ in range(count)],
        },
        status=202,
    )
