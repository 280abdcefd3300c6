"""MessageBird Messages in the sandbox."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, json_doc, record, token_ok

__all__ = ["messagebird_messages"]


async def messagebird_messages(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not token_ok(request.headers.get("Authorization"), "AccessKey", state.auth_token):
        error = {"code": 2, "description": "Request not allowed (incorrect access_key)", "parameter": None}
        return web.json_response({"errors": [error]}, status=401)
    doc = json_doc(body) or {}
    ident = secrets.token_hex(16)
    raw = doc.get("recipients", "")
    numbers = raw.split(",") if isinstance(raw, str) else [str(n) for n in raw]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return web.json_response(
        {
            "id": ident,
            "href": f"https://rest.messagebird.com/messages/{ident}",
            "direction": "mt",
            "type": "sms",
            "originator": doc.get("originator"),
            "body": doc.get("body"),
            "createdDatetime": now,
            "recipients": {
                "totalCount": len(numbers),
                "totalSentCount": len(numbers),
                "totalDeliveredCount": 0,
                "totalDeliveryFailedCount": 0,
                "items": [
                    {"recipient": int(n.lstrip("+")), "status": "sent", "statusDatetime": now}
                    for n in numbers
                ],
            },
        },
        status=201,
    )
