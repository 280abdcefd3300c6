"""Every vendor's official SDK, unmodified, pointed at the gateway with the sandbox vendor behind it.

Each SDK is given the client's gateway-issued credential (``[[client.basic]]``) in its own auth
slot and the gateway's URL in its own base-URL setting, with the test CA trusted. The sandbox
checks the vendor credential the gateway put in, and records the request as it arrived, so the
adapter's reading of a real SDK-made request is checked field by field.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.messages.base import Message
from gateway.messages.fields import CHANNEL, Control
from gateway.vendors import REGISTRY, ProviderSettings
from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    HASH_KEY,
    VENDOR_SID,
    VENDOR_TOKEN,
    Gateway,
    GatewayFactory,
    Vendor,
    basic,
    sha,
)

SDK_TIMEOUT_S = 20
EE = "+37255512367"
LV = "+37120012345"
PLIVO_USER = "MABILLINGGATEWAY0001"  # the Plivo SDK insists on MA + 18 characters
AWS_USER = "AKIAGATEWAYBILLING01"
CLIENT_PASSWORD_ENV = "SMSGW_TEST_CLIENT_PASSWORD"
APP_KEY_ENV = "SMSGW_TEST_VENDOR_APP_KEY"
ACCESS_KEY_ENV = "SMSGW_TEST_VENDOR_ACCESS_KEY"

BEARER = {"type": "bearer", "token": "file:secrets/vendor_token"}
BASIC = {"type": "basic", "username": VENDOR_SID, "password": "file:secrets/vendor_token"}


def hashed(text: str) -> str:
    return hmac.new(HASH_KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def route(name: str, path: str, methods: tuple[str, ...] = ("POST",)) -> dict[str, Any]:
    return {
        "name": name,
        "path": path,
        "methods": list(methods),
        "kind": "sms",
        "auth": ["basic"],
        "scopes": ["sms:send"],
    }


def client(username: str = CLIENT_USER, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"username": username, "password_sha256": sha(CLIENT_PASSWORD)}
    if extra.pop("clear", False):
        entry = {"username": username, "password": f"env:{CLIENT_PASSWORD_ENV}"}
    return {"id": "billing", "scopes": ["sms:send"], "countries": ["*"], "basic": [entry], **extra}


async def open_gateway(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    provider: str,
    routes: list[dict[str, Any]],
    credentials: dict[str, Any] = BASIC,
    username: str = CLIENT_USER,
    **client_extra: Any,
) -> Gateway:
    settings = {"upstream": {"provider": provider, "credentials": credentials}}
    policy = {"client": [client(username, **client_extra)], "route": routes}
    return await make_gateway(vendor.base_url, settings=settings, policies={"p": policy})


async def in_thread(call: Callable[[], Any]) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(call), SDK_TIMEOUT_S)


def read_back(provider: str, path: str, received: Any) -> Message:
    """The adapter's reading of the request as the vendor got it."""
    from gateway.config.schema import RouteConfig

    adapter = REGISTRY[provider].build(ProviderSettings(None, VENDOR_SID))
    reader = adapter.reader(RouteConfig(name="r", path=path, auth=("basic",)))
    content_type = received.headers.get("Content-Type", "")
    parse_request = getattr(reader, "parse_request", None)
    if parse_request is not None:
        return parse_request(received.query, received.body, content_type)
    return reader.parse(received.body, content_type)


def request_record(gw: Gateway) -> dict[str, Any]:
    return next(r for r in gw.audit() if r["event"] == "request")


def outcome(gw: Gateway) -> dict[str, Any]:
    return next(r for r in gw.audit() if r["event"] == "outcome")


@pytest.fixture
def trust_ca(pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> str:
    """requests-based SDKs (Vonage, MessageBird) trust the test CA through the environment."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki["ca"]))
    monkeypatch.setenv(CLIENT_PASSWORD_ENV, CLIENT_PASSWORD)
    return str(pki["ca"])


# --------------------------------------------------------------------------- Twilio Verify


async def test_twilio_verify_sdk(make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path]) -> None:
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    gw = await open_gateway(
        make_gateway,
        vendor,
        "twilio",
        [
            route("verify", "/v2/Services/{service}/Verifications"),
            route("check", "/v2/Services/{service}/VerificationCheck"),
        ],
    )
    http = TwilioHttpClient(timeout=10)
    assert http.session is not None
    http.session.verify = str(pki["ca"])
    http.session.trust_env = False
    sdk = Client(CLIENT_USER, CLIENT_PASSWORD, http_client=http)
    sdk.verify.base_url = gw.base  # the SDK's setting for verify.twilio.com
    service = sdk.verify.v2.services("VA" + "1" * 32)

    started = await in_thread(
        lambda: service.verifications.create(to=EE, channel="sms", custom_code="482915")
    )
    checked = await in_thread(lambda: service.verification_checks.create(to=EE, code="482915"))
    http.session.close()
    assert started.status == "pending" and checked.status == "approved"
    start_seen, check_seen = vendor.received
    assert read_back("twilio", "/v2/Services/{service}/Verifications", start_seen) == Message(
        (EE,), default_sender=True, secrets=("482915",), controls=(Control("Channel", CHANNEL, "sms"),)
    )
    assert read_back("twilio", "/v2/Services/{service}/VerificationCheck", check_seen) == Message(
        (EE,), default_sender=True, secrets=("482915",)
    )
    records = [r for r in gw.audit() if r["event"] == "request"]
    assert [r["secrets"][0]["hmac_sha256"] for r in records] == [hashed("482915")] * 2
    assert "482915" not in gw.logs()


# --------------------------------------------------------------------------- Vonage


def vonage_sdk(gw: Gateway) -> Any:
    from vonage import Auth, HttpClientOptions, Vonage

    host = gw.base.removeprefix("https://")  # the SDK's rest_host/api_host settings
    options = HttpClientOptions(rest_host=host, api_host=host, timeout=10, max_retries=0)
    return Vonage(Auth(api_key=CLIENT_USER, api_secret=CLIENT_PASSWORD), options)


async def test_vonage_sms_sdk(make_gateway: GatewayFactory, vendor: Vendor, trust_ca: str) -> None:
    from vonage_sms import SmsMessage

    gw = await open_gateway(make_gateway, vendor, "vonage", [route("vonage-sms", "/sms/json")])
    sdk = vonage_sdk(gw)
    answer = await in_thread(lambda: sdk.sms.send(SmsMessage(to=EE[1:], from_="MyBank", text="hello vonage")))
    assert answer.messages[0].status == "0"
    (seen,) = vendor.received
    assert read_back("vonage", "/sms/json", seen) == Message((EE[1:],), ("MyBank",), ("hello vonage",))
    record = request_record(gw)
    assert record["recipients"] == ["+3725****67"]  # bare digits read as the vendor reads them
    assert record["body"]["hmac_sha256"] == hashed("hello vonage")
    assert outcome(gw)["vendor_message_id"] == answer.messages[0].message_id


async def test_vonage_messages_sdk(make_gateway: GatewayFactory, vendor: Vendor, trust_ca: str) -> None:
    from vonage_messages import Sms

    gw = await open_gateway(make_gateway, vendor, "vonage-messages", [route("vonage-msg", "/v1/messages")])
    sdk = vonage_sdk(gw)
    failover = [Sms(to=LV[1:], from_="MyBank", text="second try")]
    answer = await in_thread(
        lambda: sdk.messages.send(Sms(to=EE[1:], from_="MyBank", text="first try"), failover=failover)
    )
    (seen,) = vendor.received
    message = read_back("vonage-messages", "/v1/messages", seen)
    channels = (Control("channel", CHANNEL, "sms"), Control("failover/*/channel", CHANNEL, "sms"))
    assert message == Message(
        (EE[1:], LV[1:]), ("MyBank", "MyBank"), ("first try", "second try"), controls=channels
    )
    assert request_record(gw)["recipients"] == ["+3725****67", "+3712****45"]
    assert outcome(gw)["vendor_message_id"] == answer.message_uuid


# --------------------------------------------------------------------------- Messente


async def test_messente_omnimessage_sdk(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path]
) -> None:
    import messente_api

    # Viber is another channel (other prices): the route must name it in channels.
    omni_route = route("omni", "/v1/omnimessage")
    sms = messente_api.SMS(sender="MyBank", text="hello messente")
    viber = messente_api.Viber(sender="MyBank", text="hello viber")
    omni = messente_api.Omnimessage(
        to=EE,
        messages=[messente_api.OmnimessageMessagesInner(viber), messente_api.OmnimessageMessagesInner(sms)],
    )

    def api(gw: Gateway) -> Any:
        conf = messente_api.Configuration(
            host=gw.base + "/v1", username=CLIENT_USER, password=CLIENT_PASSWORD
        )
        conf.ssl_ca_cert = str(pki["ca"])
        return messente_api.OmnimessageApi(messente_api.ApiClient(conf))

    sms_only = await open_gateway(make_gateway, vendor, "messente", [omni_route])
    with pytest.raises(messente_api.exceptions.ForbiddenException) as refused:
        await in_thread(lambda: api(sms_only).send_omnimessage(omni))
    assert json.loads(refused.value.body)["error"]["code"] == "field_not_allowed"
    assert vendor.received == []
    gw = await open_gateway(make_gateway, vendor, "messente", [{**omni_route, "channels": ["sms", "viber"]}])
    answer = await in_thread(lambda: api(gw).send_omnimessage(omni))
    (seen,) = vendor.received
    channels = tuple(Control("messages/*/channel", CHANNEL, c) for c in ("viber", "sms"))
    assert read_back("messente", "/v1/omnimessage", seen) == Message(
        (EE,), ("MyBank", "MyBank"), ("hello viber", "hello messente"), controls=channels
    )
    assert outcome(gw)["vendor_message_id"] == answer.omnimessage_id


async def test_messente_legacy_query_credentials(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    """Messente's legacy API: the client's gateway-issued username and password in the query; the
    vendor gets its own there instead, and the client's never reach it or a log."""
    gw = await open_gateway(
        make_gateway, vendor, "messente", [route("legacy", "/send_sms/", ("GET", "POST"))]
    )
    query = f"username={CLIENT_USER}&password={CLIENT_PASSWORD}&from=MyBank&to=%2B37255512367&text=hi+there"
    async with gw.session.get(f"{gw.base}/send_sms/?{query}") as response:
        assert response.status == 200, await response.text()
        assert (await response.text()).startswith("OK ")
    (seen,) = vendor.received
    assert CLIENT_PASSWORD not in seen.query and CLIENT_USER not in seen.query
    assert read_back("messente", "/send_sms/", seen) == Message((EE,), ("MyBank",), ("hi there",))
    assert CLIENT_PASSWORD not in gw.logs() and "hi there" not in gw.logs()
    # The same fields in both the query and a form body: which one Messente takes is unknown.
    auth = f"username={CLIENT_USER}&password={CLIENT_PASSWORD}"
    async with gw.session.post(
        f"{gw.base}/send_sms/?{auth}&to=%2B37255512367", data={"to": LV, "text": "x"}
    ) as r:
        assert r.status == 400
    # A wrong password in the query is a wrong password.
    async with gw.session.get(
        f"{gw.base}/send_sms/?username={CLIENT_USER}&password=nope&to=%2B3725551236"
    ) as r:
        assert r.status == 401
    assert len(vendor.received) == 1


# --------------------------------------------------------------------------- Plivo


async def test_plivo_sdk(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import plivo
    import plivo.rest.client

    gw = await open_gateway(
        make_gateway, vendor, "plivo", [route("plivo", "/v1/Account/{auth_id}/Message/")], username=PLIVO_USER
    )
    # The SDK has no base-URL option: its module constant is the setting.
    monkeypatch.setattr(plivo.rest.client, "PLIVO_API_BASE_URI", gw.base + "/v1/Account")
    sdk = plivo.RestClient(PLIVO_USER, CLIENT_PASSWORD, timeout=10)
    sdk.session.verify = str(pki["ca"])
    answer = await in_thread(
        lambda: sdk.messages.create(src="MyBank", dst=f"{EE}<{LV[1:]}", text="hello plivo")
    )
    (seen,) = vendor.received
    assert seen.path == f"/v1/Account/{VENDOR_SID}/Message/"  # the real auth id upstream
    assert read_back("plivo", "/v1/Account/{auth_id}/Message/", seen) == Message(
        (EE, LV[1:]), ("MyBank",), ("hello plivo",)
    )
    assert request_record(gw)["recipients"] == ["+3725****67", "+3712****45"]
    assert outcome(gw)["vendor_message_id"] == answer.message_uuid[0]


# --------------------------------------------------------------------------- Infobip


async def test_infobip_app_key(
    make_gateway: GatewayFactory, vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request infobip-api-python-client makes (its SDK takes ~10 s to import, so it is not
    driven here): ``Authorization: App <key>`` with the gateway-issued password as the key."""
    monkeypatch.setenv(APP_KEY_ENV, f"App {VENDOR_TOKEN}")
    credentials = {"type": "header", "name": "Authorization", "value": f"env:{APP_KEY_ENV}"}
    gw = await open_gateway(make_gateway, vendor, "infobip", [route("ib", "/sms/3/messages")], credentials)
    doc = {
        "messages": [
            {
                "sender": "MyBank",
                "destinations": [{"to": EE[1:]}, {"to": LV[1:]}],
                "content": {"text": "hello infobip"},
            },
            {"sender": "Other", "destinations": [{"to": EE[1:]}], "content": {"text": "second message"}},
        ]
    }
    headers = {"Authorization": f"App {CLIENT_PASSWORD}", "Content-Type": "application/json"}
    async with gw.session.post(
        gw.base + "/sms/3/messages", data=json.dumps(doc), headers=headers
    ) as response:
        assert response.status == 200, await response.text()
        answer = await response.json()
    (seen,) = vendor.received
    assert seen.headers["Authorization"] == f"App {VENDOR_TOKEN}"
    assert read_back("infobip", "/sms/3/messages", seen) == Message(
        (EE[1:], LV[1:], EE[1:]), ("MyBank", "Other"), ("hello infobip", "second message")
    )
    record = request_record(gw)
    assert record["sender"] == ["MyBank", "Other"] and record["recipient_count"] == 3
    assert outcome(gw)["vendor_message_id"] == answer["messages"][0]["messageId"]
    # An App key in the query string is a credential too: never forwarded, never logged.
    async with gw.session.post(
        gw.base + f"/sms/3/messages?App={CLIENT_PASSWORD}", data=json.dumps(doc), headers=headers
    ) as response:
        assert response.status == 200
    assert CLIENT_PASSWORD not in vendor.received[1].query
    assert CLIENT_PASSWORD not in gw.logs()


# --------------------------------------------------------------------------- MessageBird


async def test_messagebird_sdk(
    make_gateway: GatewayFactory, vendor: Vendor, trust_ca: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import messagebird
    from messagebird.http_client import HttpClient

    monkeypatch.setenv(ACCESS_KEY_ENV, f"AccessKey {VENDOR_TOKEN}")
    credentials = {"type": "header", "name": "Authorization", "value": f"env:{ACCESS_KEY_ENV}"}
    gw = await open_gateway(make_gateway, vendor, "messagebird", [route("mb", "/messages")], credentials)
    # The SDK's endpoint is the HttpClient it is given.
    http = HttpClient(gw.base + "/", CLIENT_PASSWORD, "messagebird-test")
    sdk = messagebird.Client(CLIENT_PASSWORD, http_client=http)
    answer = await in_thread(lambda: sdk.message_create("MyBank", [EE[1:], LV[1:]], "hello bird"))
    (seen,) = vendor.received
    assert read_back("messagebird", "/messages", seen) == Message(
        (EE[1:], LV[1:]), ("MyBank",), ("hello bird",)
    )
    assert outcome(gw)["vendor_message_id"] == answer.id


# --------------------------------------------------------------------------- AWS SNS


async def test_aws_sns_boto3(make_gateway: GatewayFactory, vendor: Vendor, trust_ca: str) -> None:
    import boto3

    credentials = {
        "type": "aws-sigv4",
        "username": VENDOR_SID,
        "password": "file:secrets/vendor_token",
        "region": "eu-west-1",
    }
    gw = await open_gateway(
        make_gateway, vendor, "aws-sns", [route("sns", "/")], credentials, AWS_USER, clear=True
    )
    sns = boto3.client(
        "sns",
        region_name="eu-north-1",
        endpoint_url=gw.base,  # boto3's setting for the gateway
        aws_access_key_id=AWS_USER,
        aws_secret_access_key=CLIENT_PASSWORD,
        verify=trust_ca,
    )
    attributes = {"AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "MyBank"}}
    answer = await in_thread(
        lambda: sns.publish(PhoneNumber=EE, Message="hello sns", MessageAttributes=attributes)
    )
    (seen,) = vendor.received  # the sandbox checked the gateway's own SigV4 signature
    assert "Credential=" + VENDOR_SID in seen.headers["Authorization"]
    assert read_back("aws-sns", "/", seen) == Message((EE,), ("MyBank",), ("hello sns",))
    assert outcome(gw)["vendor_message_id"] == answer["MessageId"]
    # A wrong secret signs a wrong signature: 401, nothing sent.
    wrong = boto3.client(
        "sns",
        region_name="eu-north-1",
        endpoint_url=gw.base,
        aws_access_key_id=AWS_USER,
        aws_secret_access_key="not-the-password",
        verify=trust_ca,
    )
    with pytest.raises(Exception, match="unauthenticated"):  # the gateway's JSON error, as botocore sees it
        await in_thread(lambda: wrong.publish(PhoneNumber=EE, Message="x"))
    assert len(vendor.received) == 1


# --------------------------------------------------------------------------- every vendor, raw requests


@dataclass(frozen=True)
class Shape:
    """How one vendor's send request looks, for tests that run over every vendor."""

    provider: str
    path: str
    build: Callable[[list[str], str, str, str], tuple[str, bytes]]  # recipients, sender, text, secret
    auth: str = "basic"  # basic | Bearer | App | AccessKey | query
    credentials: dict[str, Any] = field(default_factory=lambda: BASIC)
    multi: bool = True  # several recipients in one request
    bare: bool = False  # the vendor reads numbers without "+"
    secret: bool = False  # the request carries a code besides the body
    sender: bool = True
    route_path: str = ""
    query: str = ""

    def headers(self, password: str = CLIENT_PASSWORD) -> dict[str, str]:
        if self.auth == "basic":
            return {"Authorization": basic(CLIENT_USER, password)}
        if self.auth == "query":
            return {}
        return {"Authorization": f"{self.auth} {password}"}

    def url_query(self, password: str = CLIENT_PASSWORD) -> str:
        if self.auth == "query":
            return f"username={CLIENT_USER}&password={password}"
        return ""


def _form(**fields: str | list[str]) -> tuple[str, bytes]:
    from urllib.parse import urlencode

    return "application/x-www-form-urlencoded", urlencode(fields, doseq=True).encode()


def _json(doc: dict[str, Any]) -> tuple[str, bytes]:
    return "application/json", json.dumps(doc).encode()


def _bare(numbers: list[str]) -> list[str]:
    return [n.removeprefix("+") for n in numbers]


SHAPES: dict[str, Shape] = {
    "twilio": Shape(
        "twilio",
        "/2010-04-01/Accounts/{account}/Messages.json",
        lambda to, s, t, c: _form(To=to[0], From=s, Body=t, ContentVariables=json.dumps({"1": c})),
        multi=False,
        secret=True,
    ),
    "twilio-verify": Shape(
        "twilio",
        "/v2/Services/{service}/Verifications",
        lambda to, s, t, c: _form(To=to[0], Channel="sms", CustomMessage=t, CustomCode=c),
        multi=False,
        secret=True,
        sender=False,
    ),
    "vonage": Shape(
        "vonage",
        "/sms/json",
        lambda to, s, t, c: _form(to=_bare(to)[0], **{"from": s}, text=t),
        multi=False,
        bare=True,
    ),
    "vonage-messages": Shape(
        "vonage-messages",
        "/v1/messages",
        lambda to, s, t, c: _json(
            {
                "message_type": "text",
                "channel": "sms",
                "to": _bare(to)[0],
                "from": s,
                "text": t,
                "failover": [
                    {"message_type": "text", "channel": "sms", "to": n, "from": s, "text": t}
                    for n in _bare(to)[1:]
                ],
            }
        ),
        bare=True,
    ),
    "messente": Shape(
        "messente",
        "/v1/omnimessage",
        lambda to, s, t, c: _json({"to": to[0], "messages": [{"channel": "sms", "sender": s, "text": t}]}),
        multi=False,
    ),
    "messente-legacy": Shape(
        "messente",
        "/send_sms/",
        lambda to, s, t, c: _form(to=to[0], **{"from": s}, text=t),
        auth="query",
        multi=False,
    ),
    "plivo": Shape(
        "plivo",
        "/v1/Account/{auth_id}/Message/",
        lambda to, s, t, c: _json(
            {"src": s, "dst": "<".join(_bare(to)), "text": t, "media_urls": [f"https://x/{c}"]}
        ),
        bare=True,
        secret=True,
    ),
    "sinch": Shape(
        "sinch",
        "/xms/v1/{plan}/batches",
        lambda to, s, t, c: _json({"from": s, "to": to, "body": t, "parameters": {"code": {"default": c}}}),
        auth="Bearer",
        credentials=BEARER,
        bare=True,
        secret=True,
    ),
    "infobip": Shape(
        "infobip",
        "/sms/3/messages",
        lambda to, s, t, c: _json(
            {
                "messages": [
                    {"sender": s, "destinations": [{"to": n} for n in _bare(to)], "content": {"text": t}}
                ]
            }
        ),
        auth="App",
        credentials={"type": "header", "name": "Authorization", "value": f"env:{APP_KEY_ENV}"},
        bare=True,
    ),
    "smsapi": Shape(
        "smsapi",
        "/sms.do",
        lambda to, s, t, c: _form(to=",".join(_bare(to)), **{"from": s}, message=t, param1=c, format="json"),
        auth="Bearer",
        credentials=BEARER,
        bare=True,
        secret=True,
    ),
    "messagebird": Shape(
        "messagebird",
        "/messages",
        lambda to, s, t, c: _json({"originator": s, "recipients": ",".join(_bare(to)), "body": t}),
        auth="AccessKey",
        credentials={"type": "header", "name": "Authorization", "value": f"env:{ACCESS_KEY_ENV}"},
        bare=True,
    ),
    "aws-sns": Shape(
        "aws-sns",
        "/",
        lambda to, s, t, c: _form(
            Action="Publish",
            Version="2010-03-31",
            PhoneNumber=to[0],
            Message=t,
            **{
                "MessageAttributes.entry.1.Name": "AWS.SNS.SMS.SenderID",
                "MessageAttributes.entry.1.Value.DataType": "String",
                "MessageAttributes.entry.1.Value.StringValue": s,
            },
        ),
        credentials={
            "type": "aws-sigv4",
            "username": VENDOR_SID,
            "password": "file:secrets/vendor_token",
            "region": "eu-west-1",
        },
        multi=False,
    ),
}


def concrete(path: str) -> str:
    return (
        path.replace("{account}", CLIENT_USER)
        .replace("{service}", "VA" + "2" * 32)
        .replace("{auth_id}", PLIVO_USER)
        .replace("{plan}", "plan01")
    )


@pytest.fixture
def vendor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(APP_KEY_ENV, f"App {VENDOR_TOKEN}")
    monkeypatch.setenv(ACCESS_KEY_ENV, f"AccessKey {VENDOR_TOKEN}")


async def open_shape(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    shape: Shape,
    route_extra: dict[str, Any] | None = None,
    **client_extra: Any,
) -> Gateway:
    methods = ("GET", "POST") if shape.auth == "query" else ("POST",)
    return await open_gateway(
        make_gateway,
        vendor,
        shape.provider,
        [{**route("r", shape.path, methods), **(route_extra or {})}],
        shape.credentials,
        **client_extra,
    )


async def send(
    gw: Gateway,
    shape: Shape,
    recipients: list[str],
    sender: str = "MyBank",
    text: str = "hello",
    code: str = "493817",
    password: str = CLIENT_PASSWORD,
) -> tuple[int, dict[str, Any]]:
    content_type, body = shape.build(recipients, sender, text, code)
    query = shape.url_query(password)
    url = gw.base + concrete(shape.path) + (f"?{query}" if query else "")
    headers = {**shape.headers(password), "Content-Type": content_type}
    async with gw.session.post(url, data=body, headers=headers) as response:
        raw = await response.read()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {}
    return response.status, doc if isinstance(doc, dict) else {}


ALL = sorted(SHAPES)
MULTI = sorted(name for name, shape in SHAPES.items() if shape.multi)


@pytest.mark.parametrize("name", ALL)
async def test_every_vendor_accepts_a_send_and_logs_it_redacted(
    make_gateway: GatewayFactory, vendor: Vendor, vendor_env: None, name: str
) -> None:
    shape = SHAPES[name]
    gw = await open_shape(make_gateway, vendor, shape)
    status, _ = await send(gw, shape, [EE], text="redacted text 77", code="493817")
    assert status in (200, 201, 202), vendor.received
    (seen,) = vendor.received
    assert CLIENT_PASSWORD not in json.dumps(seen.headers) + seen.query  # the vendor got its own credential
    record = request_record(gw)
    assert record["recipients"] == ["+3725****67"]
    assert record["body"]["hmac_sha256"] == hashed("redacted text 77")
    if shape.secret:
        assert record["secrets"] and all("hmac_sha256" in s for s in record["secrets"])
    assert outcome(gw)["vendor_message_id"]


@pytest.mark.parametrize("name", MULTI)
async def test_multi_recipient_refusal_names_the_position(
    make_gateway: GatewayFactory, vendor: Vendor, vendor_env: None, name: str
) -> None:
    shape = SHAPES[name]
    gw = await open_shape(make_gateway, vendor, shape, countries=["EE"])
    status, doc = await send(gw, shape, [EE, "+3725551"])
    assert (status, doc["error"]["code"]) == (422, "invalid_recipient")
    assert "recipient 2" in doc["error"]["message"] and "3725551" not in doc["error"]["message"]
    status, doc = await send(gw, shape, [EE, EE, LV])
    assert (status, doc["error"]["code"]) == (403, "destination_not_allowed")
    assert "recipient 3" in doc["error"]["message"] and "37120012345" not in json.dumps(doc)
    status, _ = await send(gw, shape, [EE, "+37256789012"])
    assert status in (200, 201, 202)
    assert request_record(gw)["recipient_count"] == 2
    assert len(vendor.received) == 1
    assert "37120012345" not in gw.logs() and '3725551"' not in gw.logs()


FULL_WIDTH = "+" + "".join(chr(ord(d) - ord("0") + 0xFF10) for d in EE[1:])
ARABIC_INDIC = "+" + "".join(chr(ord(d) - ord("0") + 0x0660) for d in EE[1:])


@pytest.mark.parametrize("name", ALL)
async def test_numbers_as_the_vendor_reads_them(
    make_gateway: GatewayFactory, vendor: Vendor, vendor_env: None, name: str
) -> None:
    """Non-ASCII digits are refused everywhere (no vendor documents reading them); digits without
    "+" are read as international only where the vendor reads them so; separators are refused."""
    shape = SHAPES[name]
    gw = await open_shape(make_gateway, vendor, shape)
    refused = [FULL_WIDTH, ARABIC_INDIC, "+372 5551 2367", "0037255512367", "+372-555-12367"]
    for number in refused if shape.bare else [*refused, EE[1:]]:
        status, doc = await send(gw, shape, [number])
        assert (status, doc["error"]["code"]) == (422, "invalid_recipient"), number
    assert vendor.received == []
    if shape.bare:  # the shape writes EE without its "+": the same number to the vendor
        status, _ = await send(gw, shape, [EE])
        assert status in (200, 201, 202)
        assert [r for r in gw.audit() if r["event"] == "request"][-1]["recipients"] == ["+3725****67"]


@pytest.mark.parametrize("name", ["sinch", "twilio", "smsapi"])
async def test_route_number_types_refuse_premium_rate(
    make_gateway: GatewayFactory, vendor: Vendor, name: str
) -> None:
    import phonenumbers

    premium = phonenumbers.format_number(
        phonenumbers.example_number_for_type("GB", phonenumbers.PhoneNumberType.PREMIUM_RATE),
        phonenumbers.PhoneNumberFormat.E164,
    )
    shape = SHAPES[name]
    gw = await open_shape(make_gateway, vendor, shape, {"number_types": ["mobile", "fixed_line_or_mobile"]})
    status, doc = await send(gw, shape, [premium])
    assert (status, doc["error"]["code"]) == (403, "destination_not_allowed")
    assert "number type" in doc["error"]["message"] and premium[1:] not in json.dumps(doc)
    assert request_record(gw)["detail"] == "number_type:premium_rate"
    status, _ = await send(gw, shape, [EE])
    assert status in (200, 201, 202)
    assert len(vendor.received) == 1


# --------------------------------------------------------------------------- the log-leak canary


@pytest.mark.parametrize("body_mode", ["hash", "mask"])
@pytest.mark.parametrize("name", ALL)
async def test_canary_over_every_vendor(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    vendor_env: None,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    name: str,
    body_mode: str,
) -> None:
    """Unique markers in the body, the codes, the recipients and the credentials go in through
    every vendor's shape, accepted and refused; none comes out in any log, stdout or stderr."""
    from gateway.recipients.phone import parse_recipient
    from tests.test_canary import fresh_number

    def valid_number(number: str) -> bool:
        try:
            return parse_recipient(number).region == "LV"
        except Exception:
            return False

    shape = SHAPES[name]
    settings_mode = {"logging": {"body": body_mode}}
    gw = await make_gateway(
        vendor.base_url,
        settings={
            **settings_mode,
            "upstream": {"provider": shape.provider, "credentials": shape.credentials},
        },
        policies={
            "p": {"client": [client(countries=["EE"])], "route": [route("r", shape.path, ("GET", "POST"))]}
        },
    )
    text = "Your code is " + "".join(secrets.choice("0123456789") for _ in range(12))
    # digits and letters: under body = "mask" a code's letters must not show either
    code = "".join(secrets.choice("0123456789") for _ in range(9)) + "".join(
        secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10)
    )
    numbers = [fresh_number(), fresh_number()]
    latvian = next(  # a valid Latvian number (about 1 in 80 of "+3712" + 7 digits is not)
        n for n in ("+3712" + fresh_number()[5:] for _ in range(100)) if valid_number(n)
    )
    outcomes = [
        (await send(gw, shape, numbers[: 2 if shape.multi else 1], text=text, code=code))[0],
        (
            await send(
                gw,
                shape,
                [numbers[0], latvian] if shape.multi else [LV],
                text=text,
                code=code,
            )
        )[0],
        (
            await send(
                gw,
                shape,
                [numbers[0], numbers[1][:7]] if shape.multi else [numbers[1][:7]],
                text=text,
                code=code,
            )
        )[0],
        (await send(gw, shape, numbers[:1], text=text, code=code, password="x" + CLIENT_PASSWORD))[0],
    ]
    assert outcomes[0] in (200, 201, 202) and outcomes[1:] == [403, 422, 401]
    record = request_record(gw)
    if shape.secret:
        assert record["secrets"], "the code is in the audit record, redacted"
    digits = text.removeprefix("Your code is ")
    forbidden = {
        "body digits": digits,
        "code": code,
        "code digits": code[:9],
        "code letters": code[9:],
        "client password": CLIENT_PASSWORD,
        "vendor token": VENDOR_TOKEN,
        **{f"recipient {i}": n[1:] for i, n in enumerate(numbers)},
    }
    written = gw.logs() + capfd.readouterr().out + capfd.readouterr().err + caplog.text
    for what, value in forbidden.items():
        assert value not in written, f"{what} leaked"


# --------------------------------------------------------------------------- credential slots


async def test_two_credentials_at_once_are_refused(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    """Basic in the header and a username/password in the query: which one is the caller?"""
    shape = SHAPES["messente"]
    gw = await open_shape(make_gateway, vendor, shape)
    content_type, body = shape.build([EE], "MyBank", "x", "1")
    headers = {**shape.headers(), "Content-Type": content_type}
    url = f"{gw.base}/v1/omnimessage?username={CLIENT_USER}&password={CLIENT_PASSWORD}"
    async with gw.session.post(url, data=body, headers=headers) as response:
        assert response.status == 401
    assert request_record(gw)["detail"] == "ambiguous_credentials"
    # The query credential alone works on the Omnimessage path too, and never reaches the vendor.
    async with gw.session.post(url, data=body, headers={"Content-Type": content_type}) as response:
        assert response.status == 201
    (seen,) = vendor.received
    assert seen.query == "" and seen.headers["Authorization"].startswith("Basic ")
    assert CLIENT_PASSWORD not in gw.logs()


async def test_sigv4_outside_the_clock_window_is_refused(
    make_gateway: GatewayFactory, vendor: Vendor, trust_ca: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.test_adapters import botocore_signed

    shape = SHAPES["aws-sns"]
    gw = await open_shape(make_gateway, vendor, shape, username=AWS_USER, clear=True)
    body = b"Action=Publish&PhoneNumber=%2B37255512367&Message=x"
    for age_s, status in ((600, 401), (-600, 401), (0, 200)):
        when = (datetime.now(UTC) - timedelta(seconds=age_s)).strftime("%Y%m%dT%H%M%SZ")
        signed = botocore_signed(CLIENT_PASSWORD, body, when, gw.base + "/", AWS_USER)
        headers = {k: v for k, v in signed.headers.items() if k.lower() != "host"}
        async with gw.session.post(gw.base + "/", data=body, headers=headers) as response:
            assert response.status == status, age_s
    assert len(vendor.received) == 1


async def test_token_slot_never_accepts_a_username_as_token(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    shape = SHAPES["sinch"]
    gw = await open_shape(make_gateway, vendor, shape)
    content_type, body = shape.build([EE], "MyBank", "x", "1")
    for token in (CLIENT_USER, sha(CLIENT_PASSWORD), "", f"{CLIENT_USER}:{CLIENT_PASSWORD}"):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        async with gw.session.post(
            gw.base + "/xms/v1/plan01/batches", data=body, headers=headers
        ) as response:
            assert response.status == 401, token
    assert vendor.received == []
