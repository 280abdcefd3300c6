"""Requests the gateway and a vendor's parser could read differently are refused, end to end.

Each case is one the gateway once let through while checking a different value than the vendor
would send: a second message in a generic JSON body, a form field name that PHP or Express ``qs``
folds into ``To``, a message field after a ``;`` in the query, a body header given twice. The
vendor here records what it received, so every refusal also shows that nothing reached it.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.errors import GatewayError
from gateway.messages.fields import FieldPolicy
from gateway.messages.forms import MAX_JSON_DEPTH, read_form
from gateway.recipients.phone import parse_recipient
from tests.conftest import (
    BEARER_TOKEN,
    DEFAULT_POLICY,
    GatewayFactory,
    Recorder,
    error_of,
    post,
)
from tests.readers import (
    CASES,
    FORM_CASES,
    JSON_CASES,
    ReaderCase,
    json_with_extra,
    object_of,
)
from tests.test_vendors import SHAPES, concrete, open_shape, vendor_env  # noqa: F401 - a fixture

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


# =========================================================================== every adapter's reader
#
# The matrix below runs each ambiguity over every reader (tests/readers.py): what one vendor's
# reader refuses, all must. Unit level (the reader the message stage calls), then end to end.

CASE_IDS = [c.name for c in CASES]


def refusal(case: ReaderCase, body: bytes, content_type: str | None = None) -> str:
    """The reader's 400 message for ``body`` (the test fails if it is read instead)."""
    try:
        message = case.parse(body, content_type)
    except GatewayError as exc:
        assert (exc.status, exc.code) == (400, "bad_request"), exc
        return exc.message
    raise AssertionError(f"{case.name} read {body!r} as {message}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_message_field_given_twice_is_refused(case: ReaderCase) -> None:
    """The vendor takes the first or the last of two values; the gateway cannot know which."""
    for where in case.singles:
        if case.kind == "form":
            name = str(where[0])
            body = case.encode() + b"&" + urlencode({name: "+12015550123"}).encode()
            assert "more than once" in refusal(case, body)
            # the same name in another spelling, which case-insensitive binders fold together
            for other in (name.upper(), name.lower(), name.swapcase(), f"{name}[]", f" {name}"):
                if other != name:
                    refusal(case, case.encode() + b"&" + urlencode({other: "+12015550123"}).encode())
        else:
            at, key = object_of(where)
            for dup in (key, key.upper(), f"{key} ", f"{key}\u0000"[: len(key) + 1]):
                refusal(case, json_with_extra(case.fields, at, dup, "+12015550123"))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_json_under_a_form_type_and_the_reverse_are_refused(case: ReaderCase) -> None:
    form = urlencode([(k, v) for k, v in case.fields.items() if isinstance(v, str)]).encode()
    as_json = json.dumps(case.fields).encode()
    # a body that is both: JSON to a vendor that looks at the body, fields to a form parser
    polyglot = json.dumps({"x": "=&" + form.decode() + "&y="}).encode()
    for body, content_type in [
        (as_json, FORM),
        (polyglot, FORM),
        (b" \r\n" + as_json, FORM),
        (b"[" + as_json + b"]", FORM),
        (form, JSON),
        (form, "application/vnd.api+json"),
        (case.encode(), "multipart/form-data; boundary=x"),
        (case.encode(), "text/plain"),
        (case.encode(), ""),
    ]:
        refusal(case, body, content_type)


CHARSET_TRICKS = [
    "; charset=latin1",
    "; charset=utf-16",
    '; charset="utf-7"',
    "; charset=utf-8; charset=latin1",  # which one wins is the vendor's parser's choice
    "; charset*=utf-8''latin1",  # RFC 2231: werkzeug and Python's email package read "latin1"
    "; charset=utf-8; charset*=utf-8''latin1",
    "; charset=utf-8, text/plain",
]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_charset_tricks_are_refused(case: ReaderCase) -> None:
    body = case.encode()
    for trick in CHARSET_TRICKS:
        refusal(case, body, case.content_type + trick)
    # the body in another encoding: UTF-16 (with or without a declared charset), a UTF-8 BOM
    text = body.decode()
    for other in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-32")):
        refusal(case, other)
        refusal(case, other, case.content_type + "; charset=utf-16")
    refusal(case, b"\xef\xbb\xbf" + body)
    # what stays accepted: UTF-8 by its usual names
    for fine in ("; charset=utf-8", '; charset="UTF-8"', ";charset=utf8"):
        assert case.parse(body, case.content_type + fine).recipients


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_nul_bytes_and_invalid_utf8_are_refused(case: ReaderCase) -> None:
    for where in case.singles:
        value = case.value_at(where)
        refusal(case, case.encode(case.with_value(where, value[:2] + "\x00" + value[2:])))
        refusal(case, case.encode(case.with_value(where, value + "\x00")))
    body = case.encode()
    marker = b"hello" if b"hello" in body else b"493817"
    assert marker in body
    invalid = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"]  # overlong, surrogate, cut
    if case.kind == "form":
        invalid += [b"%FF", b"%C0%AF", b"%ED%A0%80", b"%E2%82", b"hel%00lo", b"hel\x00lo"]
    else:
        invalid += [b"\\ud800", b"hel\\u0000lo", b"hel\x00lo"]
    for bad in invalid:
        refusal(case, body.replace(marker, bad, 1))


DIGIT_SCRIPTS = {
    "full-width": 0xFF10,
    "arabic-indic": 0x0660,
    "extended arabic-indic": 0x06F0,
    "devanagari": 0x0966,
    "bengali": 0x09E6,
    "thai": 0x0E50,
    "mathematical bold": 0x1D7CE,
}


def in_script(number: str, zero: int) -> str:
    return "".join(chr(zero + int(ch)) if ch.isdigit() else ch for ch in number)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_non_ascii_digits_never_reach_a_check_as_a_number(case: ReaderCase) -> None:
    """No vendor documents how it reads them; phonenumbers would fold them to ASCII, so a limit
    keyed on the folded number would count one phone under two spellings. Refused (422) for every
    reader, whatever the script, also with a full-width plus sign or mixed with ASCII digits."""
    reader = case.reader()
    raw = case.value_at(case.recipient) if case.name != "generic-form" else case.fields["to"]
    variants = [in_script(raw, zero) for zero in DIGIT_SCRIPTS.values()]
    variants += [raw.replace("+", "\uff0b") if raw.startswith("+") else "\uff0b" + raw]
    variants += [raw[:-1] + in_script(raw[-1], 0xFF10), raw[:4] + "\u00b2" + raw[5:], raw + "\u200b"]
    for number in variants:
        where = case.recipient if case.name != "generic-form" else ("to",)
        body = case.encode(case.with_value(where, number))
        try:
            message = reader.parse(body, case.content_type)
        except GatewayError as exc:
            assert exc.status == 400  # refused already as a body
            continue
        for recipient in message.recipients:
            with pytest.raises(GatewayError) as info:
                parse_recipient(recipient, reader.numbers)
            assert (info.value.status, info.value.code) == (422, "invalid_recipient")


def nested(depth: int) -> Any:
    """A JSON value whose nesting, counted from its outermost bracket, is ``depth``."""
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("case", JSON_CASES, ids=[c.name for c in JSON_CASES])
def opaque_key(case: ReaderCase) -> str | None:
    """A top-level key the reader lets through without looking into its value (None: the vendor
    API has none, as Infobip's ``/sms/3/messages``)."""
    table = getattr(case.reader(), "table", None)
    if table is None:
        return "zz"
    for f in table.fields:
        name = f.name[1:] if f.name.startswith("/") else f.name
        if f.role == "harmless" and "/" not in name and name not in case.fields:
            return name
    return None


@pytest.mark.parametrize("case", JSON_CASES, ids=[c.name for c in JSON_CASES])
def test_json_nested_deeper_than_32_is_refused(case: ReaderCase) -> None:
    """Depth counts from the document's own braces; 32 is read, 33 is refused wherever it is."""
    zz = opaque_key(case)
    if zz is not None:
        fine = json.dumps({**case.fields, zz: nested(MAX_JSON_DEPTH - 1)}).encode()
        assert case.parse(fine).recipients
        deep = json.dumps({**case.fields, zz: nested(MAX_JSON_DEPTH)}).encode()
        assert "nested deeper" in refusal(case, deep)
        # brackets inside strings are text, not depth
        assert case.parse(json.dumps({**case.fields, zz: "[" * 40 + "{" * 40}).encode()).recipients
    for where in case.singles:  # inside a message field, too
        assert "nested deeper" in refusal(case, case.encode(case.with_value(where, nested(MAX_JSON_DEPTH))))


@pytest.mark.parametrize("case", FORM_CASES, ids=[c.name for c in FORM_CASES])
def test_a_form_starting_with_a_byte_order_mark_is_refused(case: ReaderCase) -> None:
    """A decoder that drops the BOM reads the first field under its real name; the gateway would
    have taken it for another field and checked a second copy instead."""
    first = str(case.recipient[0]) if case.name != "generic-form" else "from"
    body = "\ufeff" + urlencode({first: "+12015550123"}) + "&" + case.encode().decode()
    assert "byte-order mark" in refusal(case, body.encode())


# --------------------------------------------------------------------------- end to end, every vendor


def _ambiguous_bodies(content_type: str, body: bytes) -> list[tuple[str, bytes, str]]:
    """(what, body, content type) variants of one valid send that every vendor route must refuse."""
    text = body.decode()
    cases = [
        ("utf-8 bom", b"\xef\xbb\xbf" + body, content_type),
        ("latin1 charset", body, content_type + "; charset=latin1"),
        ("rfc 2231 charset", body, content_type + "; charset*=utf-8''latin1"),
        ("utf-16", text.encode("utf-16"), content_type),
    ]
    if content_type == FORM:
        pairs = parse_qsl(text, keep_blank_values=True)
        first = pairs[0][0]
        cases += [
            ("field twice", body + f"&{first}=%2B12015550123".encode(), content_type),
            ("json under form", json.dumps(dict(pairs)).encode(), content_type),
            ("form under json", body, JSON),
            ("nul", body.replace(b"hello", b"hel%00lo"), content_type),
            ("invalid utf-8", body.replace(b"hello", b"hel%FFlo"), content_type),
        ]
    else:
        doc = json.loads(body)
        first = next(iter(doc))
        cases += [
            ("key twice", json_with_extra(doc, (), first, "12015550123"), content_type),
            ("key twice, other case", json_with_extra(doc, (), first.upper(), "12015550123"), content_type),
            ("json under form", body, FORM),
            ("form under json", urlencode({k: str(v) for k, v in doc.items()}).encode(), content_type),
            ("nul", body.replace(b"hello", b"hel\\u0000lo"), content_type),
            ("invalid utf-8", body.replace(b"hello", b"hel\xfflo"), content_type),
            ("nested 33 deep", json.dumps({**doc, "zz": nested(MAX_JSON_DEPTH)}).encode(), content_type),
        ]
    return cases


@pytest.mark.usefixtures("vendor_env")
@pytest.mark.parametrize("name", sorted(SHAPES))
async def test_every_vendor_refuses_ambiguous_bodies_end_to_end(
    make_gateway: GatewayFactory, vendor, name: str
) -> None:
    """Through a real gateway for every vendor's send route: each ambiguous variant of a valid send
    is a 400 bad_request with a deny record, nothing reaches the vendor, and the send itself works."""
    shape = SHAPES[name]
    gw = await open_shape(make_gateway, vendor, shape)
    content_type, body = shape.build([EE], "MyBank", "hello", "493817")
    query = shape.url_query()
    path = concrete(shape.path)
    url = gw.base + path + (f"?{query}" if query else "")

    async def send(data: bytes, ctype: str) -> tuple[int, bytes]:
        headers = {**shape.headers(), "Content-Type": ctype}
        async with gw.session.post(url, data=data, headers=headers) as response:
            return response.status, await response.read()

    variants = _ambiguous_bodies(content_type, body)
    for what, variant, ctype in variants:
        status, payload = await send(variant, ctype)
        assert status == 400, (what, payload)
        assert error_of(payload)["code"] == "bad_request", what
    assert vendor.received == []
    denials = [r for r in gw.audit() if r["event"] == "request"]
    assert [(r["decision"], r["reason"]) for r in denials] == [("deny", "bad_request")] * len(variants)
    status, payload = await send(body, content_type)
    assert status in (200, 201, 202), payload
    assert len(vendor.received) == 1


# ------------------------------------------------------------------ OTP detect, as a handset shows it


@pytest.mark.parametrize(
    "body",
    [
        "Your " + "".join(chr(ord(c) - ord("a") + 0xFF41) for c in "code") + ": 123456",  # full-width
        "Your code: " + in_script("123456", 0xFF10),  # full-width digits
        "Your code: " + in_script("123456", 0x0660),  # Arabic-Indic digits
        "Your co\u200bde: 123456",  # a zero-width space inside the word
        "Your code: " + in_script("123456", 0x1D7CE),  # mathematical bold digits
    ],
)
async def test_otp_detect_sees_the_text_as_the_handset_shows_it(
    make_gateway: GatewayFactory, vendors, body: str
) -> None:
    """The hole: a detect pattern written for ASCII (``[0-9]``, ``code``) missed a code spelt in
    look-alike characters, so such a message was never capped although the recipient reads a code."""
    recorder = Recorder()
    vendor = await vendors(recorder)
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["route"][0]["otp"] = {"detect": r"(?i)\bcode\b\D{0,10}[0-9]{6}", "max_sends": 1, "window": "1 hour"}
    gw = await make_gateway(vendor.base_url, policies={"default": doc})
    first = await gw.send({"To": EE, "From": "MyBank", "Body": "Your code: 123456"})
    assert first.status == 201
    response, payload = await post(gw, urlencode({"To": EE, "From": "MyBank", "Body": body}).encode())
    assert response.status == 429, payload
    assert error_of(payload)["code"] == "otp_retry_cap"
    assert len(recorder.seen) == 1


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
                "generic": {
                    "format": "auto",
                    "recipient": "to",
                    "sender": "from",
                    "body": "text",
                    "fields": {"meta": "harmless"},  # the vendor's own extra field
                },
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


@pytest.mark.usefixtures("vendor_env")
@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("twilio-verify", {"To": EE, "Channel": "sms", "CustomCode": "49\x003817"}),
        ("smsapi", {"to": EE[1:], "from": "MyBank", "message": "[%1%]", "param1": "49\x003817"}),
        (
            "twilio",
            {"To": EE, "From": "MyBank", "ContentSid": "HX1", "ContentVariables": '{"1":"49\x003817"}'},
        ),
        ("twilio", {"To": EE, "From": "MyBank", "Body": "hi", "StatusCallback": "https://x.example/\x00"}),
    ],
)
async def test_a_nul_in_a_code_or_any_other_field_is_refused(
    make_gateway: GatewayFactory, vendor, name: str, fields: dict[str, str]
) -> None:
    """The message_nul stage looks at recipients, senders and texts; a NUL in a code (logged like
    a text: Twilio CustomCode and ContentVariables, SMSAPI param1) or any other field went through.
    The readers refuse a NUL anywhere in the body."""
    shape = SHAPES[name]
    gw = await open_shape(make_gateway, vendor, shape)
    url = gw.base + concrete(shape.path)
    headers = {**shape.headers(), "Content-Type": FORM}
    async with gw.session.post(url, data=urlencode(fields).encode(), headers=headers) as response:
        payload = await response.read()
    assert response.status == 400, payload
    assert error_of(payload)["code"] == "bad_request"
    assert vendor.received == []


# ------------------------------------------------------------ every declared field, every spelling
#
# Closed by default (gateway/messages/fields.py): each reader declares every field it lets
# through. Under each spelling a vendor stack could bind to a declared field (case, surrounding
# space, PHP/qs brackets and dots, a NUL), the field is read as that field or refused: never let
# through as a stranger the gateway did not look at. Runs over every reader that has a table.

TABLE_CASES = [c for c in CASES if getattr(c.reader(), "table", None) is not None]


def _spellings(name: str, form: bool) -> list[str]:
    variants = [name.lower(), name.upper(), name.swapcase(), f" {name}", f"{name} ", f"{name}\x00"]
    if form:
        variants += [f"{name}[]", f"{name}[0]", f"{name}.x", f"{name}[x]"]
    return [v for v in dict.fromkeys(variants) if v != name]


def _refused_or_policed(case: ReaderCase, body: bytes, table: Any) -> str:
    """The reason code the gateway answers ``body`` with, with every control field allowed."""
    try:
        message = case.parse(body)
        FieldPolicy(allow=table.control_names, channels=frozenset({"sms"})).check(message.controls)
    except GatewayError as exc:
        assert exc.code in ("bad_request", "unknown_field", "field_not_allowed"), exc
        assert exc.status in (400, 403)
        return exc.code
    raise AssertionError(f"{case.name}: {body!r} was read, with a field in a spelling the vendor may bind")


def _json_parent(doc: dict[str, Any], segments: list[str]) -> dict[str, Any] | None:
    """The object a pointer's last key lives in, made where the valid request lacks it."""
    node: Any = doc
    for i, seg in enumerate(segments):
        following = segments[i + 1] if i + 1 < len(segments) else None
        if seg == "*":
            if not isinstance(node, list):
                return None
            if not node:
                node.append({} if following != "*" else [])
            node = node[0]
        elif isinstance(node, dict):
            node = node.setdefault(seg, [] if following == "*" else {})
        else:
            return None
    return node if isinstance(node, dict) else None


@pytest.mark.parametrize("case", TABLE_CASES, ids=[c.name for c in TABLE_CASES])
def test_every_declared_field_in_every_spelling_is_read_as_itself_or_refused(case: ReaderCase) -> None:
    table = case.reader().table
    assert table is not None
    checked = 0
    for f in table.fields:
        if case.kind == "form":
            if f.name.startswith("/"):
                continue
            value = str(case.fields.get(f.name, "x"))
            for spelling in _spellings(f.name, form=True):
                body = urlencode([*case.fields.items(), (spelling, value)]).encode()
                _refused_or_policed(case, body, table)
                checked += 1
        else:
            segments = f.name[1:].split("/") if f.name.startswith("/") else [f.name]
            doc = copy.deepcopy(case.fields)
            parent = _json_parent(doc, segments[:-1])
            key = segments[-1]
            if parent is None or key == "*":
                continue
            value = parent.get(key, "x")
            for spelling in _spellings(key, form=False):
                parent[spelling] = value
                _refused_or_policed(case, json.dumps(doc).encode(), table)
                del parent[spelling]
                checked += 1
    assert checked >= len(table.fields)


@pytest.mark.parametrize("case", [c for c in TABLE_CASES if c.kind == "form"])
def test_every_declared_form_field_written_exactly_is_read(case: ReaderCase) -> None:
    """The positive half: as declared, each field is read (a policed one recorded for the route)."""
    table = case.reader().table
    assert table is not None
    for f in table.fields:
        if f.name in case.fields or f.name.startswith("/"):
            continue
        value = "utf-8" if f.name == "encoding" else "x"  # SMSAPI: any other encoding is refused
        body = urlencode([*case.fields.items(), (f.name, value)]).encode()
        if "credential" in f.note or "refused" in f.note:  # declared so as to be refused by name
            assert "credential" in refusal(case, body)
            continue
        message = case.parse(body)
        names = {c.name for c in message.controls}
        assert (f.name in names) == (f.role in ("control", "callback_url")), f.name


@pytest.mark.parametrize("case", TABLE_CASES, ids=[c.name for c in TABLE_CASES])
def test_an_undeclared_field_is_unknown_at_every_level(case: ReaderCase) -> None:
    table = case.reader().table
    assert table is not None
    if case.kind == "form":
        body = urlencode([*case.fields.items(), ("NotAField", "x")]).encode()
        assert _refused_or_policed(case, body, table) == "unknown_field"
        return
    objects: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            objects.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    doc = copy.deepcopy(case.fields)
    walk(doc)
    for obj in objects:
        obj["notAField"] = "x"
        assert _refused_or_policed(case, json.dumps(doc).encode(), table) == "unknown_field"
        del obj["notAField"]


@given(st.lists(st.text(alphabet="aZ=&+%20C3A9Fé\x00 ", max_size=12), max_size=4).map("&".join))
@settings(max_examples=400, deadline=None)
def test_form_fields_are_decoded_as_parse_qsl_decodes_them(text: str) -> None:
    """The form reader takes a body apart as the standard library's strict parse does, and refuses
    what it refuses."""
    body = text.encode()
    try:
        expected = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError:
        expected = None
    try:
        got = read_form(body, "application/x-www-form-urlencoded")
    except GatewayError:
        got = None
    if got is not None:
        assert got == expected
    elif expected is not None:  # refused for a reason of its own: a NUL, a bad escape, JSON-like
        assert (
            any("\x00" in n + v for n, v in expected)
            or re.search(r"%(?![0-9A-Fa-f]{2})", text)
            or (text.lstrip()[:1] in ("{", "["))
        )
