"""Closed by default, for Plivo, Sinch, Infobip, SMSAPI, MessageBird and AWS SNS, end to end.

Every request goes through the real gateway to a stand-in vendor that records what reaches it.
A callback URL, a schedule, a price cap or a contact group set per message used to pass the
gateway unread; now every field of each vendor request is declared with its role, a control or
callback field needs the route's ``allow_fields`` (and a callback URL must name the gateway's own
callback route), a fan-out field is never let through, and anything undeclared is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.server.config import ConfigError, load_config
from tests.conftest import CLIENT_PASSWORD as PASSWORD
from tests.conftest import CLIENT_USER, GatewayFactory, Vendor, sha, write_config
from tests.vendor_fields import (
    ACCESS_KEY_ENV,
    APP_KEY_ENV,
    CALLBACK_PATH,
    CASES,
    ELSEWHERE,
    NAMES,
    NEVER,
    OWN_CALLBACK,
    PUBLIC_URL,
    VendorCase,
    control_value,
    display,
)

OK = (200, 201, 202)
HOOK_SECRET_ENV = "SMSGW_TEST_HOOK_SECRET"


@pytest.fixture(autouse=True)
def vendor_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import VENDOR_TOKEN

    monkeypatch.setenv(APP_KEY_ENV, f"App {VENDOR_TOKEN}")
    monkeypatch.setenv(ACCESS_KEY_ENV, f"AccessKey {VENDOR_TOKEN}")
    monkeypatch.setenv(HOOK_SECRET_ENV, "x" * 32)


async def open_case(
    make_gateway: GatewayFactory, vendor: Vendor, case: VendorCase, **route_extra: Any
) -> Any:
    send = {
        "name": "send",
        "path": case.path,
        "methods": ["POST"],
        "kind": "sms",
        "auth": ["basic"],
        "scopes": ["sms:send"],
        **route_extra,
    }
    callback = {
        "name": "receipts",
        "path": CALLBACK_PATH,
        "methods": ["POST"],
        "kind": "webhook",
        "auth": [],
        "signature": "hmac",
        "signing_secret": f"env:{HOOK_SECRET_ENV}",
        "forward_to": "http://127.0.0.1:9/receipts",
        "webhook": {"header": "X-Signature"},
    }
    client = {
        "id": "billing",
        "scopes": ["sms:send"],
        "countries": ["EE"],
        "basic": [{"username": CLIENT_USER, "password_sha256": sha(PASSWORD)}],
    }
    return await make_gateway(
        vendor.base_url,
        settings={
            "server": {"public_url": PUBLIC_URL},
            "upstream": {"provider": case.provider, "credentials": case.credentials},
        },
        policies={"p": {"client": [client], "route": [send, callback]}},
    )


async def send(gw: Any, case: VendorCase, request: Any, query: str = "") -> tuple[int, dict[str, Any]]:
    url = gw.base + case.url_path + (f"?{query}" if query else "")
    async with gw.session.post(url, data=case.encode(request), headers=case.headers()) as response:
        raw = await response.read()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {}
    return response.status, doc if isinstance(doc, dict) else {}


def code_of(doc: dict[str, Any]) -> str | None:
    error = doc.get("error")
    return error.get("code") if isinstance(error, dict) else None


def last_refusal(gw: Any) -> dict[str, Any]:
    return [r for r in gw.audit() if r.get("event") == "request"][-1]


# --------------------------------------------------------------------------- the list, by name

#: Callback URLs set per message (each used to reach the vendor unread).
CALLBACKS = [
    ("plivo", "url"),
    ("sinch", "callback_url"),
    ("infobip", "/messages/*/webhooks/delivery/url"),
    ("infobip", "/options/tracking/trackingUrl"),
    ("infobip-v2", "/messages/*/notifyUrl"),
    ("infobip-v2", "/urlOptions/trackingUrl"),
    ("smsapi", "notify_url"),
    ("messagebird", "reportUrl"),
]
#: Control fields: price caps, scheduling, validity, routes (each used to pass unpoliced).
CONTROLS = [
    ("aws-sns", "/MessageAttributes/AWS.SNS.SMS.MaxPrice", "0.50"),
    ("aws-sns", "/MessageAttributes/AWS.SNS.SMS.SMSType", "Transactional"),
    ("sinch", "send_at", "2030-01-01T00:00:00Z"),
    ("sinch", "expire_at", "2030-01-02T00:00:00Z"),
    ("infobip", "/options/schedule/sendAt", "2030-01-01T00:00:00.000+0000"),
    ("infobip", "/messages/*/options/validityPeriod", {"amount": 3, "timeUnit": "DAYS"}),
    ("infobip-v2", "/messages/*/sendAt", "2030-01-01T00:00:00.000+0000"),
    ("smsapi", "date", "2030-01-01T00:00:00+00:00"),
    ("smsapi", "fast", "1"),
    ("messagebird", "scheduledDatetime", "2030-01-01T00:00:00+00:00"),
    ("messagebird", "gateway", 10),
    ("plivo", "message_expiry", 600),
]


@pytest.mark.parametrize(("name", "field"), CALLBACKS, ids=[f"{n}-{f}" for n, f in CALLBACKS])
async def test_a_callback_url_set_per_message_never_reaches_the_vendor(
    make_gateway: GatewayFactory, vendor: Vendor, name: str, field: str
) -> None:
    case = CASES[name]
    gw = await open_case(make_gateway, vendor, case)
    status, doc = await send(gw, case, case.with_field(field, ELSEWHERE))
    assert (status, code_of(doc)) == (403, "field_not_allowed"), doc
    assert vendor.received == []
    assert last_refusal(gw)["detail"] == f"callback_url:{field.removeprefix('/')}"
    assert "collector.example.net" not in gw.logs()


@pytest.mark.parametrize(("name", "field"), CALLBACKS, ids=[f"{n}-{f}" for n, f in CALLBACKS])
async def test_an_allowed_callback_url_may_name_only_the_gateways_own_callback_route(
    make_gateway: GatewayFactory, vendor: Vendor, name: str, field: str
) -> None:
    case = CASES[name]
    gw = await open_case(make_gateway, vendor, case, allow_fields=[field.removeprefix("/")])
    status, doc = await send(gw, case, case.with_field(field, ELSEWHERE))
    assert (status, code_of(doc)) == (403, "field_not_allowed"), doc
    assert vendor.received == []
    request = case.with_field(field, OWN_CALLBACK)
    status, doc = await send(gw, case, request)
    assert status in OK, doc
    (seen,) = vendor.received
    assert seen.body == case.encode(request)  # forwarded as sent


@pytest.mark.parametrize(("name", "field", "value"), CONTROLS, ids=[f"{n}-{f}" for n, f, _ in CONTROLS])
async def test_a_control_field_needs_the_route_to_allow_it(
    make_gateway: GatewayFactory, vendor: Vendor, name: str, field: str, value: Any
) -> None:
    case = CASES[name]
    request = case.with_field(field, value)
    gw = await open_case(make_gateway, vendor, case)
    status, doc = await send(gw, case, request)
    assert (status, code_of(doc)) == (403, "field_not_allowed"), doc
    assert last_refusal(gw)["detail"] == f"control:{field.removeprefix('/')}"
    assert vendor.received == []
    allowing = await open_case(make_gateway, vendor, case, allow_fields=[field.removeprefix("/")])
    status, doc = await send(allowing, case, request)
    assert status in OK, doc
    (seen,) = vendor.received
    assert seen.body == case.encode(request)


# --------------------------------------------------------------------------- fan-out

FAN_OUT = [
    *(
        ("smsapi", n)
        for n in ("group", "Group", "GROUP", " group", "group ", "group[]", "group[0]", "group.x")
    ),
    *(("messagebird", n) for n in ("groupIds", "groupids", "GroupIds", "GROUPIDS", " groupIds", "groupIds ")),
    *(("aws-sns", n) for n in ("TopicArn", "topicarn", "TOPICARN", " TopicArn", "TopicArn[]", "TopicArn.1")),
    *(("aws-sns", n) for n in ("TargetArn", "targetArn", "targetarn", "TargetArn ", "TargetArn[0]")),
]


@pytest.mark.parametrize("name", sorted({n for n, _ in FAN_OUT}))
async def test_fan_out_fields_are_refused_under_every_spelling_even_when_allowed(
    make_gateway: GatewayFactory, vendor: Vendor, name: str
) -> None:
    """A contact group or topic sends to numbers that are not in the request: nothing the gateway
    checks (countries, number types, per-recipient limits) would apply to them."""
    case = CASES[name]
    gw = await open_case(make_gateway, vendor, case)
    for _, spelling in (f for f in FAN_OUT if f[0] == name):
        value = ["g1"] if case.kind == "json" else "g1"
        status, doc = await send(gw, case, case.with_field(spelling, value))
        assert (status, code_of(doc)) == (403, "field_not_allowed"), spelling
        assert last_refusal(gw)["detail"].startswith("control:"), spelling
    assert vendor.received == []


async def test_sinch_group_ids_in_to_are_not_numbers(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    """Sinch's ``to`` takes group ids beside numbers: each entry must be a number the gateway checks."""
    case = CASES["sinch"]
    gw = await open_case(make_gateway, vendor, case)
    for to in (["01FC66621XXXXX119Z8PMV1QPQ"], ["37255512367", "01FC66621XXXXX119Z8PMV1QPQ"]):
        status, doc = await send(gw, case, {**case.base, "to": to})
        assert (status, code_of(doc)) == (422, "invalid_recipient"), to
    assert vendor.received == []


# --------------------------------------------------------------------------- every declared field


@pytest.mark.parametrize("name", NAMES)
async def test_every_policed_field_is_refused_until_allowed_then_forwarded_as_sent(
    make_gateway: GatewayFactory, vendor: Vendor, name: str
) -> None:
    """Each control and callback field of the reader's table, by default and on a route that
    allows them all (the callback URLs then naming the gateway's own callback route)."""
    case = CASES[name]
    policed = [f for f in case.fields("control", "callback_url") if not case.present(f)]
    assert policed
    gw = await open_case(make_gateway, vendor, case)
    for f in policed:
        status, doc = await send(gw, case, case.with_field(f.name, control_value(case, f)))
        assert (status, code_of(doc)) == (403, "field_not_allowed"), f.name
        kind = "channel" if f.channel else f.role
        assert last_refusal(gw)["detail"] == f"{kind}:{display(f)}", f.name
    assert vendor.received == []
    policed = [f for f in policed if (name, f.name) not in NEVER]
    allowing = await open_case(make_gateway, vendor, case, allow_fields=sorted(display(f) for f in policed))
    for f in policed:
        value = OWN_CALLBACK if f.role == "callback_url" else control_value(case, f)
        request = case.with_field(f.name, value)
        status, doc = await send(allowing, case, request)
        assert status in OK, (f.name, doc)
        assert vendor.received[-1].body == case.encode(request), f.name
    assert len(vendor.received) == len(policed)


@pytest.mark.parametrize("name", NAMES)
async def test_harmless_and_content_fields_pass_and_content_is_never_logged(
    make_gateway: GatewayFactory, vendor: Vendor, name: str
) -> None:
    case = CASES[name]
    gw = await open_case(make_gateway, vendor, case)
    fields = [
        f for f in case.fields("harmless", "content") if not case.present(f) and (name, f.name) not in NEVER
    ]
    for i, f in enumerate(fields):
        marker = f"CONTENT{i:03d}MARK" if f.role == "content" else "x"
        request = case.with_field(
            f.name, control_value(case, f) if f.name in ("encoding", "Version") else marker
        )
        status, doc = await send(gw, case, request)
        assert status in OK, (f.name, doc)
        assert vendor.received[-1].body == case.encode(request), f.name
    assert "MARK" not in gw.logs()
    assert len(vendor.received) == len(fields)


@pytest.mark.parametrize("name", NAMES)
async def test_an_undeclared_field_is_refused_by_name_never_by_value(
    make_gateway: GatewayFactory, vendor: Vendor, name: str
) -> None:
    case = CASES[name]
    gw = await open_case(make_gateway, vendor, case)
    where = "/messages/*/webhooks/delivery/collectorUrl" if name == "infobip" else "collectorUrl"
    status, doc = await send(gw, case, case.with_field(where, "SECRETVALUE77"))
    assert (status, code_of(doc)) == (400, "unknown_field"), doc
    detail = last_refusal(gw)["detail"]
    assert detail.startswith("body:") and detail.endswith("collectorUrl")
    assert "SECRETVALUE77" not in gw.logs()
    assert vendor.received == []


@pytest.mark.parametrize("name", NAMES)
async def test_a_query_parameter_the_vendor_api_does_not_define_is_refused(
    make_gateway: GatewayFactory, vendor: Vendor, name: str
) -> None:
    """None of these send APIs reads its query string: a client's query reaches no vendor."""
    case = CASES[name]
    gw = await open_case(make_gateway, vendor, case)
    for query in ("send_at=2030-01-01", "notify_url=https%3A%2F%2Fcollector.example.net%2F", "x=1"):
        status, doc = await send(gw, case, case.base, query=query)
        assert (status, code_of(doc)) == (400, "unknown_field"), query
    assert vendor.received == []
    status, _ = await send(gw, case, case.base)
    assert status in OK


@pytest.mark.parametrize("where", ["query", "body"])
async def test_smsapi_credentials_in_the_request_are_refused_and_never_logged(
    make_gateway: GatewayFactory, vendor: Vendor, where: str
) -> None:
    """SMSAPI also reads ``access_token`` (and the old ``username``/``password``) from the request
    itself: not a field the gateway lets through, and the secrets are never written anywhere (a
    username in the query is logged, scrubbed of numbers, like any other parameter)."""
    case = CASES["smsapi"]
    gw = await open_case(make_gateway, vendor, case)
    for name in ("access_token", "password", "username"):
        if where == "query":
            status, doc = await send(gw, case, case.base, query=f"{name}=CREDMARK{name}")
        else:
            status, doc = await send(gw, case, case.with_field(name, f"CREDMARK{name}"))
        assert (status, code_of(doc)) == (400, "unknown_field"), name
        assert last_refusal(gw)["detail"] == f"{where}:{name}"
    logs = gw.logs()
    assert "CREDMARKaccess_token" not in logs and "CREDMARKpassword" not in logs
    assert vendor.received == []


@pytest.mark.parametrize(
    ("name", "allow", "known"),
    [
        ("smsapi", "group", "notify_url"),  # fan-out fields: no route can allow them
        ("messagebird", "groupIds", "reportUrl"),
        ("aws-sns", "TopicArn", "MessageAttributes/AWS.SNS.SMS.MaxPrice"),
        ("aws-sns", "AWS.SNS.SMS.MaxPrice", "MessageAttributes/AWS.SNS.SMS.MaxPrice"),
        ("infobip", "messages/*/sendAt", "options/schedule/sendAt"),  # the v2 name on a v3 route
        ("plivo", "text", "message_expiry"),
    ],
)
def test_check_config_names_the_fields_a_route_may_allow(
    tmp_path: Path, pki: dict[str, Path], name: str, allow: str, known: str
) -> None:
    case = CASES[name]
    route = {"name": "send", "path": case.path, "kind": "sms", "auth": ["basic"], "allow_fields": [allow]}
    client = {"id": "billing", "scopes": ["sms:send"], "countries": ["EE"]}
    settings = {"upstream": {"provider": case.provider, "credentials": case.credentials}}
    config = write_config(
        tmp_path, pki, "https://127.0.0.1:9", settings, {"p": {"client": [client], "route": [route]}}
    )
    with pytest.raises(ConfigError) as info:
        load_config(config)
    text = str(info.value)
    assert "p.toml" in text and "route[0].allow_fields[0]" in text and known in text


async def test_plivo_type_is_a_channel_the_route_names(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    """``type=mms`` costs an MMS, ``whatsapp`` is another channel: each needs the route's
    ``channels``; ``sms``, the default, needs nothing (the Plivo SDK always sends it)."""
    case = CASES["plivo"]
    gw = await open_case(make_gateway, vendor, case)
    status, _ = await send(gw, case, case.with_field("type", "sms"))
    assert status in OK
    status, doc = await send(gw, case, case.with_field("type", "mms"))
    assert (status, code_of(doc)) == (403, "field_not_allowed")
    assert last_refusal(gw)["detail"] == "channel:type"
    mms = await open_case(make_gateway, vendor, case, channels=["sms", "mms"])
    status, _ = await send(mms, case, case.with_field("type", "mms"))
    assert status in OK
    status, doc = await send(mms, case, case.with_field("type", "whatsapp"))
    assert (status, code_of(doc)) == (403, "field_not_allowed")
    status, doc = await send(mms, case, case.with_field("type", "MMS"))  # named exactly as listed
    assert status in (400, 403) and code_of(doc) in ("bad_request", "field_not_allowed")
    assert len(vendor.received) == 2
