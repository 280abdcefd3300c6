"""Twilio in the sandbox: Messages (form in, JSON out, 201 with an ``SM…`` sid, 400 with a
Twilio error code, 401 for a wrong credential) and Verify.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl

from aiohttp import web

from gateway.vendors.standin import SANDBOX_KEY, basic_ok, form_of, record

__all__ = ["twilio_messages", "twilio_verify"]


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


async def twilio_messages(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    account = request.match_info["account"]
    if not basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
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


async def twilio_verify(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await record(request)
    if not basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return _twilio_error(401, 20003, "Authenticate")
    form = form_of(body)
    if form is None or not (form.get("To") or form.get("VerificationSid")):
        return _twilio_error(400, 60200, "Invalid parameter")
    checking = request.path.endswith("/VerificationCheck")
    if checking and not form.get("Code"):
        return _twilio_error(400, 60200, "Invalid parameter: Code")
    return web.json_response(
        {
            "sid": "VE" + secrets.token_hex(16),
            "service_sid": request.match_info["service"],
            "account_sid": state.account_sid,
            "to": form.get("To"),
            "channel": form.get("Channel", "sms"),
            "status": "approved" if checking else "pending",
            "valid": checking,
        },
        status=200 if checking else 201,
    )
