"""End to end: what the vendor receives, what the client gets back, and what happens when the
vendor misbehaves. Real parts only: the gateway on loopback, real TLS with the test CA, a real
aiohttp server playing the vendor."""

from __future__ import annotations

import asyncio
import base64
import datetime
import gzip
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import (
    BEARER_TOKEN,
    CLIENT_PASSWORD,
    CLIENT_USER,
    DEFAULT_POLICY,
    VENDOR_SID,
    VENDOR_TOKEN,
    Gateway,
    GatewayFactory,
    Recorder,
    Vendor,
    basic,
    client_ssl,
    deep_merge,
    error_of,
    free_port,
    policy,
    post,
)

FORM = "application/x-www-form-urlencoded"
CLIENT_BASIC = basic(CLIENT_USER, CLIENT_PASSWORD)
VENDOR_BASIC = basic(VENDOR_SID, VENDOR_TOKEN)
EE_NUMBER = "+37255512367"


# --------------------------------------------------------------------------- a recording vendor


def spki_pin(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def outcome(gw: Gateway) -> dict[str, Any]:
    records = [r for r in gw.audit() if r["event"] == "outcome"]
    assert len(records) == 1, records
    return records[0]


# --------------------------------------------------------------------------- credentials and headers

CLIENT_SECRETS_HEADERS = [
    ("Cookie", "session=client-cookie-4711"),
    ("X-Api-Key", "client-api-key-4711"),
    ("Signature", "sig1=:Y2xpZW50LXNpZ25hdHVyZQ==:"),
    ("Signature-Input", 'sig1=("@method" "@target-uri");keyid="client";created=1'),
    ("Proxy-Authorization", basic("proxy-user", "proxy-pass-4711")),
    ("X-Forwarded-For", "10.9.8.7"),
    ("Forwarded", "for=10.9.8.7;proto=https"),
    ("X-Real-IP", "10.9.8.7"),
    ("Idempotency-Key", "client-idem-4711"),
]
HOP_BY_HOP_HEADERS = [
    ("Connection", "keep-alive, x-secret-hop"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("TE", "trailers"),
    ("Upgrade", "h2c"),
    ("X-Secret-Hop", "hop-value-4711"),
]


async def test_vendor_gets_its_credential_and_nothing_of_the_clients(
    make_gateway: GatewayFactory, vendors
) -> None:
    recorder = Recorder()  # keeps repeated headers, so a second Authorization would show
    v = await vendors(recorder)
    gw = await make_gateway(v.base_url)
    body = b"To=%2B37255512367&From=MyBank&Body=hello+world%21+%C3%A4%C3%B6&SmartEncoded=true"
    response, payload = await post(
        gw,
        body,
        headers=[
            *CLIENT_SECRETS_HEADERS,
            *HOP_BY_HOP_HEADERS,
            ("User-Agent", "billing-app/2.1"),
            ("X-Custom", "kept-as-is"),
        ],
    )
    assert response.status == 201, payload
    (seen,) = recorder.seen
    headers = seen.headers
    assert headers.getall("Authorization") == [VENDOR_BASIC]
    for name, _ in CLIENT_SECRETS_HEADERS:
        assert name not in headers, name
    for name in ("Keep-Alive", "TE", "Upgrade", "X-Secret-Hop"):
        assert name not in headers, name
    assert "x-secret-hop" not in headers.get("Connection", "").lower()
    flat = json.dumps(list(headers.items())) + seen.raw_path
    for secret in (CLIENT_PASSWORD, CLIENT_BASIC.split()[1], "4711", "10.9.8.7"):
        assert secret not in flat
    assert headers["User-Agent"] == "billing-app/2.1"
    assert headers["X-Custom"] == "kept-as-is"
    assert headers["Content-Type"] == FORM
    assert seen.body == body
    assert seen.path == f"/2010-04-01/Accounts/{VENDOR_SID}/Messages.json"
    assert seen.raw_query == ""


async def test_query_string_passes_through_byte_for_byte(make_gateway: GatewayFactory, vendors) -> None:
    """Query parameters the vendor API defines (here declared for a generic vendor) pass as sent."""
    recorder = Recorder()
    v = await vendors(recorder)
    generic = {
        "format": "form",
        "recipient": "To",
        "sender": "From",
        "body": "Body",
        "query": ["PageSize", "DateSent>", "note", "pct", "amp"],
    }
    gw = await make_gateway(v.base_url, settings={"upstream": {"provider": "generic", "generic": generic}})
    query = "PageSize=20&DateSent%3E=2024-01-01&note=a+b%20c&pct=100%25&amp=x%26y"
    response, payload = await post(gw, b"To=%2B37255512367&From=MyBank&Body=hi", query=query)
    assert response.status == 201, payload
    (seen,) = recorder.seen
    assert seen.raw_query == query


@pytest.mark.parametrize("kind", ["bearer", "header", "query", "none"])
async def test_other_vendor_credential_types(
    make_gateway: GatewayFactory, vendors, tmp_path: Path, kind: str
) -> None:
    secret = f"vendor-{kind}-secret-{secrets.token_hex(8)}"
    secret_file = tmp_path / f"{kind}.secret"
    secret_file.write_text(secret + "\n")
    ref = f"file:{secret_file}"
    credentials: dict[str, Any] = {
        "bearer": {"type": "bearer", "token": ref},
        "header": {"type": "header", "name": "X-Vendor-Key", "value": ref},
        "query": {"type": "query", "name": "api_key", "value": ref},
        "none": {"type": "none"},
    }[kind]
    credentials |= {"username": "", "password": ""}
    recorder = Recorder()
    v = await vendors(recorder)
    gw = await make_gateway(
        v.base_url, settings={"upstream": {"account_id": VENDOR_SID, "credentials": credentials}}
    )
    response, payload = await post(
        gw,
        b"To=%2B37255512367&From=MyBank&Body=hello",
        headers={"X-Vendor-Key": "client-forged-key", "X-Api-Key": "client-api-key"},
    )
    assert response.status == 201, payload
    (seen,) = recorder.seen
    assert seen.path == f"/2010-04-01/Accounts/{VENDOR_SID}/Messages.json"
    everything = json.dumps(list(seen.headers.items())) + seen.raw_path + seen.body.decode()
    client_secrets = [CLIENT_PASSWORD, CLIENT_BASIC.split()[1], "client-api-key"]
    if kind == "header":  # the client's value for the vendor's credential header is replaced
        client_secrets.append("client-forged-key")
    for client_secret in client_secrets:
        assert client_secret not in everything
    assert "X-Api-Key" not in seen.headers
    if kind == "bearer":
        assert seen.headers.getall("Authorization") == [f"Bearer {secret}"]
    else:
        assert "Authorization" not in seen.headers
    if kind == "header":
        assert seen.headers.getall("X-Vendor-Key") == [secret]
    else:  # a credential-like name (*-Key) never passes, whoever it is for
        assert "X-Vendor-Key" not in seen.headers
    if kind == "query":
        assert seen.raw_query == f"api_key={secret}"
    else:
        assert seen.raw_query == ""
    # the vendor credential never reaches the logs
    assert secret not in gw.logs()


async def test_client_cannot_smuggle_its_own_query_credential(
    make_gateway: GatewayFactory, vendors, tmp_path: Path
) -> None:
    secret_file = tmp_path / "query.secret"
    secret_file.write_text("vendor-query-secret-0badc0de")
    recorder = Recorder()
    v = await vendors(recorder)
    gw = await make_gateway(
        v.base_url,
        settings={
            "upstream": {
                "account_id": VENDOR_SID,
                "credentials": {
                    "type": "query",
                    "name": "api_key",
                    "value": f"file:{secret_file}",
                    "username": "",
                    "password": "",
                },
            }
        },
    )
    for query in ("api_key=client-own-key", "API_KEY%5B%5D=client-own-key", "x=1;api_key=client-own-key"):
        response, payload = await post(gw, b"To=%2B37255512367&From=MyBank&Body=hi", query=query)
        # A parameter the gateway treats as a credential is never the client's to set: refused.
        assert response.status == 400, payload
        assert error_of(payload)["code"] == "unknown_field"
    assert recorder.seen == []
    response, payload = await post(gw, b"To=%2B37255512367&From=MyBank&Body=hi")
    assert response.status == 201, payload
    (seen,) = recorder.seen
    assert seen.raw_query == "api_key=vendor-query-secret-0badc0de"


async def test_compressed_request_body_reaches_the_vendor_readable(
    make_gateway: GatewayFactory, vendors
) -> None:
    recorder = Recorder()
    v = await vendors(recorder)
    gw = await make_gateway(v.base_url)
    form = b"To=%2B37255512367&From=MyBank&Body=hello"
    response, payload = await post(gw, gzip.compress(form), headers={"Content-Encoding": "gzip"})
    if response.status in (400, 415):  # refusing is fine, but then nothing goes upstream
        assert error_of(payload)["code"] == "bad_request"
        assert recorder.seen == []
    else:  # forwarding is fine, if the vendor reads the form the gateway checked
        assert response.status == 201, payload
        (seen,) = recorder.seen
        assert seen.body == form


# --------------------------------------------------------------------------- the vendor's answer


def vendor_secrets() -> list[str]:
    return [VENDOR_TOKEN, VENDOR_BASIC.split()[1], BEARER_TOKEN]


def assert_no_vendor_secret(response: aiohttp.ClientResponse, payload: bytes) -> None:
    received = json.dumps(list(response.headers.items())) + payload.decode("utf-8", "replace")
    for secret in vendor_secrets():
        assert secret not in received


def assert_gateway_headers(response: aiohttp.ClientResponse) -> None:
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert len(response.headers["X-Request-ID"]) >= 16


@pytest.mark.parametrize("coding", ["identity", "gzip"])
async def test_vendor_answer_comes_back_unchanged(
    make_gateway: GatewayFactory, vendors, pki: dict[str, Path], coding: str
) -> None:
    sid = "SM" + secrets.token_hex(16)
    document = json.dumps({"sid": sid, "status": "queued", "to": EE_NUMBER}).encode()
    wire = gzip.compress(document, mtime=0) if coding == "gzip" else document

    async def behaviour(_: web.Request, __: bytes) -> web.StreamResponse:
        headers = {"Content-Type": "application/json", "X-Vendor-Trace": "trace-5f2a"}
        if coding == "gzip":
            headers["Content-Encoding"] = "gzip"
        return web.Response(status=201, body=wire, headers=headers)

    v = await vendors(Recorder(behaviour))
    gw = await make_gateway(v.base_url)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_ssl(pki)), auto_decompress=False
    ) as raw_client:
        response, payload = await post(
            gw,
            b"To=%2B37255512367&From=MyBank&Body=hi",
            headers={"Accept-Encoding": "gzip"},
            session=raw_client,
        )
    assert response.status == 201
    assert payload == wire
    assert response.headers["X-Vendor-Trace"] == "trace-5f2a"
    assert response.headers["Content-Type"] == "application/json"
    if coding == "gzip":
        assert response.headers["Content-Encoding"] == "gzip"
    else:
        assert "Content-Encoding" not in response.headers
    assert_gateway_headers(response)
    assert_no_vendor_secret(response, payload)
    # the gateway still read the message id, through the content coding
    assert outcome(gw)["vendor_message_id"] == sid


async def test_vendor_error_body_comes_back_byte_for_byte(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path]
) -> None:
    form = b"To=%2B37255512367&From=MyBank"  # no Body: Twilio answers 400 / 21602
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(pki))) as direct:
        async with direct.post(
            f"{vendor.base_url}/2010-04-01/Accounts/{VENDOR_SID}/Messages.json",
            data=form,
            headers={"Authorization": VENDOR_BASIC, "Content-Type": FORM},
        ) as answer:
            expected_status, expected = answer.status, await answer.read()
    assert expected_status == 400
    assert json.loads(expected)["code"] == 21602

    gw = await make_gateway(vendor.base_url)
    response, payload = await post(gw, form)
    assert response.status == 400
    assert payload == expected
    assert response.headers["Content-Type"].startswith("application/json")
    assert_gateway_headers(response)
    assert_no_vendor_secret(response, payload)
    record = outcome(gw)
    assert record["status"] == 400
    assert record["vendor_message_id"] is None


async def test_success_answer_carries_no_vendor_secret(gateway: Gateway) -> None:
    response = await gateway.send()
    payload = await response.read()
    assert response.status == 201
    doc = json.loads(payload)
    assert doc["sid"].startswith("SM")
    assert_gateway_headers(response)
    assert_no_vendor_secret(response, payload)


# --------------------------------------------------------------------------- vendor failures


async def test_vendor_down_is_502(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(f"https://127.0.0.1:{free_port()}")
    response = await gw.send()
    payload = await response.read()
    assert response.status == 502
    error = error_of(payload)
    assert error["code"] == "upstream_unavailable"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert_gateway_headers(response)
    record = outcome(gw)
    assert (record["status"], record["reason"]) == (502, "upstream_unavailable")
    (access,) = gw.access()
    assert (access["status"], access["reason"]) == (502, "upstream_unavailable")


async def test_vendor_too_slow_is_504_and_not_retried(make_gateway: GatewayFactory, vendors) -> None:
    recorder = Recorder()

    async def park(_: web.Request, __: bytes) -> web.StreamResponse:
        await recorder.release.wait()  # set only when the test ends
        return web.Response(status=201)

    recorder.behaviour = park
    v = await vendors(recorder)
    gw = await make_gateway(v.base_url, settings={"upstream": {"timeout_s": 1}})
    response = await gw.send()
    assert response.status == 504
    assert error_of(await response.read())["code"] == "upstream_timeout"
    assert_gateway_headers(response)
    assert len(recorder.seen) == 1
    assert outcome(gw)["reason"] == "upstream_timeout"


async def test_vendor_closing_mid_answer_is_502_and_not_retried(
    make_gateway: GatewayFactory, vendors
) -> None:
    async def cut(request: web.Request, _: bytes) -> web.StreamResponse:
        response = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
        response.content_length = 4096
        await response.prepare(request)
        await response.write(b'{"sid": "SM')
        assert request.transport is not None
        request.transport.close()
        return response

    recorder = Recorder(cut)
    v = await vendors(recorder)
    gw = await make_gateway(v.base_url)
    response = await gw.send()
    payload = await response.read()
    assert response.status == 502
    assert error_of(payload)["code"] == "upstream_unavailable"
    assert b'"sid"' not in payload
    assert len(recorder.seen) == 1
    assert outcome(gw)["status"] == 502


@pytest.mark.parametrize("trust", ["system-cas", "other-ca", "wrong-name", "expired", "not-yet-valid"])
async def test_untrusted_vendor_certificate_is_502_and_nothing_sent(
    make_gateway: GatewayFactory,
    vendors,
    ca: trustme.CA,
    pki: dict[str, Path],
    tmp_path: Path,
    trust: str,
) -> None:
    recorder = Recorder()
    vendor_pki = pki
    settings: dict[str, Any] = {}
    now = datetime.datetime.now(datetime.UTC)
    if trust == "system-cas":
        settings = {"upstream": {"ca_file": ""}}  # the test CA is not a system CA
    else:
        if trust == "other-ca":  # right name, but from a CA the gateway does not trust
            other = trustme.CA().issue_cert("localhost", "127.0.0.1")
        elif trust == "wrong-name":  # trusted CA, but not for 127.0.0.1
            other = ca.issue_cert("vendor.example")
        elif trust == "expired":  # trusted CA, right name, ran out yesterday
            other = ca.issue_cert(
                "localhost",
                "127.0.0.1",
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            )
        else:  # valid only from tomorrow
            other = ca.issue_cert(
                "localhost",
                "127.0.0.1",
                not_before=now + datetime.timedelta(days=1),
                not_after=now + datetime.timedelta(days=30),
            )
        vendor_pki = dict(pki, vendor_cert=tmp_path / "other.pem", vendor_key=tmp_path / "other.key")
        other.cert_chain_pems[0].write_to_path(str(vendor_pki["vendor_cert"]))
        other.private_key_pem.write_to_path(str(vendor_pki["vendor_key"]))
    v = await vendors(recorder, vendor_pki)
    gw = await make_gateway(v.base_url, settings=settings)
    response = await gw.send()
    assert response.status == 502
    assert error_of(await response.read())["code"] == "upstream_unavailable"
    assert_gateway_headers(response)
    assert recorder.seen == []
    record = outcome(gw)
    assert (record["status"], record["reason"]) == (502, "upstream_unavailable")
    (access,) = gw.access()
    assert (access["status"], access["reason"]) == (502, "upstream_unavailable")


async def test_vendor_redirect_is_passed_back_not_followed(make_gateway: GatewayFactory, vendors) -> None:
    elsewhere = Recorder()
    other = await vendors(elsewhere)

    async def redirect(_: web.Request, __: bytes) -> web.StreamResponse:
        location = f"{other.base_url}/2010-04-01/Accounts/{VENDOR_SID}/Messages.json"
        return web.Response(status=307, headers={"Location": location})

    first = Recorder(redirect)
    v = await vendors(first)
    gw = await make_gateway(v.base_url)
    response, _ = await post(gw, b"To=%2B37255512367&From=MyBank&Body=hi", allow_redirects=False)
    assert response.status == 307
    assert response.headers["Location"].startswith(other.base_url)
    assert len(first.seen) == 1
    assert elsewhere.seen == []  # neither the SMS nor the vendor credential went anywhere else


async def test_oversized_vendor_answer_is_502(make_gateway: GatewayFactory, vendors) -> None:
    async def flood(_: web.Request, __: bytes) -> web.StreamResponse:
        return web.Response(status=201, body=b"x" * (2 * 1024 * 1024), content_type="application/json")

    recorder = Recorder(flood)
    v = await vendors(recorder)
    gw = await make_gateway(v.base_url)
    response = await gw.send()
    payload = await response.read()
    assert response.status == 502
    assert error_of(payload)["code"] == "upstream_unavailable"
    assert len(recorder.seen) == 1
    assert outcome(gw)["status"] == 502


# --------------------------------------------------------------------------- pinning


async def test_matching_pin_is_accepted(make_gateway: GatewayFactory, vendor: Vendor, pki) -> None:
    pin = spki_pin(pki["vendor_cert"])
    other = base64.b64encode(hashlib.sha256(b"a backup key").digest()).decode()
    gw = await make_gateway(vendor.base_url, settings={"upstream": {"pin_sha256": [other, pin]}})
    response = await gw.send()
    assert response.status == 201
    assert len(vendor.received) == 1


async def test_wrong_pin_sends_nothing(make_gateway: GatewayFactory, vendors, pki) -> None:
    recorder = Recorder()
    v = await vendors(recorder)
    wrong = base64.b64encode(hashlib.sha256(b"not the vendor's key").digest()).decode()
    assert wrong != spki_pin(pki["vendor_cert"])
    gw = await make_gateway(v.base_url, settings={"upstream": {"pin_sha256": [wrong]}})
    response = await gw.send()
    assert response.status == 502
    assert error_of(await response.read())["code"] == "upstream_unavailable"
    assert recorder.seen == []
    assert outcome(gw)["reason"] == "upstream_unavailable"


# --------------------------------------------------------------------------- understanding the message


@pytest.mark.parametrize("to", ["12345", "+0123", "+372abcdefg", "37255512367", "+3725551236", "+1 555 0100"])
async def test_invalid_recipient_is_422_and_not_forwarded(gateway: Gateway, vendor: Vendor, to: str) -> None:
    response = await gateway.send({"To": to, "From": "MyBank", "Body": "hello"})
    payload = await response.read()
    assert response.status == 422
    error = error_of(payload)
    assert error["code"] == "invalid_recipient"
    assert to.encode() not in payload
    assert vendor.received == []
    (record,) = gateway.audit()
    assert (record["decision"], record["reason"]) == ("deny", "invalid_recipient")


async def test_destination_country_not_allowed(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    gw = await make_gateway(vendor.base_url, policies=policy(client={"countries": ["EE"]}))
    response = await gw.send({"To": "+12025550143", "From": "MyBank", "Body": "hello"})
    assert response.status == 403
    assert error_of(await response.read())["code"] == "destination_not_allowed"
    assert vendor.received == []
    ok = await gw.send({"To": EE_NUMBER, "From": "MyBank", "Body": "hello"})
    assert ok.status == 201


async def test_sender_not_allowed(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    gw = await make_gateway(vendor.base_url, policies=policy(client={"senders": ["MyBank"]}))
    response = await gw.send({"To": EE_NUMBER, "From": "Other", "Body": "hello"})
    assert response.status == 403
    assert error_of(await response.read())["code"] == "sender_not_allowed"
    assert vendor.received == []
    ok = await gw.send({"To": EE_NUMBER, "From": "MyBank", "Body": "hello"})
    assert ok.status == 201


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"To": "+37255512367", "From": "MyBank", "Body": "hello"}', "application/json"),
        (b"To=%2B37255512367&To=%2B37255512368&From=MyBank&Body=hello", FORM),
        (b"To=%2B37255512367&to=%2B37255512368&From=MyBank&Body=hello", FORM),
        (b"To=%2B37255512367&From=MyBank&Body=100%", FORM),
        (b"From=MyBank&Body=hello", FORM),
    ],
    ids=["json", "duplicate-To", "case-variant-To", "bad-escape", "no-To"],
)
async def test_unreadable_message_is_400(
    gateway: Gateway, vendor: Vendor, body: bytes, content_type: str
) -> None:
    response, payload = await post(gateway, body, content_type=content_type)
    assert response.status == 400
    assert error_of(payload)["code"] == "bad_request"
    assert b"3725551236" not in payload
    assert vendor.received == []


# --------------------------------------------------------------------------- real clients


async def test_official_twilio_sdk_through_the_gateway(gateway: Gateway, vendor: Vendor, pki) -> None:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    http = TwilioHttpClient(timeout=10)
    assert http.session is not None
    http.session.verify = str(pki["ca"])
    http.session.trust_env = False  # no proxy or CA bundle from the environment
    client = Client(CLIENT_USER, CLIENT_PASSWORD, http_client=http)
    client.api.base_url = gateway.base

    def create() -> Any:
        try:
            return client.messages.create(to=EE_NUMBER, from_="MyBank", body="hello from the SDK")
        finally:
            http.session.close()

    message = await asyncio.to_thread(create)
    assert message.sid.startswith("SM")
    assert message.status == "queued"
    # The SDK sees its own (gateway-issued) account id, never the vendor's real one.
    assert message.account_sid == CLIENT_USER
    assert VENDOR_SID not in message.uri
    assert outcome(gateway)["vendor_message_id"] == message.sid
    (seen,) = vendor.received
    assert seen.headers["Authorization"] == VENDOR_BASIC
    assert seen.headers["User-Agent"].startswith("twilio-python/")


async def test_generic_provider_end_to_end(make_gateway: GatewayFactory, vendor: Vendor, tmp_path) -> None:
    token_file = tmp_path / "bearer"
    token_file.write_text(BEARER_TOKEN)
    policy = deep_merge(DEFAULT_POLICY, {})
    policy["route"] = [
        {
            "name": "generic-send",
            "methods": ["POST"],
            "path": "/v1/messages",
            "kind": "sms",
            "auth": ["basic"],
            "scopes": ["sms:send"],
        }
    ]
    gw = await make_gateway(
        vendor.base_url,
        settings={
            "upstream": {
                "provider": "generic",
                "generic": {
                    "recipient": "/to",
                    "sender": "/from",
                    "body": "/text",
                    "message_id": "/message_id",
                },
                "credentials": {
                    "type": "bearer",
                    "token": f"file:{token_file}",
                    "username": "",
                    "password": "",
                },
            }
        },
        policies={"default": policy},
    )
    document = {"to": EE_NUMBER, "from": "MyBank", "text": "hello generic"}
    body = json.dumps(document).encode()
    response, payload = await post(gw, body, content_type="application/json", path="/v1/messages")
    assert response.status == 201, payload
    answer = json.loads(payload)
    (seen,) = vendor.received
    assert seen.headers["Authorization"] == f"Bearer {BEARER_TOKEN}"
    assert seen.body == body
    record = outcome(gw)
    assert record["provider"] == "generic"
    assert record["vendor_message_id"] == answer["message_id"]
    assert record["recipients"] == ["+3725****67"]

    bad, payload = await post(
        gw,
        json.dumps({**document, "to": "12345"}).encode(),
        content_type="application/json",
        path="/v1/messages",
    )
    assert bad.status == 422
    assert error_of(payload)["code"] == "invalid_recipient"
    assert len(vendor.received) == 1


# --------------------------------------------------------------------------- what crosses, both ways

SEND = b"To=%2B37255512367&From=MyBank&Body=hi"


@pytest.mark.parametrize(
    "name",
    [
        "X-HTTP-Method-Override",
        "X-Original-URL",
        "X-Rewrite-URL",
        "True-Client-IP",
        "CF-Connecting-IP",
        "X-Client-IP",
        "Via",
        "Api-Token",
        "X-Access-Token",
        "X-Partner-Token",
        "X-Partner-Key",
    ],
)
async def test_routing_overrides_and_credential_like_headers_never_reach_the_vendor(
    make_gateway: GatewayFactory, vendors, name: str
) -> None:
    recorder = Recorder()
    gw = await make_gateway((await vendors(recorder)).base_url)
    response, payload = await post(gw, SEND, headers=[(name, "DELETE-or-secret-4711")])
    assert response.status == 201, payload
    (seen,) = recorder.seen
    assert name not in seen.headers
    assert "4711" not in json.dumps(list(seen.headers.items()))


@pytest.mark.parametrize("token", ["Content-Type", "content-length", "Host", "Content-Encoding"])
async def test_connection_naming_a_header_the_message_depends_on_is_refused(
    make_gateway: GatewayFactory, vendors, token: str
) -> None:
    recorder = Recorder()
    gw = await make_gateway((await vendors(recorder)).base_url)
    response, payload = await post(gw, SEND, headers=[("Connection", f"keep-alive, {token}")])
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "bad_request"
    assert recorder.seen == []
    (record,) = gw.audit()
    assert (record["decision"], record["reason"]) == ("deny", "bad_request")


async def _answer_with_leaks(_: web.Request, __: bytes) -> web.StreamResponse:
    document = {
        "sid": "SM" + "b" * 32,
        "account_sid": VENDOR_SID,
        "uri": f"/2010-04-01/Accounts/{VENDOR_SID}/Messages/SM{'b' * 32}.json",
        "debug": f"token={VENDOR_TOKEN}",
    }
    return web.json_response(
        document,
        status=201,
        headers={
            "Set-Cookie": "vendor_session=abc; HttpOnly",
            "WWW-Authenticate": 'Basic realm="Twilio API"',
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Credentials": "true",
            "Server": "vendor-edge/1.2.3",
            "Location": f"https://vendor.test/cb?token={VENDOR_TOKEN}",
            "X-Account": VENDOR_SID,
            "Twilio-Request-Id": "RQ123",
        },
    )


async def test_the_vendors_answer_carries_none_of_its_secrets_or_cookies(
    make_gateway: GatewayFactory, vendors
) -> None:
    gw = await make_gateway((await vendors(Recorder(_answer_with_leaks))).base_url)
    response, payload = await post(gw, SEND)
    assert response.status == 201, payload
    for name in (
        "Set-Cookie",
        "WWW-Authenticate",
        "Access-Control-Allow-Origin",
        "Access-Control-Allow-Credentials",
    ):
        assert name not in response.headers, name
    assert "vendor-edge" not in response.headers.get("Server", "")
    assert response.headers["Twilio-Request-Id"] == "RQ123"
    everything = payload.decode() + json.dumps(list(response.headers.items()))
    assert VENDOR_TOKEN not in everything
    assert VENDOR_SID not in everything  # the real account id becomes the client's virtual one
    answer = json.loads(payload)
    assert answer["account_sid"] == CLIENT_USER
    assert answer["uri"].startswith(f"/2010-04-01/Accounts/{CLIENT_USER}/")
    assert response.headers["X-Account"] == CLIENT_USER
    assert "REDACTED" in response.headers["Location"]


async def test_a_compressed_answer_is_rewritten_and_sent_decoded(
    make_gateway: GatewayFactory, vendors
) -> None:
    async def gzipped(_: web.Request, __: bytes) -> web.StreamResponse:
        body = gzip.compress(json.dumps({"sid": "SM1", "account_sid": VENDOR_SID}).encode())
        return web.Response(
            body=body, status=201, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    gw = await make_gateway((await vendors(Recorder(gzipped))).base_url)
    response, payload = await post(gw, SEND, headers=[("Accept-Encoding", "gzip")])
    assert response.status == 201
    assert json.loads(payload)["account_sid"] == CLIENT_USER
    assert VENDOR_SID.encode() not in payload
