"""Signed vendor callbacks end to end: vendor -> gateway -> a real internal service on loopback.

Each vendor's callback is signed here the way the vendor signs it (with the official SDK's own
signing code where it has one), sent to a gateway started from TOML, and must reach the internal
service unchanged, once; a tampered one must be refused (401) with nothing forwarded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jwt as pyjwt
import pytest
from aiohttp import web
from yarl import URL

from gateway.recipients.phone import parse_recipient
from gateway.server.config import ConfigError, load_config
from gateway.storage.service import StorageUnavailable
from tests.conftest import (
    DEFAULT_POLICY,
    HASH_KEY,
    VENDOR_TOKEN,
    Gateway,
    GatewayFactory,
    Recorder,
    Vendor,
    client_ssl,
    error_of,
    free_port,
    raw_exchange,
    start_vendor,
    write_config,
)

PUBLIC = "https://sms-gw.example.com"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
SCHEMES = ("twilio", "vonage", "vonage-jwt", "plivo", "plivo-v3", "sinch", "messagebird", "messente", "hmac")
ENV = {name: f"SMSGW_TEST_WEBHOOK_{name.upper().replace('-', '_')}" for name in SCHEMES}


def fresh_number() -> str:
    """A valid Estonian mobile number nobody else in this run uses."""
    while True:
        candidate = "+3725" + "".join(secrets.choice("0123456789") for _ in range(7))
        try:
            if parse_recipient(candidate).e164 == candidate:
                return candidate
        except Exception:  # noqa: S112 - not a valid number, draw again
            continue


@dataclass(frozen=True)
class Markers:
    """What a callback carries that must never reach a log in clear."""

    to: str = field(default_factory=fresh_number)
    sender: str = field(default_factory=fresh_number)
    text: str = field(default_factory=lambda: "canary-" + uuid.uuid4().hex)
    message_id: str = field(default_factory=lambda: "SM" + secrets.token_hex(16))

    def forbidden(self) -> dict[str, str]:
        return {
            "to": self.to,
            "to digits": self.to[1:],
            "to url-encoded": quote(self.to, safe=""),
            "sender": self.sender,
            "sender digits": self.sender[1:],
            "text": self.text,
        }


def assert_no_marker(where: str, text: str, markers: Markers) -> None:
    for what, value in markers.forbidden().items():
        assert value not in text, f"{what} leaked into {where}"


# --------------------------------------------------------------------------- signing like the vendors


@dataclass(frozen=True)
class Callback:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]
    body: bytes = b""


def _b64_hmac(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


class Signer:
    """Makes each vendor's callback for a message, signed with that vendor's secret."""

    def __init__(self, secrets_by_scheme: dict[str, str]) -> None:
        self.secret = secrets_by_scheme

    def make(self, scheme: str, m: Markers, status: str = "delivered", now: float | None = None) -> Callback:
        return getattr(self, scheme.replace("-", "_"))(
            m, status, int(now if now is not None else time.time())
        )

    def twilio(self, m: Markers, status: str, now: int) -> Callback:
        from twilio.request_validator import RequestValidator

        path = "/callbacks/twilio/status"
        fields = {
            "MessageSid": m.message_id,
            "MessageStatus": status,
            "To": m.to,
            "From": m.sender,
            "Body": m.text,
        }
        sig = RequestValidator(self.secret["twilio"]).compute_signature(PUBLIC + path, fields)
        return Callback(
            "POST", path, {"X-Twilio-Signature": sig, "Content-Type": FORM}, urlencode(fields).encode()
        )

    def vonage(self, m: Markers, status: str, now: int) -> Callback:
        from vonage_http_client.auth import Auth

        params = {
            "msisdn": m.to[1:],
            "to": m.sender[1:],
            "messageId": m.message_id,
            "status": status,
            "text": m.text,
            "timestamp": str(now),
            "nonce": str(uuid.uuid4()),
        }
        auth = Auth(api_key="abcd1234", signature_secret=self.secret["vonage"], signature_method="sha256")
        params["sig"] = auth.sign_params(dict(params))
        return Callback("GET", "/callbacks/vonage?" + urlencode(params), {})

    def vonage_jwt(self, m: Markers, status: str, now: int) -> Callback:
        body = json.dumps(
            {"message_uuid": m.message_id, "to": m.to, "from": m.sender, "status": status}
        ).encode()
        claims = {
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "payload_hash": hashlib.sha256(body).hexdigest(),
            "api_key": "abcd1234",
        }
        token = pyjwt.encode(claims, self.secret["vonage-jwt"], algorithm="HS256")
        return Callback(
            "POST",
            "/callbacks/vonage-messages",
            {"Authorization": f"Bearer {token}", "Content-Type": JSON},
            body,
        )

    def plivo(self, m: Markers, status: str, now: int) -> Callback:
        path = "/callbacks/plivo"
        nonce = str(secrets.randbits(64))
        fields = {
            "MessageUUID": m.message_id,
            "Status": status,
            "To": m.to[1:],
            "From": m.sender[1:],
            "Text": m.text,
        }
        headers = {
            "X-Plivo-Signature-V2": _b64_hmac(self.secret["plivo"], (PUBLIC + path + nonce).encode()),
            "X-Plivo-Signature-V2-Nonce": nonce,
            "Content-Type": FORM,
        }
        return Callback("POST", path, headers, urlencode(fields).encode())

    def plivo_v3(self, m: Markers, status: str, now: int) -> Callback:
        from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

        path = "/callbacks/plivo-v3?app=sms"
        nonce = str(secrets.randbits(64))
        fields = {
            "MessageUUID": m.message_id,
            "Status": status,
            "To": m.to[1:],
            "From": m.sender[1:],
            "Text": m.text,
        }
        base = construct_post_url(PUBLIC + path, dict(fields)).decode()
        sig = get_signature_v3(self.secret["plivo-v3"], base, nonce).decode()
        headers = {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": nonce, "Content-Type": FORM}
        return Callback("POST", path, headers, urlencode(fields).encode())

    def sinch(self, m: Markers, status: str, now: int) -> Callback:
        from sinch.domains.authentication.sinch_events.v1.authentication_validation import (
            calculate_sinch_event_signature,
            compute_signed_data,
        )

        doc = {
            "type": "recipient_delivery_report_sms",
            "batch_id": m.message_id,
            "recipient": m.to[1:],
            "status": status,
        }
        body = json.dumps(doc)
        nonce = secrets.token_hex(13).upper()
        sig = calculate_sinch_event_signature(
            compute_signed_data(body, nonce, str(now)), self.secret["sinch"]
        )
        headers = {
            "x-sinch-webhook-signature": sig,
            "x-sinch-webhook-signature-algorithm": "HmacSHA256",
            "x-sinch-webhook-signature-nonce": nonce,
            "x-sinch-webhook-signature-timestamp": str(now),
            "Content-Type": JSON,
        }
        return Callback("POST", "/callbacks/sinch", headers, body.encode())

    def messagebird(self, m: Markers, status: str, now: int) -> Callback:
        query = urlencode(
            {
                "id": m.message_id,
                "recipient": m.to[1:],
                "status": status,
                "statusDatetime": "2026-01-01T00:00:00+00:00",
            }
        )
        target = "/callbacks/messagebird?" + query
        claims = {
            "iss": "MessageBird",
            "nbf": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
            "url_hash": hashlib.sha256((PUBLIC + target).encode()).hexdigest(),
        }
        token = pyjwt.encode(claims, self.secret["messagebird"], algorithm="HS256")
        return Callback("GET", target, {"MessageBird-Signature-JWT": token})

    def messente(self, m: Markers, status: str, now: int) -> Callback:
        body = json.dumps(
            {"message_id": m.message_id, "status": status, "to": m.to, "sender": m.sender, "channel": "sms"}
        ).encode()
        sig = hmac.new(self.secret["messente"].encode(), body, hashlib.sha256).hexdigest()
        return Callback(
            "POST", "/callbacks/messente", {"X-Messente-Signature": sig, "Content-Type": JSON}, body
        )

    def hmac(self, m: Markers, status: str, now: int) -> Callback:
        body = json.dumps(
            {"event": {"id": m.message_id, "state": status}, "to": m.to, "text": m.text}
        ).encode()
        sig = "sha256=" + _b64_hmac(self.secret["hmac"], body)
        return Callback("POST", "/callbacks/relay", {"X-Relay-Signature": sig, "Content-Type": JSON}, body)


def tamper(cb: Callback) -> Callback:
    """The same callback with one character of its content changed (the body, or the query of a GET)."""
    if cb.body:
        return replace(cb, body=cb.body.replace(b"delivered", b"deliverex"))
    return replace(cb, target=cb.target.replace("delivered", "deliverex"))


def unsigned(cb: Callback) -> Callback:
    """The callback without its signature (headers, or Vonage's ``sig`` in the query)."""
    path, _, query = cb.target.partition("?")
    kept = "&".join(part for part in query.split("&") if part and not part.startswith("sig="))
    headers = {k: v for k, v in cb.headers.items() if k.lower() == "content-type"}
    return replace(cb, target=path + (f"?{kept}" if kept else ""), headers=headers)


def webhook_routes(internal: str, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    def route(name: str, path: str, signature: str, **keys: Any) -> dict[str, Any]:
        doc = {
            "name": name,
            "path": path,
            "kind": "webhook",
            "signature": signature,
            "forward_to": f"{internal}/events/{name}",
            **keys,
        }
        if signature != "twilio":  # twilio: the vendor credential (the Auth Token) signs
            doc["signing_secret"] = f"env:{ENV[signature]}"
        for key, value in extra.get(name, {}).items():
            doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
        return doc

    return [
        route("twilio", "/callbacks/twilio/status", "twilio"),
        route(
            "vonage",
            "/callbacks/vonage",
            "vonage",
            methods=["GET", "POST"],
            webhook={"algorithm": "hmac-sha256"},
        ),
        route("vonage-jwt", "/callbacks/vonage-messages", "vonage-jwt"),
        route("plivo", "/callbacks/plivo", "plivo"),
        route("plivo-v3", "/callbacks/plivo-v3", "plivo-v3"),
        route("sinch", "/callbacks/sinch", "sinch"),
        route("messagebird", "/callbacks/messagebird", "messagebird", methods=["GET"]),
        route("messente", "/callbacks/messente", "messente"),
        route(
            "hmac",
            "/callbacks/relay",
            "hmac",
            webhook={
                "header": "X-Relay-Signature",
                "encoding": "base64",
                "prefix": "sha256=",
                "message_id": "/event/id",
                "status": "/event/state",
            },
        ),
    ]


def answer_ok() -> Recorder:
    async def behaviour(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=200, text="<Response/>", content_type="application/xml")

    return Recorder(behaviour)


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch) -> Signer:
    values = {name: f"whsec-{name}-" + secrets.token_hex(24) for name in SCHEMES}
    values["twilio"] = VENDOR_TOKEN
    for name, env in ENV.items():
        monkeypatch.setenv(env, values[name])
    return Signer(values)


@dataclass
class Internal:
    recorder: Recorder
    server: Vendor

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def seen(self) -> list[Any]:
        return self.recorder.seen


@pytest.fixture
async def internal(pki: dict[str, Path]) -> AsyncIterator[Internal]:
    recorder = answer_ok()
    server = await start_vendor(pki, recorder.app(), tls=False)
    yield Internal(recorder, server)
    recorder.release.set()
    await server.runner.cleanup()


async def webhook_gateway(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    forward_base: str,
    settings: dict[str, Any] | None = None,
    **extra: dict[str, Any],
) -> Gateway:
    base = {"server": {"public_url": PUBLIC}}
    policies = {"default": DEFAULT_POLICY, "callbacks": {"route": webhook_routes(forward_base, **extra)}}
    merged = {**base, **(settings or {})}
    merged["server"] = {**base["server"], **(settings or {}).get("server", {})}
    return await make_gateway(vendor.base_url, settings=merged, policies=policies)


async def deliver(gw: Gateway, cb: Callback, host: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    headers = dict(cb.headers)
    if host is not None:
        headers["Host"] = host
    url = URL(gw.base + cb.target, encoded=True)
    async with gw.session.request(cb.method, url, data=cb.body or None, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


def records(gw: Gateway, route: str) -> list[dict[str, Any]]:
    return [r for r in gw.audit() if r.get("route") == route]


# --------------------------------------------------------------------------- every vendor

EXPECTED_TAMPER = {
    "twilio": "bad_signature",
    "vonage": "bad_signature",
    "vonage-jwt": "body_mismatch",
    "plivo": "replayed",  # V2 does not sign the body: the nonce was bound to the first one
    "plivo-v3": "bad_signature",
    "sinch": "bad_signature",
    "messagebird": "url_mismatch",
    "messente": "bad_signature",
    "hmac": "bad_signature",
}


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_each_vendors_callback_is_verified_and_forwarded(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer, scheme: str
) -> None:
    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    markers = Markers()
    cb = signer.make(scheme, markers)
    status, body, headers = await deliver(gw, cb)
    assert (status, body) == (200, b"<Response/>")  # the internal service's answer, for the vendor
    assert headers["Content-Type"].startswith("application/xml")
    assert len(internal.seen) == 1
    seen = internal.seen[0]
    assert seen.method == cb.method
    assert seen.body == cb.body
    query = cb.target.partition("?")[2]
    assert seen.raw_path == f"/events/{scheme}" + (f"?{query}" if query else "")
    assert seen.headers["X-Smsgw-Verified"] == scheme
    assert seen.headers["X-Smsgw-Route"] == scheme
    assert seen.headers["X-Request-ID"] == headers["X-Request-ID"]
    vendor_headers = {name.lower() for name in cb.headers} - {"content-type"}
    assert not vendor_headers & {name.lower() for name in seen.headers}
    assert "Authorization" not in seen.headers

    decision, outcome = records(gw, scheme)
    assert (decision["event"], decision["decision"], outcome["event"], outcome["status"]) == (
        "request",
        "allow",
        "outcome",
        200,
    )
    assert outcome["vendor_message_id"] == decision["vendor_message_id"] == markers.message_id
    assert outcome["vendor_status"] == "delivered"

    # the same callback with one character changed: refused, and nothing more forwarded
    status, body, headers = await deliver(gw, tamper(cb))
    assert status == 401
    assert error_of(body)["code"] == "unauthenticated"
    assert len(internal.seen) == 1
    denied = records(gw, scheme)[-1]
    assert (denied["decision"], denied["reason"], denied["detail"]) == (
        "deny",
        "unauthenticated",
        EXPECTED_TAMPER[scheme],
    )


async def test_twilio_url_is_rebuilt_from_public_url_never_from_host(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer
) -> None:
    from twilio.request_validator import RequestValidator

    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    path = "/callbacks/twilio/status"
    fields = {"MessageSid": "SM" + secrets.token_hex(16), "MessageStatus": "sent"}
    body = urlencode(fields).encode()
    validator = RequestValidator(VENDOR_TOKEN)

    def signed_for(url: str) -> Callback:
        return Callback(
            "POST",
            path,
            {"X-Twilio-Signature": validator.compute_signature(url, fields), "Content-Type": FORM},
            body,
        )

    # an attacker's own URL, with Host naming it: the gateway does not believe Host
    status, payload, _ = await deliver(gw, signed_for("https://evil.example" + path), host="evil.example")
    assert (status, error_of(payload)["code"]) == (401, "unauthenticated")
    assert internal.seen == []
    # the public URL is what counts, whatever Host says; with or without the explicit port
    assert (await deliver(gw, signed_for(PUBLIC + path), host="evil.example"))[0] == 200
    fields["MessageStatus"] = "delivered"
    body = urlencode(fields).encode()
    assert (await deliver(gw, signed_for("https://sms-gw.example.com:443" + path)))[0] == 200
    assert len(internal.seen) == 2


async def test_twilio_refusals_forward_nothing(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer
) -> None:
    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    cb = signer.make("twilio", Markers())
    no_signature = replace(cb, headers={"Content-Type": FORM})
    wrong_header = replace(cb, headers={**cb.headers, "X-Twilio-Signature": "A" * 27 + "="})
    extra_query = replace(cb, target=cb.target + "?extra=1")
    json_body = replace(
        cb, headers={**cb.headers, "Content-Type": JSON}, body=b'{"MessageStatus": "delivered"}'
    )
    expected = [
        (no_signature, 401, "missing_signature"),
        (wrong_header, 401, "bad_signature"),
        (extra_query, 401, "bad_signature"),
        (json_body, 401, "unsigned_body"),
        (replace(cb, body=cb.body + b"&%zz"), 400, "malformed"),
    ]
    for callback, status, detail in expected:
        got, payload, _ = await deliver(gw, callback)
        assert got == status
        assert error_of(payload)["code"] == ("unauthenticated" if status == 401 else "bad_request")
        assert records(gw, "twilio")[-1]["detail"] == detail
    assert internal.seen == []


async def test_stale_timestamps_are_refused(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer
) -> None:
    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    an_hour_ago = time.time() - 3600
    for scheme in ("vonage", "vonage-jwt", "sinch", "messagebird"):
        status, payload, _ = await deliver(gw, signer.make(scheme, Markers(), now=an_hour_ago))
        assert (status, error_of(payload)["code"]) == (401, "unauthenticated")
        assert records(gw, scheme)[-1]["detail"] == "expired"
    assert internal.seen == []


# --------------------------------------------------------------------------- duplicates


async def test_duplicate_callback_is_answered_200_and_not_forwarded(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer
) -> None:
    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    markers = Markers()
    first = signer.make("sinch", markers)
    assert (await deliver(gw, first))[0] == 200
    # the vendor delivers it again, freshly signed (new nonce and timestamp): same id, same status
    again = signer.make("sinch", markers)
    status, body, _ = await deliver(gw, again)
    assert (status, body) == (200, b"")
    assert len(internal.seen) == 1
    dropped = records(gw, "sinch")[-1]
    assert (dropped["decision"], dropped["status"], dropped["detail"]) == ("allow", 200, "duplicate")
    assert dropped["vendor_message_id"] == markers.message_id
    # the next status of the same message is news
    assert (await deliver(gw, signer.make("sinch", markers, status="failed")))[0] == 200
    assert len(internal.seen) == 2
    # and the same status for another recipient of the same batch too
    assert (await deliver(gw, signer.make("sinch", replace(markers, to=fresh_number()))))[0] == 200
    assert len(internal.seen) == 3


async def test_a_failed_forward_is_not_remembered_so_the_vendors_retry_goes_through(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path], signer: Signer
) -> None:
    answers = iter([503, 200])

    async def behaviour(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=next(answers, 200))

    recorder = Recorder(behaviour)
    server = await start_vendor(pki, recorder.app(), tls=False)
    try:
        gw = await webhook_gateway(make_gateway, vendor, server.base_url)
        cb = signer.make("twilio", Markers())
        assert (await deliver(gw, cb))[0] == 503  # the vendor will retry
        assert (await deliver(gw, cb))[0] == 200  # the retry is forwarded
        assert (await deliver(gw, cb))[0] == 200  # a third copy is a duplicate
        assert len(recorder.seen) == 2
    finally:
        await server.runner.cleanup()


async def test_a_copy_arriving_while_the_first_is_forwarded_is_told_to_retry(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path], signer: Signer
) -> None:
    recorder = Recorder()

    async def behaviour(request: web.Request, body: bytes) -> web.StreamResponse:
        await asyncio.wait_for(recorder.release.wait(), timeout=5)
        return web.Response(status=204)

    recorder.behaviour = behaviour
    server = await start_vendor(pki, recorder.app(), tls=False)
    try:
        gw = await webhook_gateway(make_gateway, vendor, server.base_url)
        cb = signer.make("messente", Markers())
        first = asyncio.create_task(deliver(gw, cb))
        await asyncio.wait_for(recorder.arrived.wait(), timeout=5)
        status, payload, headers = await deliver(gw, cb)
        assert (status, error_of(payload)["code"], headers["Retry-After"]) == (
            409,
            "callback_in_progress",
            "5",
        )
        recorder.release.set()
        assert (await asyncio.wait_for(first, timeout=5))[0] == 204
        assert (await deliver(gw, cb))[0] == 200
        assert len(recorder.seen) == 1
    finally:
        recorder.release.set()
        await server.runner.cleanup()


# --------------------------------------------------------------------------- the internal service fails


async def test_internal_service_down_or_slow(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path], signer: Signer
) -> None:
    down = await webhook_gateway(make_gateway, vendor, f"http://127.0.0.1:{free_port()}")
    cb = signer.make("messente", Markers())
    for _ in range(2):  # the claim is released: the vendor's retry is tried again, not dropped
        status, payload, _ = await deliver(down, cb)
        assert (status, error_of(payload)["code"]) == (502, "upstream_unavailable")
    outcome = records(down, "messente")[-1]
    assert (outcome["event"], outcome["reason"]) == ("outcome", "upstream_unavailable")

    recorder = Recorder()

    async def never(request: web.Request, body: bytes) -> web.StreamResponse:
        await asyncio.wait_for(recorder.release.wait(), timeout=5)
        return web.Response(status=200)

    recorder.behaviour = never
    server = await start_vendor(pki, recorder.app(), tls=False)
    try:
        slow = await webhook_gateway(
            make_gateway, vendor, server.base_url, messente={"webhook": {"timeout_s": 0.3}}
        )
        status, payload, _ = await deliver(slow, cb)
        assert (status, error_of(payload)["code"]) == (504, "upstream_timeout")
    finally:
        recorder.release.set()
        await server.runner.cleanup()


async def test_https_forward_to_with_a_private_ca(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path], signer: Signer
) -> None:
    recorder = answer_ok()
    server = await start_vendor(pki, recorder.app(), tls=True)
    try:
        gw = await webhook_gateway(
            make_gateway, vendor, server.base_url, hmac={"webhook": {"ca_file": str(pki["ca"])}}
        )
        assert (await deliver(gw, signer.make("hmac", Markers())))[0] == 200
        # another route to the same server without the CA: the certificate is not trusted
        assert (await deliver(gw, signer.make("messente", Markers())))[0] == 502
        assert len(recorder.seen) == 1
    finally:
        await server.runner.cleanup()


# --------------------------------------------------------------------------- storage down


class DownStorage:
    """A backend that never answers (what Redis down looks like to the stages)."""

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float) -> bool:
        raise StorageUnavailable

    async def get(self, key: str) -> bytes | None:
        raise StorageUnavailable

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        raise StorageUnavailable

    async def delete(self, key: str) -> None:
        raise StorageUnavailable

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("on_error", ["closed", "open"])
async def test_storage_down(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer, on_error: str
) -> None:
    gw = await webhook_gateway(
        make_gateway, vendor, internal.url, settings={"storage": {"on_error": on_error}}
    )
    gw.running.services.storage.kv = DownStorage()
    for scheme in ("twilio", "plivo"):  # duplicates, and Plivo V2's nonce binding
        status, payload, _ = await deliver(gw, signer.make(scheme, Markers()))
        if on_error == "closed":
            assert (status, error_of(payload)["code"]) == (503, "limiter_unavailable")
        else:
            assert status == 200
    if on_error == "closed":
        assert internal.seen == []
    else:
        assert len(internal.seen) == 2
        assert any(r["event"] == "storage_unavailable" for r in gw.audit())


# --------------------------------------------------------------------------- the log-leak canary


@pytest.mark.parametrize(
    ("body_mode", "recipient_mode"), [("hash", "mask"), ("mask", "hash"), ("redact", "drop")]
)
async def test_no_number_or_text_from_a_callback_in_any_log(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    internal: Internal,
    signer: Signer,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    body_mode: str,
    recipient_mode: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = {"logging": {"level": "debug", "body": body_mode, "recipient": recipient_mode}}
    gw = await webhook_gateway(make_gateway, vendor, internal.url, settings=settings)
    markers = Markers()
    if body_mode == "mask":  # mask keeps words and hides digits: the text marker is digits only
        markers = replace(markers, text="".join(secrets.choice("0123456789") for _ in range(14)))
    outcomes = []
    for scheme in SCHEMES:
        cb = signer.make(scheme, markers)
        outcomes.append((await deliver(gw, cb))[0])
        outcomes.append((await deliver(gw, tamper(cb)))[0])
        outcomes.append((await deliver(gw, unsigned(cb)))[0])
    assert outcomes.count(200) == len(SCHEMES)  # and the rest refused
    assert all(status in (200, 400, 401) for status in outcomes)
    # the markers were live: the internal service got them in clear
    assert any(markers.text.encode() in seen.body for seen in internal.seen)
    assert any(markers.to[1:] in seen.raw_path for seen in internal.seen)
    await gw.running.stop()

    for path in (p for p in (gw.folder / "logs").rglob("*") if p.is_file()):
        assert_no_marker(str(path), path.read_text(encoding="utf-8", errors="replace"), markers)
    out, err = capfd.readouterr()
    assert_no_marker("stdout", out, markers)
    assert_no_marker("stderr", err, markers)
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert_no_marker("Python logging", logged, markers)

    # what a reviewer needs is there: the message id and status, the numbers and text redacted
    twilio_allow = next(r for r in records(gw, "twilio") if r["decision"] == "allow")
    assert (twilio_allow["vendor_message_id"], twilio_allow["vendor_status"]) == (
        markers.message_id,
        "delivered",
    )
    key = HASH_KEY.encode()
    expected_numbers = {
        "mask": [n[:5] + "****" + n[-2:] for n in (markers.to, markers.sender)],
        "hash": [hmac.new(key, n.encode(), hashlib.sha256).hexdigest() for n in (markers.to, markers.sender)],
        "drop": None,
    }[recipient_mode]
    assert twilio_allow["recipients"] == expected_numbers
    vonage_allow = next(r for r in records(gw, "vonage") if r["decision"] == "allow")
    assert vonage_allow["recipients"] == expected_numbers  # msisdn without "+" is the same number
    body = twilio_allow["body"]
    if body_mode == "hash":
        assert body["hmac_sha256"] == hmac.new(key, markers.text.encode(), hashlib.sha256).hexdigest()
    elif body_mode == "mask":
        assert body == {"masked": "*" * len(markers.text)}
    else:
        assert body == {"redacted": True, "length": len(markers.text)}


# --------------------------------------------------------------------------- check-config


@dataclass
class Folder:
    root: Path
    pki: dict[str, Path]

    def load(self, routes: list[dict[str, Any]], settings: dict[str, Any] | None = None):
        policies = {"default": DEFAULT_POLICY, "callbacks": {"route": routes}}
        return load_config(write_config(self.root, self.pki, "https://127.0.0.1:9", settings, policies))

    def problems(
        self, routes: list[dict[str, Any]], settings: dict[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        with pytest.raises(ConfigError) as info:
            self.load(routes, settings)
        return [(p.key, p.message) for p in info.value.problems]


@pytest.fixture
def folder(tmp_path: Path, pki: dict[str, Path], signer: Signer) -> Folder:
    return Folder(tmp_path / "cfg", pki)


def hook(**keys: Any) -> dict[str, Any]:
    return {"name": "cb", "path": "/cb", "kind": "webhook", "forward_to": "http://127.0.0.1:8080/cb", **keys}


def test_the_example_routes_load(folder: Folder) -> None:
    routes = webhook_routes("http://events.internal:8080")
    config = folder.load(routes, {"server": {"public_url": PUBLIC}})
    assert [r.name for r in config.routes if r.kind == "webhook"] == list(SCHEMES)


@pytest.mark.parametrize(
    ("route", "settings", "key", "fragment"),
    [
        (hook(), None, "route[0].server.public_url", ""),  # placeholder, replaced below
        (
            hook(signature="sinch"),
            None,
            "route[0].signing_secret",
            "needs signing_secret (the callback secret",
        ),
        (hook(signature="nope"), None, "route[0].signature", "'nope' is not one of twilio, vonage"),
        (
            hook(signature="hmac", signing_secret=f"env:{ENV['hmac']}"),
            None,
            "route[0].webhook.header",
            "needs header",
        ),
        (
            hook(signature="sinch", signing_secret=f"env:{ENV['sinch']}", webhook={"header": "X-Sig"}),
            None,
            "route[0].webhook.header",
            "applies only to signature = 'hmac'",
        ),
        (
            hook(signature="vonage", signing_secret=f"env:{ENV['vonage']}", webhook={"algorithm": "sha256"}),
            None,
            "route[0].webhook.algorithm",
            "'sha256' is not one of md5-hash",
        ),
        (
            hook(signature="sinch", signing_secret=f"env:{ENV['sinch']}", forward_to="http://203.0.113.9/cb"),
            None,
            "route[0].forward_to",
            "plain http is allowed only to loopback or private addresses",
        ),
        (
            hook(
                signature="sinch",
                signing_secret=f"env:{ENV['sinch']}",
                forward_to="https://u:p@events.example/cb",
            ),
            None,
            "route[0].forward_to",
            "must not carry credentials",
        ),
        (
            hook(signature="sinch", signing_secret=f"env:{ENV['sinch']}", auth=["basic"]),
            None,
            "route[0].auth",
            "authenticated by the vendor's signature",
        ),
        (
            {
                **hook(signature="sinch", signing_secret=f"env:{ENV['sinch']}"),
                "kind": "sms",
                "auth": ["basic"],
            },
            None,
            "route[0].signature",
            "applies only to kind = 'webhook' routes",
        ),
        (
            hook(),
            {"upstream": {"provider": "generic", "generic": {"recipient": "to"}}},
            "route[0].signature",
            "has no built-in callback signature",
        ),
        (
            hook(),
            {"upstream": {"credentials": {"username": "SK" + "0" * 32}}},
            "route[0].signing_secret",
            "needs signing_secret (the account's Auth Token)",
        ),
    ],
)
def test_check_config_refuses_webhook_mistakes(
    folder: Folder, route: dict[str, Any], settings: dict[str, Any] | None, key: str, fragment: str
) -> None:
    if key == "route[0].server.public_url":  # a scheme that signs the URL needs public_url
        problems = folder.problems([route], settings)
        assert len(problems) == 1
        assert problems[0][0] == "server.public_url"
        assert "(signature = 'twilio') needs it" in problems[0][1]
        return
    public = {"server": {"public_url": PUBLIC}}
    problems = folder.problems([route], {**public, **(settings or {})})
    assert any(k == key and fragment in message for k, message in problems), problems


@pytest.mark.parametrize(
    "forward_to",
    [
        "http://events.internal:8080/x",
        "http://10.1.2.3/x",
        "http://[fd00::1]/x",
        "http://events/x",
        "https://events.example.com/x",
    ],
)
def test_forward_to_that_is_accepted(folder: Folder, forward_to: str) -> None:
    config = folder.load([hook(forward_to=forward_to)], {"server": {"public_url": PUBLIC}})
    assert next(r for r in config.routes if r.kind == "webhook").forward_to == forward_to


def test_webhook_signing_secret_never_in_an_error(folder: Folder, signer: Signer) -> None:
    problems = folder.problems(
        [hook(signature="sinch", signing_secret=f"env:{ENV['sinch']}", forward_to="ftp://x")]
    )
    assert problems
    assert signer.secret["sinch"] not in repr(problems)


async def test_bytes_that_are_not_utf8_in_a_signature_header_are_refused_not_crashed(
    make_gateway: GatewayFactory, vendor: Vendor, internal: Internal, signer: Signer, pki: dict[str, Path]
) -> None:
    gw = await webhook_gateway(make_gateway, vendor, internal.url)
    body = b"Status=delivered"
    for header in (
        b"X-Plivo-Signature-V2: abc\r\nX-Plivo-Signature-V2-Nonce: \xff\xfe",
        b"X-Twilio-Signature: \xff\xfe",
    ):
        path = b"/callbacks/plivo" if b"Plivo" in header else b"/callbacks/twilio/status"
        raw = (
            b"POST "
            + path
            + b" HTTP/1.1\r\nHost: sms-gw.example.com\r\nContent-Type: "
            + FORM.encode()
            + b"\r\n"
            + header
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        answer = await raw_exchange(gw.running.public_port, raw, client_ssl(pki))
        assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 401 Unauthorized")
    assert internal.seen == []
    assert not [r for r in gw.audit() if r.get("reason") == "internal_error"]
