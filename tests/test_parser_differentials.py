"""Requests the gateway and a vendor's parser could read differently are refused, end to end.

Each case is one the gateway once let through while checking a different value than the vendor
would send: a second message in a generic JSON body, a form field name that PHP or Express ``qs``
folds into ``To``, a message field after a ``;`` in the query, a body header given twice. The
vendor here records what it received, so every refusal also shows that nothing reached it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import (
    BEARER_TOKEN,
    DEFAULT_POLICY,
    GatewayFactory,
    Recorder,
    error_of,
    post,
)

EE = "+37255512367"
EE2 = "+37255512368"
US = "+12015550123"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def _twilio_policy(**client: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["client"][0].update(client)
    return {"default": doc}


async def _twilio(make_gateway: GatewayFactory, vendors, **client: Any):
    recorder = Recorder()
    vendor = await vendors(recorder)
    return await make_gateway(vendor.base_url, policies=_twilio_policy(**client)), recorder


# --------------------------------------------------------------------------- generic JSON, several messages


INFOBIP_ROUTE = {
    "name": "infobip-send",
    "methods": ["POST"],
    "path": "/sms/3/messages",
    "kind": "sms",
    "auth": ["basic"],
    "scopes": ["sms:send"],
}


async def _infobip(make_gateway: GatewayFactory, vendors, tmp_path, pointers: dict[str, str]):
    recorder = Recorder()
    vendor = await vendors(recorder)
    token = tmp_path / "bearer.secret"
    token.write_text(BEARER_TOKEN)
    token.chmod(0o600)
    policy = copy.deepcopy(DEFAULT_POLICY)
    policy["client"][0].update(senders=["InfoSMS"], countries=["EE"])
    policy["route"] = [INFOBIP_ROUTE]
    gw = await make_gateway(
        vendor.base_url,
        settings={
            "upstream": {
                "provider": "generic",
                "generic": {"format": "json", "recipient": "/messages/*/destinations/*/to", **pointers},
                "credentials": {"type": "bearer", "token": f"file:{token}", "username": "", "password": ""},
            }
        },
        policies={"default": policy},
    )
    return gw, recorder


def _messages(*messages: dict[str, Any]) -> bytes:
    return json.dumps({"messages": list(messages)}).encode()


def _message(sender: str, to: str, text: str) -> dict[str, Any]:
    return {"sender": sender, "destinations": [{"to": to}], "content": {"text": text}}


async def test_a_pointer_to_the_first_message_refuses_a_body_with_a_second(
    make_gateway: GatewayFactory, vendors, tmp_path
) -> None:
    """The hole: only messages[0] was checked and logged, and the vendor sent both."""
    gw, recorder = await _infobip(
        make_gateway,
        vendors,
        tmp_path,
        {"sender": "/messages/0/sender", "body": "/messages/0/content/text"},
    )
    body = _messages(_message("InfoSMS", EE, "checked"), _message("Evil", US, "never checked"))
    response, payload = await post(gw, body, content_type=JSON, path="/sms/3/messages")
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "bad_request"
    assert recorder.seen == []
    # One message is what the pointer names: that still works.
    response, payload = await post(
        gw, _messages(_message("InfoSMS", EE, "one")), content_type=JSON, path="/sms/3/messages"
    )
    assert response.status == 201, payload


async def test_star_pointers_check_and_log_every_message(
    make_gateway: GatewayFactory, vendors, tmp_path
) -> None:
    gw, recorder = await _infobip(
        make_gateway,
        vendors,
        tmp_path,
        {"sender": "/messages/*/sender", "body": "/messages/*/content/text"},
    )
    path = "/sms/3/messages"
    both = _messages(_message("InfoSMS", EE, "first text"), _message("InfoSMS", EE2, "second text"))
    response, payload = await post(gw, both, content_type=JSON, path=path)
    assert response.status == 201, payload
    assert len(recorder.seen) == 1
    request = next(r for r in gw.audit() if r["event"] == "request")
    assert request["recipient_count"] == 2
    assert len(request["recipients"]) == 2
    assert isinstance(request["body"], list) and len(request["body"]) == 2  # both texts, hashed
    assert request["sender"] == "InfoSMS"

    # The second message's sender or destination is refused as the first one's would be.
    for refused, code in [
        (_messages(_message("InfoSMS", EE, "ok"), _message("Evil", EE2, "x")), "sender_not_allowed"),
        (_messages(_message("InfoSMS", EE, "ok"), _message("InfoSMS", US, "x")), "destination_not_allowed"),
        # a message without a sender goes out with the account default, which nobody allowed
        (
            _messages(
                _message("InfoSMS", EE, "ok"), {"destinations": [{"to": EE2}], "content": {"text": "x"}}
            ),
            "sender_not_allowed",
        ),
    ]:
        response, payload = await post(gw, refused, content_type=JSON, path=path)
        assert response.status == 403, payload
        assert error_of(payload)["code"] == code
    assert len(recorder.seen) == 1


# --------------------------------------------------------------------------- form names that parsers fold


@pytest.mark.parametrize(
    "body",
    [
        # qs/PHP read to[] and To as one list; the gateway would check only To
        b"To=%2B37255512367&To[]=%2B12015550123&From=MyBank&Body=x",
        b"To=%2B37255512367&To%5B1%5D=%2B12015550123&From=MyBank&Body=x",
        b"To=%2B37255512367&To%5B%5D=%2B12015550123&From=MyBank&Body=x",
        # a NUL ends the name for PHP; leading/trailing space is dropped by several parsers
        b"To=%2B37255512367&To%00=%2B12015550123&From=MyBank&Body=x",
        b"To=%2B37255512367&%20To=%2B12015550123&From=MyBank&Body=x",
        b"To=%2B37255512367&To%20=%2B12015550123&From=MyBank&Body=x",
        # qs with allowDots
        b"To=%2B37255512367&To.x=%2B12015550123&From=MyBank&Body=x",
        # the sender and the text the same way
        b"To=%2B37255512367&From=MyBank&From[]=Evil&Body=x",
        b"To=%2B37255512367&From=MyBank&Body=x&Body[]=second",
        # a ';' that some stacks split form bodies on
        b"To=%2B37255512367&From=MyBank&Body=x;To=%2B12015550123",
    ],
)
async def test_form_field_names_a_vendor_parser_could_fold_are_refused(
    make_gateway: GatewayFactory, vendors, body: bytes
) -> None:
    gw, recorder = await _twilio(make_gateway, vendors, countries=["EE"], senders=["MyBank"])
    response, payload = await post(gw, body)
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "bad_request"
    assert recorder.seen == []


@pytest.mark.parametrize(
    "query",
    [
        "x=1;Body=SECRETTEXT",
        "x=1;To=%2B12015550123",
        "to%5B%5D=%2B12015550123",
        "%20Body=SECRETTEXT",
        "Body%00=SECRETTEXT",
        "BODY=SECRETTEXT",
    ],
)
async def test_message_fields_in_the_query_are_refused_however_written(
    make_gateway: GatewayFactory, vendors, query: str
) -> None:
    gw, recorder = await _twilio(make_gateway, vendors)
    response, payload = await post(gw, b"To=%2B37255512367&From=MyBank&Body=x", query=query)
    assert response.status == 400, payload
    assert recorder.seen == []
    assert "SECRETTEXT" not in gw.logs()
    assert "12015550123" not in gw.logs()


# --------------------------------------------------------------------------- body headers given twice


@pytest.mark.parametrize(
    "headers",
    [
        # aiohttp decodes by the last coding; a check of the first would see "identity"
        [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
        [("Content-Encoding", "identity, gzip")],
        [("Content-Type", FORM), ("Content-Type", JSON)],
        [("Content-Type", f"{FORM}; charset=latin1; charset=utf-8")],  # the last one won
        [("Content-Type", f"{FORM}, {JSON}")],
    ],
)
async def test_body_headers_given_twice_are_refused(
    make_gateway: GatewayFactory, vendors, headers: list[tuple[str, str]]
) -> None:
    gw, recorder = await _twilio(make_gateway, vendors)
    response, payload = await post(gw, b"To=%2B37255512367&From=MyBank&Body=x", headers=headers)
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "bad_request"
    assert recorder.seen == []


# --------------------------------------------------------------------------- wrong type, charset, NUL, UTF-8

# A document that is valid JSON and a valid form at once: read as a form it sends to Estonia (which
# the client may), read as JSON (a vendor that looks at the body, not at its type) to the US.
JSON_AND_FORM = b'{"a":"=1&To=%2B37255512367&From=MyBank&Body=x&b=","To":"+12015550123"}'


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (JSON_AND_FORM, FORM),
        (b'  [{"To": "+12015550123"}, "=&To=%2B37255512367"]', FORM),
        (b'{"To": "+37255512367", "From": "MyBank", "Body": "x"}', FORM),
        (b"To=%2B37255512367&From=MyBank&Body=x", JSON),
        # charsets other than UTF-8, however they are written
        (b"To=%2B37255512367&From=MyBank&Body=x", f"{FORM}; charset=utf-7"),
        (b"To=%2B37255512367&From=MyBank&Body=x", f'{FORM}; Charset="UTF-16"'),
        (b"To=%2B37255512367&From=MyBank&Body=x", f"{FORM}; charset*=utf-8''latin1"),
        ("To=%2B37255512367&From=MyBank&Body=x".encode("utf-16"), f"{FORM}; charset=utf-16"),
        # NUL: a C string ends there, so the vendor would send another text, sender or number
        (b"To=%2B37255512367&From=MyBank&Body=checked%00unchecked", FORM),
        (b"To=%2B37255512367&From=MyBank&Body=checked\x00unchecked", FORM),
        (b"To=%2B37255512367&From=MyBank%00Evil&Body=x", FORM),
        (b"To=%2B37255512367%00&From=MyBank&Body=x", FORM),
        # not UTF-8: a raw byte, an escape, an overlong form of "/", a surrogate
        (b"To=%2B37255512367&From=MyBank&Body=caf\xe9", FORM),
        (b"To=%2B37255512367&From=MyBank&Body=%FF", FORM),
        (b"To=%2B37255512367&From=MyBank&Body=%C0%AF", FORM),
        (b"To=%2B37255512367&From=MyBank&Body=%ED%A0%80", FORM),
    ],
    ids=[
        "json-and-form-under-form-type",
        "json-array-under-form-type",
        "json-under-form-type",
        "form-under-json-type",
        "charset-utf-7",
        "charset-utf-16-quoted",
        "charset-rfc2231",
        "utf-16-body",
        "nul-escaped-in-body",
        "nul-raw-in-body",
        "nul-in-sender",
        "nul-in-recipient",
        "latin-1-byte",
        "escaped-invalid-byte",
        "overlong-utf-8",
        "utf-8-surrogate",
    ],
)
async def test_twilio_body_read_two_ways_is_400(
    make_gateway: GatewayFactory, vendors, body: bytes, content_type: str
) -> None:
    gw, recorder = await _twilio(make_gateway, vendors, countries=["EE"], senders=["MyBank"])
    response, payload = await post(gw, body, content_type=content_type)
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "bad_request"
    assert recorder.seen == []
    (record,) = gw.audit()
    assert (record["decision"], record["reason"]) == ("deny", "bad_request")
    assert "unchecked" not in gw.logs()


GENERIC_ROUTE = {**INFOBIP_ROUTE, "name": "generic-send", "path": "/sms/send"}


async def _generic(make_gateway: GatewayFactory, vendors, tmp_path):
    recorder = Recorder()
    vendor = await vendors(recorder)
    token = tmp_path / "bearer.secret"
    token.write_text(BEARER_TOKEN)
    token.chmod(0o600)
    policy = copy.deepcopy(DEFAULT_POLICY)
    policy["client"][0].update(senders=["MyBank"], countries=["EE"])
    policy["route"] = [GENERIC_ROUTE]
    gw = await make_gateway(
        vendor.base_url,
        settings={
            "upstream": {
                "provider": "generic",
                "generic": {"format": "auto", "recipient": "to", "sender": "from", "body": "text"},
                "credentials": {"type": "bearer", "token": f"file:{token}", "username": "", "password": ""},
            }
        },
        policies={"default": policy},
    )
    return gw, recorder


def _nested(depth: int) -> bytes:
    """A send whose extra field nests ``depth`` levels in all (the top object is level 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return f'{{"to": "{EE}", "from": "MyBank", "text": "x", "meta": {inner}}}'.encode()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (_nested(33), JSON),
        (b'{"to": "+37255512367", "from": "MyBank", "text": "checked\\u0000unchecked"}', JSON),
        (b'{"to": "+37255512367", "from": "MyBank\\u0000Evil", "text": "x"}', JSON),
        (b'{"to": "+37255512367\\u0000", "from": "MyBank", "text": "x"}', JSON),
        (b'{"to": "+37255512367", "from": "MyBank", "text": "caf\xe9"}', JSON),
        ('{"to": "+37255512367", "from": "MyBank", "text": "x"}'.encode("utf-16-le"), JSON),
        (b'{"to": "+37255512367", "from": "MyBank", "text": "x"}', f"{JSON}; charset=utf-16"),
        (b"to=%2B37255512367&from=MyBank&text=x", JSON),
        (b'{"to": "+37255512367", "from": "MyBank", "text": "x"}', FORM),
        (b"to=%2B37255512367&from=MyBank&text=checked%00unchecked", FORM),
    ],
    ids=[
        "nested-33",
        "nul-in-text",
        "nul-in-sender",
        "nul-in-recipient",
        "latin-1-byte",
        "utf-16-body",
        "charset-utf-16",
        "form-under-json-type",
        "json-under-form-type",
        "nul-in-form-text",
    ],
)
async def test_generic_body_read_two_ways_is_400(
    make_gateway: GatewayFactory, vendors, tmp_path, body: bytes, content_type: str
) -> None:
    gw, recorder = await _generic(make_gateway, vendors, tmp_path)
    response, payload = await post(gw, body, content_type=content_type, path="/sms/send")
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "bad_request"
    assert recorder.seen == []
    assert "unchecked" not in gw.logs()


async def test_generic_json_nested_32_deep_and_forms_are_sent(
    make_gateway: GatewayFactory, vendors, tmp_path
) -> None:
    """The controls: nesting up to the limit, and a plain form under the form type, go through."""
    gw, recorder = await _generic(make_gateway, vendors, tmp_path)
    for body, content_type in [(_nested(32), JSON), (b"to=%2B37255512367&from=MyBank&text=x%7B%5B", FORM)]:
        response, payload = await post(gw, body, content_type=content_type, path="/sms/send")
        assert response.status == 201, payload
    assert [seen.body for seen in recorder.seen] == [
        _nested(32),
        b"to=%2B37255512367&from=MyBank&text=x%7B%5B",
    ]
