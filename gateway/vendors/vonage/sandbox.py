"""Vonage SMS and Messages in the sandbox."""

from __future__ import annotations

import uuid

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, basic_ok, form_of, json_doc, record

__all__ = ["vonage_messages", "vonage_sms"]


async def vonage_sms(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return web.json_response(
            {"message-count": "1", "messages": [{"status": "4", "error-text": "Bad Credentials"}]}
        )
    form = form_of(body) or {}
    return web.json_response(
        {
            "message-count": "1",
            "messages": [
                {
                    "to": form.get("to", ""),
                    "message-id": str(uuid.uuid4()),
                    "status": "0",
                    "remaining-balance": "10.00",
                    "message-price": "0.03",
                    "network": "12345",
                }
            ],
        }
    )


async def vonage_messages(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return web.json_response({"title": "Unauthorized", "type": "about:blank"}, status=401)
    doc = json_doc(body)
    if doc is None or "to" not in doc:
        return web.json_response({"title": "Bad Request", "type": "about:blank"}, status=422)
    return web.json_response({"message_uuid": str(uuid.uuid4())}, status=202)
