"""AWS SNS ``Publish`` to a phone number: ``POST /``, form-encoded (the AWS query protocol).

``Action`` must be ``Publish``; ``PhoneNumber`` is the recipient (E.164), ``Message`` the text, and
the ``AWS.SNS.SMS.SenderID`` / ``AWS.MM.SMS.OriginationNumber`` message attributes the sender.
``TopicArn`` and ``TargetArn`` fan out to subscribers that are not in the request, and
``MessageStructure=json`` carries a different text per protocol, so both are refused.

boto3 signs its request with SigV4: the access key id is the client's gateway-issued username
and the secret key its password (``[[client.basic]] password``). The gateway checks that
signature, then signs the request again with its own AWS credentials
(``[upstream.credentials] type = "aws-sigv4"``): the body goes on unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.errors import bad_request
from gateway.providers.base import E164, Message, NumberRule, Provider, UpstreamTarget
from gateway.providers.forms import Role, field_base, form_fields, read_form
from gateway.providers.slots import BASIC, SigV4Slot

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["PROVIDER", "PublishReader", "SnsAdapter"]

_WANTED: Final[tuple[tuple[str, Role, bool], ...]] = (
    ("Action", "body", False),
    ("PhoneNumber", "recipient", False),
    ("Message", "body", False),
    ("Subject", "body", False),
    ("MessageStructure", "body", False),
    ("TopicArn", "recipient", True),
    ("TargetArn", "recipient", True),
)
_ATTRIBUTE: Final = re.compile(
    r"MessageAttributes\.entry\.([1-9][0-9]{0,2})\.(Name|Value\.DataType|Value\.StringValue|Value\.BinaryValue)"
)
_SENDER_ATTRIBUTES: Final = frozenset({"AWS.SNS.SMS.SenderID", "AWS.MM.SMS.OriginationNumber"})


def _attributes(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``MessageAttributes.entry.N.*`` as {name: string value}; anything unexpected is refused."""
    entries: dict[str, dict[str, str]] = {}
    for name, value in pairs:
        if field_base(name) != "messageattributes":
            continue
        match = _ATTRIBUTE.fullmatch(name)
        if match is None:
            raise bad_request("a message attribute is written in a form AWS could read differently")
        entry = entries.setdefault(match[1], {})
        if match[2] in entry:
            raise bad_request("a message attribute field appears more than once")
        entry[match[2]] = value
    out: dict[str, str] = {}
    for entry in entries.values():
        key = entry.get("Name")
        if key is None or key in out:
            raise bad_request("a message attribute has no name, or appears more than once")
        out[key] = entry.get("Value.StringValue", "")
    return out


class PublishReader:
    __slots__ = ()

    fields: frozenset[str] = frozenset(name.casefold() for name, _, _ in _WANTED) | {"messageattributes"}
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        pairs = read_form(body, content_type)
        fields = form_fields(pairs, _WANTED)
        if fields["Action"] != ["Publish"]:
            raise bad_request("this route reads Action=Publish only")
        if fields["TopicArn"] or fields["TargetArn"]:
            raise bad_request(
                "publishing to a topic or endpoint is not supported: its subscribers cannot be checked"
            )
        if fields["MessageStructure"]:
            raise bad_request("MessageStructure is not supported: send one Message text")
        phone = fields["PhoneNumber"]
        if not phone or not phone[0].strip():
            raise bad_request("the PhoneNumber field is missing or empty")
        attributes = _attributes(pairs)
        senders = tuple(attributes[name] for name in sorted(_SENDER_ATTRIBUTES) if attributes.get(name))
        return Message(
            recipients=(phone[0],),
            senders=senders,
            bodies=(*fields["Message"], *fields["Subject"]),
            default_sender=not senders,
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


PROVIDER: Final = Provider("aws-sns", lambda settings: SnsAdapter())
