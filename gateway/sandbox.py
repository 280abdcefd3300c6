"""A fake SMS vendor on loopback, for the demo and the tests.

It answers like the real vendors do: Twilio's Messages resource (form in, JSON out, 201 with an
``SM…`` sid, 400 with a Twilio error code, 401 for a wrong credential) and a generic JSON API
(``POST /v1/messages`` with a bearer token). It checks the credential it was given, so a demo or a
test shows that the gateway injected the vendor's credential and not the client's.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl

from aiohttp import web


@dataclass
class Received:
    """What the sandbox saw of one request, for tests to assert on."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SandboxState:
    account_sid: str
    auth_token: str
    bearer_token: str
    received: list[Received] = field(default_factory=list)


SANDBOX_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox.state")


def _twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


def _basic_ok(header: str | None, username: str, password: str) -> bool:
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return hmac.compare_digest((header or "").encode(), expected.encode())


async def _record(request: web.Request) -> bytes:
    body = await request.read()
    request.app[SANDBOX_KEY].received.append(
        Received(request.method, request.path, request.query_string, dict(request.headers), body)
    )
    return body


async def twilio_messages(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    account = request.match_info["account"]
    if not _basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return _twilio_error(401, 20003, "Authenticate")
    if account != state.account_sid:
        return _twilio_error(404, 20404, "The requested resource was not found")
    if not request.content_type == "application/x-www-form-urlencoded":
        return _twilio_error(400, 21601, "Content-Type must be application/x-www-form-urlencoded")
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    except ValueError:
        return _twilio_error(400, 21601, "The request body could not be parsed")
    to = form.get("To", "")
    if not to:
        return _twilio_error(400, 21604, "A 'To' phone number is required.")
    if not to.startswith("+"):
        return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    sender = form.get("From") or form.get("MessagingServiceSid")
    if not sender:
        return _twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
    text = form.get("Body", "")
    if not text and "MediaUrl" not in form and "ContentSid" not in form:
        return _twilio_error(400, 21602, "Message body is required.")
    sid = "SM" + secrets.token_hex(16)
    now = format_datetime(datetime.now(UTC), usegmt=True)
    return web.json_response(
        {
            "account_sid": state.account_sid,
            "api_version": "2010-04-01",
            "body": text,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "to": to,
            "uri": f"/2010-04-01/Accounts/{state.account_sid}/Messages/{sid}.json",
        },
        status=201,
    )


async def generic_messages(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
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


def build_sandbox_app(state: SandboxState) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SANDBOX_KEY] = state
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", twilio_messages)
    app.router.add_post("/v1/messages", generic_messages)
    return app
