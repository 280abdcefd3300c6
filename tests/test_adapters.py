"""Vendor adapters, unit by unit: what each refuses because its vendor could read it differently,
and the SigV4 check against signatures botocore makes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.config.schema import RouteConfig
from gateway.core.errors import GatewayError
from gateway.messages.base import Message
from gateway.messages.fields import Control
from gateway.vendors import REGISTRY, ProviderSettings

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
EE = "+37255512367"


def reader(provider: str, path: str) -> Any:
    adapter = REGISTRY[provider].build(ProviderSettings(None, "ACreal"))
    return adapter.reader(RouteConfig(name="r", path=path, auth=("basic",)))


def parse(provider: str, path: str, body: bytes | dict[str, Any], content_type: str = JSON) -> Message:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return reader(provider, path).parse(raw, content_type)


def refused(provider: str, path: str, body: bytes | dict[str, Any], content_type: str = JSON) -> str:
    with pytest.raises(GatewayError) as info:
        parse(provider, path, body, content_type)
    assert info.value.status == 400 and info.value.code == "bad_request"
    return info.value.message


# --------------------------------------------------------------------------- what each vendor refuses


@pytest.mark.parametrize(
    ("provider", "path", "body", "content_type", "why"),
    [
        # repeated single-valued fields, and names a lenient parser folds into a message field
        ("vonage", "/sms/json", b"to=37255512367&to=37120012345&text=x", FORM, "more than once"),
        ("vonage", "/sms/json", b"to=37255512367&TO=37120012345&text=x", FORM, "read differently"),
        ("vonage", "/sms/json", b"to=37255512367&to[]=37120012345&text=x", FORM, "read differently"),
        ("smsapi", "/sms.do", b"to=37255512367&message=a&message=b", FORM, "more than once"),
        ("smsapi", "/sms.do", b"to=37255512367&param1=a&Param1=b", FORM, "read differently"),
        (
            "aws-sns",
            "/",
            b"Action=Publish&PhoneNumber=%2B37255512367&phoneNumber=%2B1",
            FORM,
            "read differently",
        ),
        (
            "twilio",
            "/v2/Services/{s}/Verifications",
            b"To=%2B37255512367&CustomCode=1&CustomCode=2",
            FORM,
            "more",
        ),
        (
            "twilio",
            "/v2/Services/{s}/VerificationCheck",
            b"To=%2B37255512367&code=1",
            FORM,
            "read differently",
        ),
        (
            "plivo",
            "/v1/Account/{auth_id}/Message/",
            b'{"dst":"1","DST":"2","src":"a"}',
            JSON,
            "duplicate keys",
        ),
        ("sinch", "/xms/v1/{plan}/batches", b'{"to":["+1"],"body":"a","body ":"b"}', JSON, "duplicate keys"),
        ("messagebird", "/messages", b'{"recipients":"1","Recipients":"2"}', JSON, "duplicate keys"),
        # shapes the pointers do not fit
        ("sinch", "/xms/v1/{plan}/batches", {"to": EE, "body": "x"}, JSON, "expected structure"),
        ("infobip", "/sms/3/messages", {"messages": {"destinations": []}}, JSON, "expected structure"),
        (
            "plivo",
            "/v1/Account/{auth_id}/Message/",
            {"dst": 37255512367, "src": "a"},
            JSON,
            "not a JSON string",
        ),
        # requests the gateway cannot check (fan-out fields: tests/test_fields_spellings.py)
        (
            "aws-sns",
            "/",
            b"Action=Publish&PhoneNumber=%2B37255512367&MessageStructure=json&Message=x",
            FORM,
            "Structure",
        ),
        ("aws-sns", "/", b"Action=SetSMSAttributes&PhoneNumber=%2B37255512367", FORM, "Publish only"),
        (
            "aws-sns",
            "/",
            b"Action=Publish&PhoneNumber=%2B1&MessageAttributes.entry.1.Name=a&MessageAttributes.entry.1.Name=b",
            FORM,
            "more than once",
        ),
        (
            "aws-sns",
            "/",
            b"Action=Publish&PhoneNumber=%2B1&messageattributes.entry.1.Name=a",
            FORM,
            "read differently",
        ),
        (
            "vonage-messages",
            "/v1/messages",
            {"message_type": "custom", "to": EE[1:], "custom": {}},
            JSON,
            "custom",
        ),
        (
            "plivo",
            "/v1/Account/{auth_id}/Message/",
            {"dst": EE, "src": "a", "powerpack_uuid": "p"},
            JSON,
            "not both",
        ),
        ("smsapi", "/sms.do", b"to=37255512367&message=x&encoding=windows-1250", FORM, "UTF-8"),
        # credentials in the body: never passed on, never checked in place of the header
        (
            "vonage",
            "/sms/json",
            b"to=37255512367&text=x&api_key=k&api_secret=s",
            FORM,
            "Authorization header",
        ),
        (
            "vonage",
            "/sms/json",
            b"to=37255512367&text=x&api_key=k&sig=abc&timestamp=1",
            FORM,
            "Authorization header",
        ),
    ],
)
def test_ambiguous_or_unreadable_requests_are_refused(
    provider: str, path: str, body: bytes | dict[str, Any], content_type: str, why: str
) -> None:
    assert why in refused(provider, path, body, content_type)


def test_messente_legacy_reads_query_and_body_as_one() -> None:
    legacy = reader("messente", "/send_sms/")
    query = "username=u&password=p&to=%2B37255512367&from=MyBank"
    assert legacy.parse_request(query, b"text=hi", FORM) == Message((EE,), ("MyBank",), ("hi",))
    with pytest.raises(GatewayError, match="more than once"):  # Messente would take one of the two
        legacy.parse_request("to=%2B37255512367&text=a", b"to=%2B37120012345", FORM)
    with pytest.raises(GatewayError, match="read differently"):
        legacy.parse_request("to=%2B37255512367&TEXT=a&text=b", b"", "")
    with pytest.raises(GatewayError, match="';'"):
        legacy.parse_request("to=%2B37255512367;to=%2B1&text=a", b"", "")


def test_vonage_reads_binary_body_and_text() -> None:
    msg = parse("vonage", "/sms/json", b"to=37255512367&from=MyBank&type=binary&body=0011&udh=06", FORM)
    # binary and a user data header are control fields: the route's allow_fields decides
    controls = (Control("type", "control", "binary"), Control("udh", "control", "06"))
    assert msg == Message(("37255512367",), ("MyBank",), ("0011",), controls=controls)


def test_plivo_dst_is_split_on_angle_brackets() -> None:
    msg = parse(
        "plivo", "/v1/Account/{auth_id}/Message/", {"src": "MyBank", "dst": f"{EE}<37120012345", "text": "x"}
    )
    assert msg.recipients == (EE, "37120012345")
    assert msg.senders == ("MyBank",)


def test_messagebird_takes_numbers_as_integers_and_lists() -> None:
    msg = parse(
        "messagebird",
        "/messages",
        {"originator": "B", "recipients": [37255512367, "37120012345"], "body": "x"},
    )
    assert msg.recipients == ("37255512367", "37120012345")
    assert "not a JSON string" in refused("messagebird", "/messages", {"recipients": [True], "body": "x"})


def test_infobip_message_without_sender_counts_as_the_default_sender() -> None:
    doc = {
        "messages": [
            {"sender": "MyBank", "destinations": [{"to": "37255512367"}], "content": {"text": "a"}},
            {"destinations": [{"to": "37255512367"}], "content": {"text": "b"}},
        ]
    }
    msg = parse("infobip", "/sms/3/messages", doc)
    assert msg.senders == ("MyBank",) and msg.default_sender
    v2 = {"messages": [{"from": "MyBank", "destinations": [{"to": "37255512367"}], "text": "a"}]}
    assert parse("infobip", "/sms/2/text/advanced", v2) == Message(("37255512367",), ("MyBank",), ("a",))


def test_codes_are_secrets_not_bodies() -> None:
    twilio = parse(
        "twilio",
        "/2010-04-01/Accounts/{account}/Messages.json",
        urlencode({"To": EE, "ContentSid": "HX1", "ContentVariables": '{"1":"123456"}'}).encode(),
        FORM,
    )
    # the content SID is content too (logged like a body), and marks a template send
    assert twilio.bodies == () and twilio.secrets == ("HX1", '{"1":"123456"}') and twilio.templated
    sinch = parse(
        "sinch", "/xms/v1/{plan}/batches", {"to": [EE], "body": "${code}", "parameters": {"code": {EE: "98"}}}
    )
    assert sinch.secrets == ('{"code":{"+37255512367":"98"}}',)
    smsapi = parse("smsapi", "/sms.do", b"to=37255512367&message=[%251%25]&param1=778899", FORM)
    assert smsapi.secrets == ("778899",)
    check = parse("twilio", "/v2/Services/{s}/VerificationCheck", b"VerificationSid=VE1&Code=4421", FORM)
    assert check.recipients == () and check.secrets == ("4421",)


def test_sns_sender_comes_from_the_sender_id_attribute() -> None:
    body = urlencode(
        {
            "Action": "Publish",
            "PhoneNumber": EE,
            "Message": "hi",
            "MessageAttributes.entry.1.Name": "AWS.SNS.SMS.SMSType",
            "MessageAttributes.entry.1.Value.StringValue": "Transactional",
            "MessageAttributes.entry.2.Name": "AWS.SNS.SMS.SenderID",
            "MessageAttributes.entry.2.Value.StringValue": "MyBank",
        }
    ).encode()
    message = parse("aws-sns", "/", body, FORM)
    assert (message.recipients, message.senders, message.bodies) == ((EE,), ("MyBank",), ("hi",))
    # the SMS type is a control field, for the route's allow_fields
    assert [c.name for c in message.controls] == ["MessageAttributes/AWS.SNS.SMS.SMSType"]
    unsigned = parse(
        "aws-sns", "/", urlencode({"Action": "Publish", "PhoneNumber": EE, "Message": "x"}).encode(), FORM
    )
    assert unsigned.default_sender


def test_vendor_message_ids() -> None:
    def mid(provider: str, body: bytes, status: int = 200) -> str | None:
        return REGISTRY[provider].build(ProviderSettings(None, "")).vendor_message_id(status, body, JSON)

    assert mid("vonage", b'{"message-count":"1","messages":[{"message-id":"abc","status":"0"}]}') == "abc"
    assert mid("messente", b"OK 12ab") == "12ab"
    assert mid("messente", b"ERROR 101") is None
    assert mid("plivo", b'{"message_uuid":["u1","u2"]}', 202) == "u1"
    assert mid("smsapi", b"OK:77:0.16") == "77"
    assert (
        mid("aws-sns", b"<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult>") == "m-1"
    )
    assert mid("aws-sns", b"<MessageId>m-1</MessageId>", 403) is None


# --------------------------------------------------------------------------- SigV4 against botocore


def botocore_signed(
    secret: str, body: bytes, when: str, url: str = "https://gw.example:8443/", key_id: str = "AKIAGATEWAY"
) -> Any:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url=url,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        data=body,
    )
    auth = SigV4Auth(Credentials(key_id, secret), "sns", "eu-north-1")
    request.context["timestamp"] = when
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    auth._inject_signature_to_request(request, signature)
    return request


@pytest.mark.parametrize("url", ["https://gw.example:8443/", "https://gw.example/a%20b/c~d"])
def test_sigv4_check_agrees_with_botocore(url: str) -> None:
    from urllib.parse import urlsplit

    from gateway.core import sigv4

    body = urlencode({"Action": "Publish", "PhoneNumber": EE, "Message": "hello"}).encode()
    signed = botocore_signed("s3cret/key+", body, "20260301T101500Z", url)
    header = sigv4.parse_authorization(signed.headers["Authorization"])
    assert header is not None and header.access_key == "AKIAGATEWAY" and header.region == "eu-north-1"
    parts = urlsplit(url)
    values = {"host": [parts.netloc], **{k.lower(): [v] for k, v in signed.headers.items()}}
    import hashlib

    def canonical(payload: bytes) -> str:
        return sigv4.canonical_request(
            "POST",
            parts.path,
            parts.query,
            [(name, values[name]) for name in header.signed_headers],
            hashlib.sha256(payload).hexdigest(),
        )

    good = sigv4.signature("s3cret/key+", header, "20260301T101500Z", canonical(body))
    assert good == header.signature
    assert sigv4.signature("other", header, "20260301T101500Z", canonical(body)) != header.signature
    assert (
        sigv4.signature("s3cret/key+", header, "20260301T101500Z", canonical(body + b"x")) != header.signature
    )


@pytest.mark.parametrize(
    "value",
    [
        "AWS4-HMAC-SHA256 Credential=AK/20260301/eu-north-1/sns/aws4_request, SignedHeaders=host, "
        "Signature=zz",
        "AWS4-HMAC-SHA256 Credential=AK/20260301/eu-north-1/sns/aws4_request, SignedHeaders=x-amz-date;host, "
        "Signature=" + "a" * 64,  # not sorted
        "AWS4-HMAC-SHA256 Credential=AK/20260301/eu-north-1/sns/aws4_request, Credential=AK/20260301/x/sns/"
        "aws4_request, SignedHeaders=host, Signature=" + "a" * 64,
        "AWS4-HMAC-SHA1 Credential=AK/20260301/eu-north-1/sns/aws4_request, SignedHeaders=host, Signature="
        + "a" * 64,
    ],
)
def test_sigv4_malformed_headers_are_not_read(value: str) -> None:
    from gateway.core import sigv4

    assert sigv4.parse_authorization(value) is None
