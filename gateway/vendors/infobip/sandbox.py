"""Infobip SMS (v3 and the older v2 advanced) in the sandbox."""

from __future__ import annotations

import secrets

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, json_doc, record, token_ok

__all__ = ["infobip_sms"]


async def infobip_sms(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not token_ok(request.headers.get("Authorization"), "App", state.auth_token):
        error = {"messageId": "UNAUTHORIZED", "text": "Invalid login details"}
        return web.json_response({"requestError": {"serviceException": error}}, status=401)
    doc = json_doc(body) or {}
    out = []
    for message in doc.get("messages") or []:
        for dest in message.get("destinations") or []:
            out.append(
                {
                    "messageId": secrets.token_hex(10),
                    "status": {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED"},
                    "destination": dest.get("to"),
                }
            )
    return web.json_response({"bulkId": secrets.token_hex(10), "messages": out})
