"""Messente legacy ``send_sms`` (credential in the query) and Omnimessage in the sandbox."""

from __future__ import annotations

import secrets
import uuid

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, basic_ok, json_doc, record

__all__ = ["messente_omnimessage", "messente_send_sms"]


async def messente_send_sms(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    await record(request)
    query = request.query
    if query.getall("username", []) != [state.account_sid] or query.getall("password", []) != [
        state.auth_token
    ]:
        return web.Response(text="ERROR 101")
    return web.Response(text="OK " + secrets.token_hex(12))


async def messente_omnimessage(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return web.json_response({"errors": [{"code": "105", "title": "Unauthorized"}]}, status=401)
    doc = json_doc(body)
    if doc is None or not isinstance(doc.get("messages"), list):
        return web.json_response({"errors": [{"code": "101", "title": "Invalid data"}]}, status=400)
    return web.json_response(
        {
            "messages": [
                {
                    "channel": m.get("channel", "sms"),
                    "message_id": str(uuid.uuid4()),
                    "sender": m.get("sender"),
                }
                for m in doc["messages"]
                if isinstance(m, dict)
            ],
            "to": doc.get("to"),
            "omnimessage_id": str(uuid.uuid4()),
        },
        status=201,
    )
