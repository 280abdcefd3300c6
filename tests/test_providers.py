"""Provider adapters read vendor requests exactly as the vendor would, and refuse what is ambiguous."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from pydantic import ValidationError
from requests import Request, Session
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from gateway.core.errors import GatewayError
from gateway.messages.base import Message
from gateway.vendors import (
    REGISTRY,
    GenericAdapter,
    GenericOptions,
    ProviderSettings,
    TwilioAdapter,
    build_adapter,
    validate_spec_path,
)
from gateway.vendors.generic import send as generic

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MARKER = "ZZMARKER9431"
ACCOUNT = "AC" + "0" * 32
SID = "SM" + "a" * 32


# --------------------------------------------------------------------------- twilio SDK as a client


@dataclass
class _Sent:
    body: bytes
    content_type: str


@dataclass
class CapturingHttpClient(HttpClient):
    """Stands in for TwilioHttpClient: encodes the request the same way, never touches the network."""

    sent: list[_Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(logging.getLogger("test.twilio"), False)

    def request(  # type: ignore[override]
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        # TwilioHttpClient.request: Request(data=...) prepared by a requests Session.
        prepared = Session().prepare_request(
            Request(method=method.upper(), url=uri, params=params, data=data, headers=headers)
        )
        body = prepared.body
        assert isinstance(body, str)
        self.sent.append(_Sent(body.encode("ascii"), prepared.headers["Content-Type"]))
        return Response(201, json.dumps({"sid": SID, "status": "queued", "to": "x"}))


def sdk_send(**kwargs: object) -> _Sent:
    http = CapturingHttpClient()
    client = Client(ACCOUNT, "token", http_client=http)
    message = client.messages.create(**kwargs)
    assert message.sid == SID
    assert len(http.sent) == 1
    return http.sent[0]


def _one(sender: str | None, body: str | None) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """Message fields for a single message: (senders, bodies, default_sender)."""
    return ((sender,) if sender is not None else ()), ((body,) if body is not None else ()), sender is None


def bad(adapter: TwilioAdapter | GenericAdapter, body: bytes, content_type: str = FORM) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        adapter.parse(body, content_type)
    err = info.value
    # unknown_field: a key the configured fields do not declare (closed by default)
    assert (err.status, err.code) in ((400, "bad_request"), (400, "unknown_field"))
    return err


# --------------------------------------------------------------------------- twilio


@pytest.mark.parametrize(
    "text",
    ["Your code is 123456", "Привет, мир", "Code 👋🏽 ✅ — ok", "a & b = c + d %2B ; ?", "", "line\nbreak"],
)
def test_twilio_sdk_body_round_trip(text: str) -> None:
    sent = sdk_send(to="+15551234567", from_="+15557654321", body=text)
    assert sent.content_type == FORM
    msg = TwilioAdapter().parse(sent.body, sent.content_type)
    assert msg == Message(("+15551234567",), *_one("+15557654321", text))


def test_twilio_sdk_messaging_service_sender_and_no_body() -> None:
    sent = sdk_send(
        to="+447700900123",
        messaging_service_sid="MG" + "1" * 32,
        media_url=["https://example.com/a.png", "https://example.com/b.png"],
    )
    msg = TwilioAdapter().parse(sent.body, sent.content_type)
    media = ("https://example.com/a.png", "https://example.com/b.png")
    assert msg == Message(("+447700900123",), *_one("MG" + "1" * 32, None), secrets=media)


def test_twilio_from_wins_over_messaging_service() -> None:
    sent = sdk_send(to="+15551234567", from_="MyBank", messaging_service_sid="MG" + "1" * 32, body="x")
    assert TwilioAdapter().parse(sent.body, sent.content_type).sender == "MyBank"


def test_twilio_empty_from_falls_to_messaging_service() -> None:
    msg = TwilioAdapter().parse(b"To=%2B1555&From=&MessagingServiceSid=MG1&Body=x", FORM)
    assert msg.sender == "MG1"
    assert TwilioAdapter().parse(b"To=%2B1555", FORM).sender is None


def test_twilio_plus_encodings() -> None:
    adapter = TwilioAdapter()
    assert adapter.parse(b"To=%2B15551234567", FORM).recipients == ("+15551234567",)
    assert adapter.parse(b"To=%2b15551234567", FORM).recipients == ("+15551234567",)
    # A raw "+" is a space in form encoding: that is what Twilio's server receives, kept raw.
    assert adapter.parse(b"To=+15551234567", FORM).recipients == (" 15551234567",)
    assert adapter.parse(b"Body=a+b%2Bc&To=%2B1", FORM).body == "a b+c"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=utf-8",
        'Application/X-WWW-Form-Urlencoded;charset="UTF-8"',
        "application/x-www-form-urlencoded;charset=utf8",
    ],
)
def test_twilio_content_type_with_charset(content_type: str) -> None:
    assert TwilioAdapter().parse(b"To=%2B1", content_type).recipients == ("+1",)


@pytest.mark.parametrize(
    "content_type",
    [JSON, "text/plain", "", "multipart/form-data; boundary=x", f"{FORM}; charset=iso-8859-1"],
)
def test_twilio_rejects_other_content_types(content_type: str) -> None:
    bad(TwilioAdapter(), b"To=%2B1&Body=x", content_type)


def test_twilio_rejects_json_body() -> None:
    bad(TwilioAdapter(), json.dumps({"To": "+15551234567", "Body": "hi"}).encode(), JSON)


@pytest.mark.parametrize("body", [b"Body=hi", b"To=&Body=hi", b"To=+&Body=hi", b"", b"From=%2B1"])
def test_twilio_missing_or_empty_to(body: bytes) -> None:
    bad(TwilioAdapter(), body)


@pytest.mark.parametrize(
    "body",
    [
        b"To=%2B15551234567&To=%2B15559999999&Body=x",
        b"To=%2B1&Body=a&Body=b",
        b"To=%2B1&Body=a&Body=a",
        b"To=%2B1&From=A&From=B",
        b"To=%2B1&MessagingServiceSid=MG1&MessagingServiceSid=MG2",
        b"To=%2B1&T%6F=%2B2",  # same name once decoded
        b"To=%2B1&to=%2B2",  # a case variant another server may bind to To
        b"to=%2B1",
        b"To=%2B1&BODY=x",
    ],
)
def test_twilio_duplicate_single_fields_rejected(body: bytes) -> None:
    bad(TwilioAdapter(), body)


def test_twilio_repeatable_fields_allowed() -> None:
    msg = TwilioAdapter().parse(b"To=%2B1&MediaUrl=a&MediaUrl=b&Body=", FORM)
    assert msg == Message(("+1",), *_one(None, ""), secrets=("a", "b"))


@pytest.mark.parametrize(
    "body",
    [
        b"To=%2B1&Body=\xff\xfe",  # raw bytes that are not UTF-8
        b"To=%2B1&Body=%FF",  # percent-escape that is not UTF-8
        b"To=%2B1&Body=%D0",  # truncated UTF-8 sequence
        b"To=%2B1&Body=%ED%A0%80",  # UTF-8-encoded surrogate
        "To=%2B1&Body=caf\u00e9".encode("latin-1"),
    ],
)
def test_twilio_non_utf8_rejected(body: bytes) -> None:
    bad(TwilioAdapter(), body)


def test_twilio_raw_utf8_accepted() -> None:
    assert TwilioAdapter().parse("To=%2B1&Body=Привет".encode(), FORM).body == "Привет"


@pytest.mark.parametrize("body", [b"To=%2B1&Body", b"To=%2B1&", b"&To=%2B1", b"To=%2B1&&Body=x", b"To=%zz1"])
def test_twilio_malformed_form_rejected(body: bytes) -> None:
    bad(TwilioAdapter(), body)


def test_twilio_vendor_message_id() -> None:
    adapter = TwilioAdapter()
    answer = json.dumps({"sid": SID, "status": "queued"}).encode()
    assert adapter.vendor_message_id(201, answer, "application/json; charset=utf-8") == SID
    assert adapter.vendor_message_id(400, json.dumps({"code": 21211, "sid": "x"}).encode(), JSON) is None
    for garbage in [b"", b"not json", b"[1,2]", b'{"sid": 5}', b'{"sid": null}', b"\xff", b"[" * 100_000]:
        assert adapter.vendor_message_id(201, garbage, JSON) is None


# --------------------------------------------------------------------------- generic: JSON

INFOBIP = GenericOptions(
    format="json",
    recipient="/messages/*/destinations/*/to",
    sender="/messages/*/sender",
    body="/messages/*/content/text",
    message_id="/messages/*/messageId",
    fields={"/messages/*/messageId": "harmless", "/messages/*/destinations/*/messageId": "harmless"},
)
PLIVO = GenericOptions(
    recipient="dst", sender="src", body="text", recipient_separator="<", message_id="/message_uuid"
)
SMSAPI = GenericOptions(
    format="form",
    recipient="to",
    sender="from",
    body="message",
    recipient_separator=",",
    fields={"format": "harmless"},
)


def infobip_body(*messages: dict[str, object]) -> bytes:
    return json.dumps({"messages": list(messages)}).encode()


def test_generic_infobip_wildcards() -> None:
    body = infobip_body(
        {
            "sender": "InfoSMS",
            "destinations": [{"to": "41793026727", "messageId": "m1"}, {"to": "41793026728"}],
            "content": {"text": "Привет 👋"},
        }
    )
    msg = GenericAdapter(INFOBIP).parse(body, JSON)
    assert msg == Message(("41793026727", "41793026728"), *_one("InfoSMS", "Привет 👋"))


def test_generic_infobip_recipients_over_several_messages() -> None:
    spec = GenericOptions(recipient="/messages/*/destinations/*/to")
    body = infobip_body({"destinations": [{"to": "1"}, {"to": "2"}]}, {"destinations": [{"to": "3"}]})
    assert GenericAdapter(spec).parse(body, JSON).recipients == ("1", "2", "3")


def test_generic_infobip_optional_sender_absent() -> None:
    body = infobip_body({"destinations": [{"to": "1"}], "content": {"text": "x"}})
    assert GenericAdapter(INFOBIP).parse(body, JSON).sender is None


def test_generic_every_message_of_a_multi_message_send_is_read() -> None:
    body = infobip_body(
        {"sender": "A", "destinations": [{"to": "1"}], "content": {"text": "first"}},
        {"sender": "B", "destinations": [{"to": "2"}, {"to": "3"}], "content": {"text": "second"}},
    )
    msg = GenericAdapter(INFOBIP).parse(body, JSON)
    assert msg.recipients == ("1", "2", "3")
    assert msg.senders == ("A", "B")
    assert msg.bodies == ("first", "second")
    assert msg.default_sender is False


def test_generic_a_message_without_sender_is_marked() -> None:
    # The second message goes out with the account's default sender: a sender policy must see that.
    body = infobip_body({"sender": "A", "destinations": [{"to": "1"}]}, {"destinations": [{"to": "2"}]})
    msg = GenericAdapter(INFOBIP).parse(body, JSON)
    assert (msg.senders, msg.default_sender) == (("A",), True)


@pytest.mark.parametrize(
    ("pointer", "messages"),
    [
        ("sender", [{"sender": "A", "text": "a"}, {"sender": "B", "text": "b"}]),
        ("text", [{"sender": "A", "text": "a"}, {"sender": "A", "text": "b"}]),
        ("to", [{"to": "1"}, {"to": "2"}]),
    ],
)
def test_generic_pointer_naming_one_element_of_several_is_refused(
    pointer: str, messages: list[dict[str, str]]
) -> None:
    options = GenericOptions(
        recipient="/messages/0/to" if pointer == "to" else "to",
        sender="/messages/0/sender",
        body="/messages/0/text",
    )
    body = {"messages": messages} if pointer == "to" else {"to": "+1", "messages": messages}
    bad(GenericAdapter(options), json.dumps(body).encode(), JSON)
    # With exactly the one element the pointer names, the send is read.
    one = {**body, "messages": messages[:1]}
    assert GenericAdapter(options).parse(json.dumps(one).encode(), JSON).recipients


@pytest.mark.parametrize(
    "messages",
    [
        # a destination without "to" would be skipped silently
        ({"destinations": [{"to": "1"}, {"number": "2"}]},),
        # shapes the path does not fit
        ({"destinations": {"to": "1"}},),
        ({"destinations": "1"},),
        ({"destinations": [{"to": "1"}], "content": {"text": 5}},),
        ({"destinations": [{"to": "1"}], "sender": None},),
    ],
)
def test_generic_infobip_ambiguous_rejected(messages: tuple[dict[str, object], ...]) -> None:
    bad(GenericAdapter(INFOBIP), infobip_body(*messages), JSON)


def test_generic_plivo_separator() -> None:
    body = json.dumps(
        {"src": "+14155550100", "dst": "+14155550101< +14155550102 <+14155550103", "text": "hi"}
    )
    msg = GenericAdapter(PLIVO).parse(body.encode(), JSON)
    assert msg.recipients == ("+14155550101", "+14155550102", "+14155550103")
    assert (msg.sender, msg.body) == ("+14155550100", "hi")


@pytest.mark.parametrize("dst", ["+1<<+2", "+1<", " ", ""])
def test_generic_empty_recipient_rejected(dst: str) -> None:
    bad(GenericAdapter(PLIVO), json.dumps({"dst": dst}).encode(), JSON)


def test_generic_array_of_recipients() -> None:
    spec = GenericOptions(recipient="to", sender="from", body="body")  # Sinch batches
    body = json.dumps({"from": "Acme", "to": ["+4670000000", "+4670000001"], "body": "x"}).encode()
    assert GenericAdapter(spec).parse(body, JSON).recipients == ("+4670000000", "+4670000001")
    spec_star = GenericOptions(recipient="/to/*", sender="from", body="body")
    assert GenericAdapter(spec_star).parse(body, JSON).recipients == ("+4670000000", "+4670000001")


@pytest.mark.parametrize(
    "to",
    [15551234567, None, {"n": "+1"}, ["+1", 2], [["+1"]], True, [], "NaN"],
)
def test_generic_non_string_or_missing_recipient_rejected(to: object) -> None:
    body = json.dumps({"to": to}).encode() if to != "NaN" else b'{"to": NaN}'
    bad(GenericAdapter(GenericOptions(recipient="to")), body, JSON)


def test_generic_no_recipient_field() -> None:
    bad(GenericAdapter(GenericOptions(recipient="to")), b'{"text": "x"}', JSON)


@pytest.mark.parametrize(
    "body",
    [
        b'{"to": "+1", "to": "+2"}',
        b'{"to": "+1", "t\\u006f": "+2"}',  # same key once unescaped
        b'{"to": "+1", "To": "+2"}',  # case variant: ASP.NET-style binders take either
        b'{"to": "+1", "meta": {"a": 1, "a": 2}}',  # anywhere, not only on the path
        b'{"to": "+1", "list": [{"x": 1}, {"y": 1, "y": 2}]}',
        b'{"To": "+1"}',  # present only under another case
    ],
)
def test_generic_duplicate_keys_rejected(body: bytes) -> None:
    bad(GenericAdapter(GenericOptions(recipient="to")), body, JSON)


@pytest.mark.parametrize(
    "body",
    [
        b'{"to": "+1"',
        b"\xff\xfe{}",
        '\ufeff{"to": "+1"}'.encode(),
        '{"to": "+1", "text": "\u00e9"}'.encode("latin-1"),
        b'{"to": "\\ud800"}',  # lone surrogate cannot be UTF-8 encoded downstream
        b"[" * 100_000,
        b'"+1"',
    ],
)
def test_generic_invalid_json_rejected(body: bytes) -> None:
    bad(GenericAdapter(GenericOptions(recipient="to")), body, JSON)


def test_generic_sender_body_rules() -> None:
    adapter = GenericAdapter(GenericOptions(recipient="to", sender="from", body="text"))
    assert adapter.parse(b'{"to": "+1"}', JSON) == Message(("+1",), *_one(None, None))
    bad(adapter, b'{"to": "+1", "from": ["A"]}', JSON)
    bad(adapter, b'{"to": "+1", "from": 12345}', JSON)
    bad(adapter, b'{"to": "+1", "text": {"a": "b"}}', JSON)


def test_generic_pointer_escapes_and_indexes() -> None:
    spec = GenericOptions(recipient="/a~1b/m~0n", sender="/messages/0/from", body="/messages/0/text")
    body = json.dumps({"a/b": {"m~n": "+1"}, "messages": [{"from": "S", "text": "T"}]}).encode()
    assert GenericAdapter(spec).parse(body, JSON) == Message(("+1",), *_one("S", "T"))
    # RFC 6901: "/" alone addresses the empty key.
    assert GenericAdapter(GenericOptions(recipient="/")).parse(b'{"": "+1"}', JSON).recipients == ("+1",)


def test_generic_content_type_decides_format() -> None:
    spec = GenericOptions(recipient="to", sender="from", body="text")
    auto = GenericAdapter(spec)
    assert auto.parse(b'{"to": "+1"}', "application/vnd.acme+json; charset=utf-8").recipients == ("+1",)
    assert auto.parse(b"to=%2B1", FORM).recipients == ("+1",)
    for content_type in ["text/plain", "", "application/jsonx", "application/json; charset=latin1"]:
        bad(auto, b'{"to": "+1"}', content_type)
    # A fixed format still needs the matching Content-Type: the vendor decides by it.
    bad(GenericAdapter(GenericOptions(format="json", recipient="to")), b'{"to": "+1"}', FORM)
    bad(GenericAdapter(GenericOptions(format="form", recipient="to")), b"to=%2B1", JSON)


def test_generic_nested_pointer_on_form_body() -> None:
    bad(GenericAdapter(GenericOptions(recipient="/messages/*/to")), b"to=%2B1", FORM)
    with pytest.raises(ValidationError) as info:
        GenericOptions(format="form", recipient="/messages/*/to")
    assert info.value.errors()[0]["ctx"]["error"].key == "recipient"  # the loader names this key


# --------------------------------------------------------------------------- generic: forms


def test_generic_smsapi_comma_form() -> None:
    body = urlencode(
        {"to": "48500000000, 48500000001", "from": "Test", "message": "Zażółć 👋", "format": "json"}
    )
    msg = GenericAdapter(SMSAPI).parse(body.encode(), FORM)
    assert msg == Message(("48500000000", "48500000001"), *_one("Test", "Zażółć 👋"))


def test_generic_form_recipient_may_repeat() -> None:
    body = b"to=48500000000&to=48500000001,48500000002&message=x"
    assert GenericAdapter(SMSAPI).parse(body, FORM).recipients == (
        "48500000000",
        "48500000001",
        "48500000002",
    )


@pytest.mark.parametrize(
    "body",
    [
        b"to=1&from=A&from=B",
        b"to=1&message=a&message=b",
        b"to=1&From=A",
        b"TO=1",
        b"message=x",
        b"to=1,,2",
        b"to=1&message=%FF",
        b"to=1&message",
    ],
)
def test_generic_form_ambiguous_rejected(body: bytes) -> None:
    bad(GenericAdapter(SMSAPI), body, FORM)


# --------------------------------------------------------------------------- generic: spec and answers


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [("/a~2b", "'~2'"), ("/a/b~", "~ at the end"), ("/x/~", "segment 2"), ("", "empty")],
)
def test_validate_spec_path_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        validate_spec_path(spec)
    assert "~0" in str(info.value) or fragment == "empty"


@pytest.mark.parametrize("spec", ["to", "/to", "/messages/*/destinations/*/to", "/a~0~1b", "/", "/0/-"])
def test_validate_spec_path_ok(spec: str) -> None:
    validate_spec_path(spec)


def test_generic_options_errors_name_the_field() -> None:
    for kwargs, key in [
        ({"recipient": "to", "sender": "/a~x"}, "sender"),
        ({"format": "xml", "recipient": "to"}, "format"),
        ({"recipient": "to", "recipient_separator": ""}, "recipient_separator"),
    ]:
        with pytest.raises(ValidationError) as info:
            GenericOptions(**kwargs)
        assert info.value.errors()[0]["loc"] == (key,)


def test_generic_spec_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = GenericAdapter(INFOBIP)

    def boom(_: str) -> tuple[object, ...]:
        raise AssertionError("spec compiled per request")

    monkeypatch.setattr(generic, "compile_spec_path", boom)
    body = infobip_body({"destinations": [{"to": "1"}], "messageId": "x"})
    assert adapter.parse(body, JSON).recipients == ("1",)
    assert adapter.vendor_message_id(200, body, JSON) == "x"


@pytest.mark.parametrize(
    ("spec", "status", "answer", "expected"),
    [
        (INFOBIP, 200, {"bulkId": "b", "messages": [{"messageId": "m-1"}, {"messageId": "m-2"}]}, "m-1"),
        (INFOBIP, 200, {"messages": [{"status": {}}, {"messageId": 42}]}, "42"),
        (INFOBIP, 200, {"messages": [{"messageId": True}]}, None),
        (INFOBIP, 200, {"messages": "oops"}, None),
        (INFOBIP, 400, {"messages": [{"messageId": "m-1"}]}, None),
        (
            PLIVO,
            202,
            {"message": "queued", "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]},
            "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
        ),
        (
            GenericOptions(recipient="to", message_id="id"),
            201,
            {"id": "01FC66621XXXXX119Z8PMV1QPQ"},
            "01FC66621XXXXX119Z8PMV1QPQ",
        ),
        (GenericOptions(recipient="to"), 201, {"id": "x"}, None),
        (GenericOptions(recipient="to", message_id="/list/count"), 200, [1, 2], None),
    ],
)
def test_generic_vendor_message_id(
    spec: GenericOptions, status: int, answer: object, expected: str | None
) -> None:
    assert GenericAdapter(spec).vendor_message_id(status, json.dumps(answer).encode(), JSON) == expected


@pytest.mark.parametrize("garbage", [b"", b"<html>", b"\xff\xfe", b"[" * 100_000, b'{"a": 1, "a": 2}'])
def test_generic_vendor_message_id_never_raises(garbage: bytes) -> None:
    assert GenericAdapter(INFOBIP).vendor_message_id(200, garbage, JSON) is None


# --------------------------------------------------------------------------- errors never echo input

_M = MARKER.encode()
_LEAK_CASES: list[tuple[TwilioAdapter | GenericAdapter, bytes, str]] = [
    (TwilioAdapter(), b"To=%2B1&" + _M, FORM),  # parse_qsl's own message would quote it
    (TwilioAdapter(), b"To=%2B1&Body=" + _M + b"&Body=" + _M, FORM),
    (TwilioAdapter(), b"To=" + _M + b"%FF", FORM),
    (TwilioAdapter(), b"Body=" + _M, FORM),
    (TwilioAdapter(), b'{"To": "' + _M + b'"}', JSON),
    (TwilioAdapter(), b"To=%2B1&" + _M + b"=%zz", FORM),
    (GenericAdapter(PLIVO), b'{"dst": "' + _M + b'", "dst": "x"}', JSON),
    (GenericAdapter(PLIVO), b'{"dst": "' + _M + b'"', JSON),
    (GenericAdapter(PLIVO), b'{"dst": 5, "' + _M + b'": "' + _M + b'"}', JSON),
    (GenericAdapter(PLIVO), b'{"dst": "1<<' + _M + b'", "src": ["' + _M + b'"]}', JSON),
    (GenericAdapter(PLIVO), b'{"dst": "1", "src": 1, "' + _M + b'": 1}', JSON),
    (GenericAdapter(PLIVO), b'{"' + _M + b'": 1' + b"0" * 5000 + b', "dst": "1"}', JSON),
    (GenericAdapter(INFOBIP), infobip_body({"destinations": [{"to": MARKER}, {"t": MARKER}]}), JSON),
    (GenericAdapter(SMSAPI), b"to=1&message=" + _M + b"&message=" + _M, FORM),
    (GenericAdapter(SMSAPI), b"to=" + _M + b",,1", FORM),
]


@pytest.mark.parametrize(("adapter", "body", "content_type"), _LEAK_CASES)
def test_errors_never_echo_the_body(
    adapter: TwilioAdapter | GenericAdapter, body: bytes, content_type: str
) -> None:
    err = bad(adapter, body, content_type)
    texts = [err.message, str(err)]
    if err.code == "unknown_field":  # its audit detail names the field (a name, never a value)
        assert err.detail is not None and err.detail.startswith("body:")
    else:
        texts += [repr(err), *(str(a) for a in err.args)]
    for text in texts:
        assert MARKER not in text
    # No chained exception carries it either (e.g. a ValueError quoting the body).
    assert err.__cause__ is None
    assert err.__suppress_context__ or err.__context__ is None


# --------------------------------------------------------------------------- registry


def _settings(options: GenericOptions | None = None) -> ProviderSettings:
    return ProviderSettings(options, "AC" + "9" * 32)


def test_build_adapter() -> None:
    assert isinstance(build_adapter("twilio", _settings()), TwilioAdapter)
    assert build_adapter("twilio", _settings()).name == "twilio"
    adapter = build_adapter("generic", _settings(GenericOptions(recipient="to")))
    assert isinstance(adapter, GenericAdapter)
    assert adapter.name == "generic"
    with pytest.raises(ValueError, match="twillio"):
        build_adapter("twillio", _settings())


def test_provider_sets() -> None:
    """Every provider the docs name (plus MessageBird and AWS SNS) is available."""
    assert set(REGISTRY) == {
        "twilio",
        "vonage",
        "vonage-messages",
        "messente",
        "plivo",
        "sinch",
        "infobip",
        "smsapi",
        "messagebird",
        "aws-sns",
        "generic",
    }


@pytest.mark.parametrize(
    "module",
    [
        "gateway.vendors",
        "gateway.vendors.twilio.send",
        "gateway.vendors.twilio",
        "gateway.vendors.generic.pointers",
        "gateway.config.model",
        "gateway.callbacks",
        "gateway.callbacks.scheme",
        "gateway.callbacks.config",
        "gateway.commands.sandbox",
        "gateway.server.policy",
    ],
)
def test_every_entry_module_imports_first(module: str) -> None:
    """A new adapter imports gateway.config; the config loader imports the provider registry: a
    module imported first in a fresh interpreter must not meet a half-initialised one."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-600:]
