"""Closed by default: a vendor request field the reader does not declare is refused, and a declared
control or callback field passes only where the route's policy allows it.

End to end through the real gateway with a stand-in vendor that records every byte it gets: each
refusal shows nothing reached the vendor, and the audit detail names the field, never its value.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from gateway.server.config import ConfigError, load_config
from tests.conftest import (
    DEFAULT_POLICY,
    GatewayFactory,
    Recorder,
    error_of,
    post,
    write_config,
)

EE = "+37255512367"
PUBLIC = "https://sms-gw.example.com"
CALLBACK_PATH = "/callbacks/twilio/status"
SEND = {"To": EE, "From": "MyBank", "Body": "hello"}
VERIFY_PATH = "/v2/Services/VA" + "1" * 32 + "/Verifications"
MARKER = "Zq7marker"  # a value that must never appear in a log


def _policies(route: dict[str, Any] | None = None, routes: list[dict[str, Any]] | None = None) -> dict:
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["client"][0].update(countries=["EE"], scopes=["sms:send", "otp:send"])
    doc["route"][0].update(route or {})
    doc["route"].extend(routes or [])
    return {"default": doc}


CALLBACK_ROUTE = {
    "name": "twilio-status",
    "path": CALLBACK_PATH,
    "kind": "webhook",
    "signature": "twilio",
    "forward_to": "http://127.0.0.1:9/events",
}


async def _gateway(
    make_gateway: GatewayFactory,
    vendors,
    route: dict[str, Any] | None = None,
    routes: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
):
    recorder = Recorder()
    vendor = await vendors(recorder)
    gw = await make_gateway(vendor.base_url, settings=settings, policies=_policies(route, routes))
    return gw, recorder


async def _send(gw, fields: dict[str, str] | list[tuple[str, str]], path: str | None = None, query: str = ""):
    return await post(gw, urlencode(fields).encode(), path=path, query=query)


def _denials(gw) -> list[tuple[str, str]]:
    return [(r["reason"], r["detail"]) for r in gw.audit() if r.get("decision") == "deny"]


# --------------------------------------------------------------------------- unknown fields


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({**SEND, "GroupIds": MARKER}, "body:GroupIds"),
        ({**SEND, "Persona": MARKER}, "body:Persona"),
        ({**SEND, "To2": MARKER}, "body:To2"),
    ],
)
async def test_an_undeclared_body_field_is_400_unknown_field(
    make_gateway: GatewayFactory, vendors, fields: dict[str, str], detail: str
) -> None:
    gw, recorder = await _gateway(make_gateway, vendors)
    response, payload = await _send(gw, fields)
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "unknown_field"
    assert recorder.seen == []
    assert _denials(gw) == [("unknown_field", detail)]
    assert MARKER not in gw.logs()


@pytest.mark.parametrize(
    "query",
    [
        "Foo=%2B37255512399",
        "%2B37255512399=x",  # a number as the name: the audit detail names it, its digits hidden
        "x=1;StatusCallback=https://a.example/",
        "api_key=k",
        "PageSize=50",
    ],
)
async def test_an_undeclared_query_parameter_is_400_unknown_field(
    make_gateway: GatewayFactory, vendors, query: str
) -> None:
    """Messages.json create takes no query parameter: the vendor would read a client's own
    (a credential name, a field it also reads from the query) unchecked."""
    gw, recorder = await _gateway(make_gateway, vendors)
    response, payload = await _send(gw, SEND, query=query)
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "unknown_field"
    assert recorder.seen == []
    assert "37255512399" not in gw.logs()  # ordinary query values are logged, numbers masked


# --------------------------------------------------------------------------- callback URLs


@pytest.mark.parametrize(
    "spelling", ["StatusCallback", "statuscallback", " StatusCallback", "StatusCallback[]"]
)
async def test_a_callback_url_to_another_host_never_reaches_the_vendor(
    make_gateway: GatewayFactory, vendors, spelling: str
) -> None:
    gw, recorder = await _gateway(make_gateway, vendors)
    response, payload = await _send(gw, {**SEND, spelling: "https://attacker.example/cb"})
    assert response.status == 403, payload
    assert error_of(payload)["code"] == "field_not_allowed"
    assert recorder.seen == []
    assert _denials(gw) == [("field_not_allowed", "callback_url:StatusCallback")]


async def test_an_allowed_callback_url_may_name_only_the_gateways_own_callback_route(
    make_gateway: GatewayFactory, vendors
) -> None:
    gw, recorder = await _gateway(
        make_gateway,
        vendors,
        route={"allow_fields": ["StatusCallback"]},
        routes=[CALLBACK_ROUTE],
        settings={"server": {"public_url": PUBLIC}},
    )
    for url in (
        "https://attacker.example/callbacks/twilio/status",
        PUBLIC + ".attacker.example" + CALLBACK_PATH,
        PUBLIC + "/callbacks/other",
        PUBLIC + CALLBACK_PATH + "?to=https://attacker.example",
        "https://x@sms-gw.example.com" + CALLBACK_PATH,
    ):
        response, payload = await _send(gw, {**SEND, "StatusCallback": url})
        assert response.status == 403, (url, payload)
        assert error_of(payload)["code"] == "field_not_allowed"
    assert recorder.seen == []
    # allowed, but written in a way the vendor could read as another field: 400
    response, payload = await _send(gw, {**SEND, "statusCallback": PUBLIC + CALLBACK_PATH})
    assert response.status == 400, payload
    assert recorder.seen == []
    response, payload = await _send(gw, {**SEND, "StatusCallback": PUBLIC + CALLBACK_PATH})
    assert response.status == 201, payload
    assert dict(parse_qsl(recorder.seen[0].body.decode()))["StatusCallback"] == PUBLIC + CALLBACK_PATH


# --------------------------------------------------------------------------- control fields


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"SendAt": "2030-01-01T00:00:00Z", "ScheduleType": "fixed"}, "control:SendAt"),
        ({"MaxPrice": "5.00"}, "control:MaxPrice"),
        ({"RiskCheck": "disable"}, "control:RiskCheck"),
        ({"MessagingServiceSid": "MG" + "0" * 32}, "control:MessagingServiceSid"),
        ({"ApplicationSid": "AP" + "0" * 32}, "control:ApplicationSid"),
        ({"ValidityPeriod": "14400"}, "control:ValidityPeriod"),
        ({"ShortenUrls": "true"}, "control:ShortenUrls"),
        ({"SendAsMms": "true"}, "control:SendAsMms"),
        ({"To": "whatsapp:" + EE}, "channel:To"),
        ({"To": "messenger:" + EE}, "channel:To"),
    ],
)
async def test_control_fields_are_refused_unless_the_route_allows_them(
    make_gateway: GatewayFactory, vendors, extra: dict[str, str], detail: str
) -> None:
    gw, recorder = await _gateway(make_gateway, vendors)
    response, payload = await _send(gw, {**SEND, **extra})
    assert response.status == 403, payload
    assert error_of(payload)["code"] == "field_not_allowed"
    assert recorder.seen == []
    assert _denials(gw) == [("field_not_allowed", detail)]


async def test_allowed_control_fields_and_channels_reach_the_vendor(
    make_gateway: GatewayFactory, vendors
) -> None:
    gw, recorder = await _gateway(
        make_gateway,
        vendors,
        route={
            "allow_fields": ["SendAt", "ScheduleType", "MessagingServiceSid"],
            "channels": ["sms", "whatsapp"],
        },
    )
    schedule = {
        "SendAt": "2030-01-01T00:00:00Z",
        "ScheduleType": "fixed",
        "MessagingServiceSid": "MG" + "0" * 32,
    }
    response, payload = await _send(gw, {**SEND, **schedule})
    assert response.status == 201, payload
    response, payload = await _send(gw, {**SEND, "To": "whatsapp:" + EE})
    assert response.status == 201, payload
    # RiskCheck=enable is Twilio's default, so it needs no allowance
    response, payload = await _send(gw, {**SEND, "RiskCheck": "enable"})
    assert response.status == 201, payload
    # still not allowed here
    response, payload = await _send(gw, {**SEND, "MaxPrice": "1"})
    assert response.status == 403, payload
    sent = [dict(parse_qsl(s.body.decode())) for s in recorder.seen]
    assert sent[0]["SendAt"] == "2030-01-01T00:00:00Z" and sent[1]["To"] == "whatsapp:" + EE
    assert len(sent) == 3


async def test_a_messaging_service_alone_is_the_sender(make_gateway: GatewayFactory, vendors) -> None:
    gw, recorder = await _gateway(make_gateway, vendors)
    response, payload = await _send(gw, {"To": EE, "MessagingServiceSid": "MG" + "0" * 32, "Body": "hi"})
    assert response.status == 201, payload
    assert len(recorder.seen) == 1


async def test_harmless_fields_pass(make_gateway: GatewayFactory, vendors) -> None:
    gw, recorder = await _gateway(make_gateway, vendors)
    extra = {
        "ProvideFeedback": "true",
        "Attempt": "1",
        "ContentRetention": "retain",
        "AddressRetention": "retain",
        "SmartEncoded": "true",
        "MessageIntent": "transactional",
    }
    response, payload = await _send(gw, {**SEND, **extra})
    assert response.status == 201, payload
    assert dict(parse_qsl(recorder.seen[0].body.decode())) == {**SEND, **extra}


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"Channel": "call"}, "channel:Channel"),
        ({"Channel": "whatsapp"}, "channel:Channel"),
        ({"Channel": "SMS "}, "channel:Channel"),
        ({"Channel": "sms", "RiskCheck": "disable"}, "control:RiskCheck"),
        ({"Channel": "sms", "ChannelConfiguration": "{}"}, "control:ChannelConfiguration"),
    ],
)
async def test_verify_channels_other_than_sms_are_refused(
    make_gateway: GatewayFactory, vendors, extra: dict[str, str], detail: str
) -> None:
    verify = {
        "name": "verify",
        "path": "/v2/Services/{service}/Verifications",
        "kind": "otp",
        "auth": ["basic"],
    }
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["client"][0].update(countries=["EE"])
    doc["route"] = [verify]
    recorder = Recorder()
    vendor = await vendors(recorder)
    gw = await make_gateway(vendor.base_url, policies={"default": doc})
    response, payload = await _send(gw, {"To": EE, **extra}, path=VERIFY_PATH)
    assert response.status == 403, payload
    assert error_of(payload)["code"] == "field_not_allowed"
    assert recorder.seen == []
    response, payload = await _send(gw, {"To": EE, "Channel": "sms"}, path=VERIFY_PATH)
    assert response.status == 201, payload


# --------------------------------------------------------------------------- OTP detection


async def test_otp_detect_sees_template_variables_and_template_sends(
    make_gateway: GatewayFactory, vendors
) -> None:
    otp = {"detect": r"\d{6}", "max_sends": 1, "window": "1 hour"}
    gw, recorder = await _gateway(make_gateway, vendors, route={"otp": otp})
    variables = {"To": EE, "From": "MyBank", "ContentVariables": '{"1":"482915"}'}
    template = {"To": EE, "From": "MyBank", "ContentSid": "HX" + "0" * 32}
    # a text without a code is no OTP send: it never counts
    for _ in range(2):
        response, payload = await _send(gw, SEND)
        assert response.status == 201, payload
    response, payload = await _send(gw, variables)
    assert response.status == 201, payload
    response, payload = await _send(gw, template)  # a template's text is unseen: counted as OTP
    assert response.status == 429, payload
    assert error_of(payload)["code"] == "otp_retry_cap"
    assert len(recorder.seen) == 3
    assert "482915" not in gw.logs()


# --------------------------------------------------------------------------- config


def _config_error(tmp_path: Path, pki, route: dict[str, Any], settings: dict[str, Any] | None = None) -> str:
    config = write_config(tmp_path / "cfg", pki, "https://127.0.0.1:9", settings, _policies(route))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    return str(info.value)


def test_allow_fields_must_name_a_control_field_of_the_routes_vendor(tmp_path: Path, pki) -> None:
    text = _config_error(tmp_path, pki, {"allow_fields": ["Body"]})
    assert "default.toml" in text and "route[0].allow_fields[0]" in text and "SendAt" in text
    text = _config_error(tmp_path, pki, {"allow_fields": ["StatusCallback"]})
    assert "route[0].allow_fields[0]" in text and "public_url" in text
    text = _config_error(tmp_path, pki, {"channels": ["SMS"]})
    assert "route[0].channels" in text


# --------------------------------------------------------------------------- generic


GENERIC = {
    "format": "json",
    "recipient": "/messages/*/to",
    "sender": "/messages/*/from",
    "body": "/messages/*/text",
    "fields": {
        "/messages/*/notifyUrl": "callback_url",
        "/messages/*/validityPeriod": "control",
        "/messages/*/templateId": "template",
        "/bulkId": "harmless",
    },
}


async def test_generic_lets_through_only_the_configured_fields(make_gateway: GatewayFactory, vendors) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["client"][0].update(countries=["EE"])
    doc["route"][0].update(path="/sms/send", allow_fields=["messages/*/validityPeriod"])
    gw = await make_gateway(
        vendor.base_url,
        settings={"upstream": {"provider": "generic", "generic": GENERIC}},
        policies={"default": doc},
    )

    async def send(message: dict[str, Any], **top: Any) -> tuple[int, dict[str, Any] | None]:
        body = json.dumps({"messages": [{"to": EE, "from": "MyBank", "text": "hi", **message}], **top})
        response, payload = await post(gw, body.encode(), content_type="application/json", path="/sms/send")
        return response.status, (error_of(payload) if response.status >= 400 else None)

    status, error = await send({"groupId": "g1"})  # a fan-out field nobody declared
    assert (status, error and error["code"]) == (400, "unknown_field")
    status, error = await send({}, Bulkid="b1")  # a declared field in another case
    assert (status, error and error["code"]) == (400, "bad_request")
    status, error = await send({"notifyUrl": "https://attacker.example/cb"})
    assert (status, error and error["code"]) == (403, "field_not_allowed")
    assert recorder.seen == []
    assert _denials(gw) == [
        ("unknown_field", "body:messages/*/groupId"),
        ("bad_request", "field:bulkId"),
        ("field_not_allowed", "callback_url:messages/*/notifyUrl"),
    ]
    status, _ = await send({"validityPeriod": 60, "templateId": "t1"}, bulkId="b1")
    assert status == 201
    assert len(recorder.seen) == 1


# --------------------------------------------------------------------------- Vonage, Messente

EE_BARE = EE[1:]
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


async def _vendor_gateway(make_gateway: GatewayFactory, vendors, provider: str, path: str, **route: Any):
    recorder = Recorder()
    vendor = await vendors(recorder)
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["client"][0].update(countries=["EE"])
    doc["route"][0].update(name="send", path=path, methods=["GET", "POST"], **route)
    gw = await make_gateway(
        vendor.base_url, settings={"upstream": {"provider": provider}}, policies={"default": doc}
    )
    return gw, recorder


VONAGE_SMS = {"to": EE_BARE, "from": "MyBank", "text": "hi"}
VONAGE_MSG = {"message_type": "text", "channel": "sms", "to": EE_BARE, "from": "MyBank", "text": "hi"}
OMNI = {"to": EE, "messages": [{"channel": "sms", "sender": "MyBank", "text": "hi"}]}
LEGACY = {"to": EE, "from": "MyBank", "text": "hi"}


@pytest.mark.parametrize(
    ("provider", "path", "content_type", "body", "status", "detail"),
    [
        (
            "vonage",
            "/sms/json",
            FORM,
            {**VONAGE_SMS, "callback": "https://a.example/"},
            403,
            "callback_url:callback",
        ),
        ("vonage", "/sms/json", FORM, {**VONAGE_SMS, "protocol-id": "64"}, 403, "control:protocol-id"),
        ("vonage", "/sms/json", FORM, {**VONAGE_SMS, "message-class": "0"}, 403, "control:message-class"),
        ("vonage", "/sms/json", FORM, {**VONAGE_SMS, "type": "binary", "body": "00"}, 403, "control:type"),
        (
            "vonage",
            "/sms/json",
            FORM,
            {**VONAGE_SMS, "trusted-number": "true"},
            403,
            "control:trusted-number",
        ),
        (
            "vonage",
            "/sms/json",
            FORM,
            {**VONAGE_SMS, "Callback": "https://a.example/"},
            403,
            "callback_url:callback",
        ),
        ("vonage", "/sms/json", FORM, {**VONAGE_SMS, "group": "g1"}, 400, "body:group"),
        (
            "vonage-messages",
            "/v1/messages",
            JSON,
            {**VONAGE_MSG, "webhook_url": "https://a.example/"},
            403,
            "callback_url:webhook_url",
        ),
        (
            "vonage-messages",
            "/v1/messages",
            JSON,
            {**VONAGE_MSG, "channel": "whatsapp"},
            403,
            "channel:channel",
        ),
        (
            "vonage-messages",
            "/v1/messages",
            JSON,
            {**VONAGE_MSG, "failover": [{**VONAGE_MSG, "webhook_url": "https://a.example/"}]},
            403,
            "callback_url:failover/*/webhook_url",
        ),
        (
            "vonage-messages",
            "/v1/messages",
            JSON,
            {**VONAGE_MSG, "sms": {"pool_id": "p1"}},
            403,
            "control:sms/pool_id",
        ),
        ("vonage-messages", "/v1/messages", JSON, {**VONAGE_MSG, "sms": {"x": 1}}, 400, "body:sms/x"),
        (
            "messente",
            "/v1/omnimessage",
            JSON,
            {**OMNI, "dlr_url": "https://a.example/"},
            403,
            "callback_url:dlr_url",
        ),
        (
            "messente",
            "/v1/omnimessage",
            JSON,
            {**OMNI, "time_to_send": "2030-01-01T00:00"},
            403,
            "control:time_to_send",
        ),
        (
            "messente",
            "/v1/omnimessage",
            JSON,
            {"to": EE, "messages": [{"channel": "whatsapp", "sender": "MyBank", "text": "hi"}]},
            403,
            "channel:messages/*/channel",
        ),
        ("messente", "/v1/omnimessage", JSON, {**OMNI, "groups": ["g1"]}, 400, "body:groups"),
        (
            "messente",
            "/send_sms/",
            FORM,
            {**LEGACY, "dlr-url": "https://a.example/"},
            403,
            "callback_url:dlr-url",
        ),
        (
            "messente",
            "/send_sms/",
            FORM,
            {**LEGACY, "time_to_send": "1900000000"},
            403,
            "control:time_to_send",
        ),
        ("messente", "/send_sms/", FORM, {**LEGACY, "charset": "latin1"}, 403, "control:charset"),
    ],
)
async def test_vonage_and_messente_control_fields_and_strangers_are_refused(
    make_gateway: GatewayFactory,
    vendors,
    provider: str,
    path: str,
    content_type: str,
    body: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    gw, recorder = await _vendor_gateway(make_gateway, vendors, provider, path)
    data = urlencode(body).encode() if content_type == FORM else json.dumps(body).encode()
    response, payload = await post(gw, data, content_type=content_type, path=path)
    assert response.status == status, payload
    assert error_of(payload)["code"] == ("unknown_field" if status == 400 else "field_not_allowed")
    assert recorder.seen == []
    assert _denials(gw) == [(error_of(payload)["code"], detail)]
    # the same request without the field goes through
    plain = {"vonage": VONAGE_SMS, "vonage-messages": VONAGE_MSG}.get(provider) or (
        OMNI if content_type == JSON else LEGACY
    )
    data = urlencode(plain).encode() if content_type == FORM else json.dumps(plain).encode()
    response, payload = await post(gw, data, content_type=content_type, path=path)
    assert response.status in (200, 201, 202), payload


async def test_messente_legacy_query_takes_only_its_own_parameters(
    make_gateway: GatewayFactory, vendors
) -> None:
    gw, recorder = await _vendor_gateway(make_gateway, vendors, "messente", "/send_sms/")
    for query, code in (
        ("dlr-url=https://a.example/", "field_not_allowed"),
        ("DLR-URL=https://a.example/", "field_not_allowed"),
        ("foo=1", "unknown_field"),
    ):
        response, payload = await post(gw, urlencode(LEGACY).encode(), path="/send_sms/", query=query)
        assert response.status in (400, 403), payload
        assert error_of(payload)["code"] == code
    assert recorder.seen == []
    gw2, recorder2 = await _vendor_gateway(
        make_gateway, vendors, "messente", "/send_sms/", allow_fields=["validity"]
    )
    response, payload = await post(gw2, urlencode(LEGACY).encode(), path="/send_sms/", query="validity=60")
    assert response.status == 201, payload
    assert recorder2.seen[0].raw_query.startswith("validity=60")
