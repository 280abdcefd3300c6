"""AWS SNS ``Publish`` to a phone number: ``POST /``, form-encoded (the AWS query protocol).

``Action`` must be ``Publish``; ``PhoneNumber`` is the recipient (E.164), ``Message`` the text, and
the ``AWS.SNS.SMS.SenderID`` / ``AWS.MM.SMS.OriginationNumber`` message attributes the sender.
Every ``Publish`` parameter and every SMS message attribute is declared in :data:`PUBLISH_FIELDS`
with its role: the price cap (``AWS.SNS.SMS.MaxPrice``) and the SMS type are control fields, and
any other attribute name is refused. ``TopicArn`` and ``TargetArn`` fan out to subscribers that are
not in the request, and ``MessageStructure=json`` carries a different text per protocol, so both
are refused.

boto3 signs its request with SigV4: the access key id is the client's gateway-issued username
and the secret key its password (``[[client.basic]] password``). The gateway checks that
signature, then signs the request again with its own AWS credentials
(``[upstream.credentials] type = "aws-sigv4"``): the body goes on unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from gateway.core.errors import GatewayError, bad_request
from gateway.messages.base import E164, Message, NumberRule, Provider, UpstreamTarget
from gateway.messages.fanout import FanOut
from gateway.messages.fields import Field, FieldTable, unknown_field
from gateway.messages.forms import field_base, read_form
from gateway.messages.slots import BASIC, SigV4Slot

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = ["ATTRIBUTE_FIELDS", "FANOUT", "PROVIDER", "PUBLISH_FIELDS", "PublishReader", "SnsAdapter"]

F = Field
#: Where the SMS message attributes are declared in :data:`PUBLISH_FIELDS` (and named in a
#: route's ``allow_fields``): ``MessageAttributes/AWS.SNS.SMS.MaxPrice``.
ATTRIBUTES_AT: Final = "MessageAttributes/"
#: The message attributes SNS reads for SMS (docs: "Publishing to a mobile phone"), by name.
ATTRIBUTE_FIELDS: Final = FieldTable(
    (
        F("AWS.SNS.SMS.SenderID", "sender", note="the alphanumeric sender"),
        F("AWS.MM.SMS.OriginationNumber", "sender", note="the number sent from"),
        F("AWS.SNS.SMS.MaxPrice", "control", note="the price cap per message, in USD"),
        F(
            "AWS.SNS.SMS.SMSType",
            "control",
            safe=frozenset({"promotional"}),
            note="'Transactional' is routed for reliability and can cost more",
        ),
        F("AWS.MM.SMS.EntityId", "harmless", note="India DLT entity id"),
        F("AWS.MM.SMS.TemplateId", "harmless", note="India DLT template id"),
    )
)
#: ``Publish`` (botocore ``sns/2010-03-31`` ``PublishInput``), and the SMS message attributes.
PUBLISH_FIELDS: Final = FieldTable(
    (
        F("Action", "harmless", note="must be Publish"),
        F("Version", "harmless"),
        F("PhoneNumber", "recipient"),
        F("Message", "content", text=True),
        F("Subject", "content", note="email subject; SNS includes it in other deliveries"),
        F("MessageStructure", "content", note="'json' (a text per protocol) is not accepted"),
        F("MessageDeduplicationId", "harmless", note="FIFO topics only"),
        F("MessageGroupId", "harmless", note="FIFO topics only"),
        *(
            replace(f, name=f"/{ATTRIBUTES_AT}{f.name}", note=f"message attribute: {f.note}")
            for f in ATTRIBUTE_FIELDS.fields
        ),
    )
)
#: Fields that publish to subscribers not in the request: refused, however written.
FANOUT: Final = FanOut(
    {
        "TopicArn": "publishing to a topic is not supported: its subscribers cannot be checked",
        "TargetArn": "publishing to an endpoint is not supported: its subscribers cannot be checked",
    }
)
_ATTRIBUTE: Final = re.compile(
    r"MessageAttributes\.entry\.([1-9][0-9]{0,2})\.(Name|Value\.DataType|Value\.StringValue|Value\.BinaryValue)"
)
_SENDERS: Final = tuple(f.name for f in ATTRIBUTE_FIELDS.fields if f.role == "sender")


def _attributes(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The request's own parameters, and its ``MessageAttributes.entry.N.*`` as (name, string
    value) pairs; anything unexpected is refused."""
    params: list[tuple[str, str]] = []
    entries: dict[str, dict[str, str]] = {}
    for name, value in pairs:
        if field_base(name) != "messageattributes":
            params.append((name, value))
            continue
        match = _ATTRIBUTE.fullmatch(name)
        if match is None:
            raise bad_request("a message attribute is written in a form AWS could read differently")
        entry = entries.setdefault(match[1], {})
        if match[2] in entry:
            raise bad_request("a message attribute field appears more than once")
        entry[match[2]] = value
    attributes: list[tuple[str, str]] = []
    for entry in entries.values():
        key = entry.get("Name")
        if key is None:
            raise bad_request("a message attribute has no name")
        if "Value.BinaryValue" in entry:
            raise bad_request("an SMS message attribute is a string, not a binary value")
        attributes.append((key, entry.get("Value.StringValue", "")))
    return params, attributes


class PublishReader:
    __slots__ = ()

    table: FieldTable = PUBLISH_FIELDS
    fields: frozenset[str] = PUBLISH_FIELDS.message_names | {"messageattributes"}
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        pairs = read_form(body, content_type)
        FANOUT.check_form(pairs)
        params, attribute_pairs = _attributes(pairs)
        read = PUBLISH_FIELDS.read_form(params)
        fields = read.values
        try:
            attributes = ATTRIBUTE_FIELDS.read_form(attribute_pairs)
        except GatewayError as exc:  # name the attribute where the table names a field
            if exc.detail and exc.detail.startswith("body:"):
                raise unknown_field(ATTRIBUTES_AT + exc.detail.removeprefix("body:")) from None
            raise
        if fields["Action"] != ["Publish"]:
            raise bad_request("this route reads Action=Publish only")
        if any(v.strip().casefold() == "json" for v in fields["MessageStructure"]):
            raise bad_request("MessageStructure=json is not supported: send one Message text")
        phone = fields["PhoneNumber"]
        if not phone or not phone[0].strip():
            raise bad_request("the PhoneNumber field is missing or empty")
        found = attributes.values
        senders = tuple(v for name in _SENDERS for v in found[name] if v)
        return Message(
            recipients=(phone[0],),
            senders=senders,
            bodies=tuple(fields["Message"]),
            default_sender=not senders,
            secrets=read.secrets,  # Subject: content besides the text
            controls=(
                *read.controls,
                *(replace(c, name=ATTRIBUTES_AT + c.name) for c in attributes.controls),
            ),
        )


_READER: Final = PublishReader()
_MESSAGE_ID: Final = re.compile(rb"<MessageId>([A-Za-z0-9-]{1,128})</MessageId>")


class SnsAdapter:
    __slots__ = ()
    name: str = "aws-sns"
    slots = (SigV4Slot("sns"), BASIC)

    def reader(self, route: RouteConfig) -> PublishReader:
        return _READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return UpstreamTarget(template.render(params))

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        if not 200 <= status < 300:
            return None
        match = _MESSAGE_ID.search(body)
        return match[1].decode("ascii") if match else None


def _credential_problem(kind: str, paths: tuple[str, ...]) -> str | None:
    return None if kind == "aws-sigv4" else "provider 'aws-sns' needs type = \"aws-sigv4\""


PROVIDER: Final = Provider("aws-sns", lambda settings: SnsAdapter(), credential_problem=_credential_problem)
