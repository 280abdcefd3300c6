"""A generic JSON API in the sandbox: ``POST /v1/messages`` with a bearer token."""

from __future__ import annotations

import hmac
import json
import secrets

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, record

__all__ = ["generic_messages"]


async def generic_messages(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    expected = f"Bearer {state.bearer_token}".encode()
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
        return web.json_response({"error": "unauthorized"}, status=401)
    try:
        doc = json.loads(body)
    except ValueError:
        return web.json_response({"error": "invalid JSON"}, status=400)
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("to"), str)
        or not isinstance(doc.get("text"), str)
    ):
        return web.json_response({"error": "'to' and 'text' are required strings"}, status=400)
    return web.json_response({"message_id": secrets.token_hex(12), "status": "accepted"}, status=201)
