"""A fake SMS vendor on loopback, for the demo and the tests.

It answers like the real vendors do, in each one's shape: Twilio's Messages and Verify resources
(form in, JSON out, 201 with an ``SM…`` sid, 400 with a Twilio error code, 401 for a wrong
credential), Vonage SMS and Messages, Messente legacy and Omnimessage, Plivo, Sinch, Infobip,
SMSAPI, MessageBird, AWS SNS ``Publish`` (SigV4-signed, XML answer), and a generic JSON API
(``POST /v1/messages`` with a bearer token). It checks the credential it was given, so a demo or
a test shows that the gateway injected the vendor's credential and not the client's: every vendor
but the generic one uses ``account_sid``/``auth_token`` as its username and password (Basic,
query, SigV4 access key and secret) or ``auth_token`` as its token (Bearer, App, AccessKey).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import secrets
import signal
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Final
from urllib.parse import parse_qsl

from aiohttp import web

from gateway.messages.slots import SigV4Slot


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
    if request.headers.get("Authorization", "").startswith("Basic "):
        return await vonage_messages(request)
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


# --------------------------------------------------------------------------- other vendors


def _token_ok(header: str | None, scheme: str, token: str) -> bool:
    return hmac.compare_digest((header or "").encode(), f"{scheme} {token}".encode())


def _json_doc(body: bytes) -> dict | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _form(body: bytes) -> dict[str, str] | None:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
    except (ValueError, UnicodeDecodeError):
        return None


async def twilio_verify(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    if not _basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return _twilio_error(401, 20003, "Authenticate")
    form = _form(body)
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


async def vonage_sms(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    if not _basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return web.json_response(
            {"message-count": "1", "messages": [{"status": "4", "error-text": "Bad Credentials"}]}
        )
    form = _form(body) or {}
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
    body = await _record(request)
    if not _basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return web.json_response({"title": "Unauthorized", "type": "about:blank"}, status=401)
    doc = _json_doc(body)
    if doc is None or "to" not in doc:
        return web.json_response({"title": "Bad Request", "type": "about:blank"}, status=422)
    return web.json_response({"message_uuid": str(uuid.uuid4())}, status=202)


async def messente_send_sms(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    await _record(request)
    query = request.query
    if query.getall("username", []) != [state.account_sid] or query.getall("password", []) != [
        state.auth_token
    ]:
        return web.Response(text="ERROR 101")
    return web.Response(text="OK " + secrets.token_hex(12))


async def messente_omnimessage(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    if not _basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return web.json_response({"errors": [{"code": "105", "title": "Unauthorized"}]}, status=401)
    doc = _json_doc(body)
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


async def plivo_message(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    if not _basic_ok(request.headers.get("Authorization"), state.account_sid, state.auth_token):
        return web.json_response({"api_id": str(uuid.uuid4()), "error": "authentication failed"}, status=401)
    if request.match_info["auth_id"] != state.account_sid:
        return web.json_response({"api_id": str(uuid.uuid4()), "error": "not found"}, status=404)
    doc = _json_doc(body) or {}
    count = len(str(doc.get("dst", "")).split("<"))
    return web.json_response(
        {
            "api_id": str(uuid.uuid4()),
            "message": "message(s) queued",
            "message_uuid": [str(uuid.uuid4()) for _ in range(count)],
        },
        status=202,
    )


async def sinch_batches(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    if not _token_ok(request.headers.get("Authorization"), "Bearer", state.auth_token):
        return web.json_response({"code": "unauthorized", "text": "Unauthorized"}, status=401)
    doc = _json_doc(body) or {}
    return web.json_response(
        {
            "id": secrets.token_hex(13).upper(),
            "to": doc.get("to"),
            "from": doc.get("from"),
            "canceled": False,
        },
        status=201,
    )


async def infobip_sms(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    if not _token_ok(request.headers.get("Authorization"), "App", state.auth_token):
        error = {"messageId": "UNAUTHORIZED", "text": "Invalid login details"}
        return web.json_response({"requestError": {"serviceException": error}}, status=401)
    doc = _json_doc(body) or {}
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


async def smsapi_send(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    if not _token_ok(request.headers.get("Authorization"), "Bearer", state.auth_token):
        return web.json_response({"error": 101, "message": "Authorization failed"}, status=401)
    form = _form(body) or {}
    numbers = [n for n in form.get("to", "").split(",") if n]
    items = [{"id": secrets.token_hex(12), "points": 0.16, "number": n, "status": "QUEUE"} for n in numbers]
    return web.json_response({"count": len(items), "list": items})


async def messagebird_messages(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    if not _token_ok(request.headers.get("Authorization"), "AccessKey", state.auth_token):
        error = {"code": 2, "description": "Request not allowed (incorrect access_key)", "parameter": None}
        return web.json_response({"errors": [error]}, status=401)
    doc = _json_doc(body) or {}
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


_SNS_SIGNATURE: Final = SigV4Slot("sns")


async def sns_publish(request: web.Request) -> web.Response:
    state = request.app[SANDBOX_KEY]
    body = await _record(request)
    presented = _SNS_SIGNATURE.read(request, body) if _SNS_SIGNATURE.present(request) else None
    if (
        presented is None
        or presented.username != state.account_sid
        or presented.verify is None
        or not presented.verify(state.auth_token)
    ):
        error = "<Code>SignatureDoesNotMatch</Code><Message>The request signature does not match</Message>"
        return web.Response(
            text=f"<ErrorResponse><Error><Type>Sender</Type>{error}</Error></ErrorResponse>",
            status=403,
            content_type="text/xml",
        )
    form = _form(body) or {}
    if form.get("Action") != "Publish":
        return web.Response(text="<ErrorResponse/>", status=400, content_type="text/xml")
    ident = str(uuid.uuid4())
    return web.Response(
        text=(
            '<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<PublishResult><MessageId>{ident}</MessageId></PublishResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</PublishResponse>"
        ),
        content_type="text/xml",
    )


def build_sandbox_app(state: SandboxState) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SANDBOX_KEY] = state
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", twilio_messages)
    app.router.add_post("/v1/messages", generic_messages)  # Bearer: generic; Basic: Vonage Messages
    app.router.add_post("/v2/Services/{service}/Verifications", twilio_verify)
    app.router.add_post("/v2/Services/{service}/VerificationCheck", twilio_verify)
    app.router.add_post("/sms/json", vonage_sms)
    app.router.add_route("GET", "/send_sms/", messente_send_sms)
    app.router.add_post("/send_sms/", messente_send_sms)
    app.router.add_post("/v1/omnimessage", messente_omnimessage)
    app.router.add_post("/v1/Account/{auth_id}/Message/", plivo_message)
    app.router.add_post("/xms/v1/{plan}/batches", sinch_batches)
    app.router.add_post("/sms/3/messages", infobip_sms)
    app.router.add_post("/sms/2/text/advanced", infobip_sms)
    app.router.add_post("/sms.do", smsapi_send)
    app.router.add_post("/messages", messagebird_messages)
    app.router.add_post("/", sns_publish)
    return app


async def run_sandbox(
    listen: str,
    account_sid: str,
    auth_token: str,
    cert_file: str | None = None,
    key_file: str | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """``smsgw sandbox``: serve until SIGTERM or SIGINT, over HTTPS when given a certificate
    (a gateway reaches a vendor that is not on loopback over https only). The auth token is
    also the bearer token."""
    from gateway.config import parse_listen

    state = SandboxState(account_sid, auth_token, auth_token)
    runner = web.AppRunner(build_sandbox_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    context = None
    if cert_file and key_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
    host, port = parse_listen(listen)
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        bound = runner.addresses[0][1]
        logging.getLogger("smsgw").info(
            "sandbox vendor listening on %s://%s:%d", "https" if context else "http", host, bound
        )
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()
