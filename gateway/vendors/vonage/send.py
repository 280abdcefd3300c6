"""Vonage: the SMS API (``vonage``) and the Messages API (``vonage-messages``).

- ``POST /sms/json``, form-encoded: ``to``, ``from``, ``text`` (``body`` for binary messages).
  ``api_key``, ``api_secret`` and ``sig`` in the body are credentials: the gateway cannot check
  a signature made with a secret it holds only a hash of, and must not pass a client's
  credential on, so such a body is refused. The Vonage SDK (v4) sends Basic auth unless it was
  given a ``signature_secret``.
- ``POST /v1/messages``, JSON: ``to``, ``from``, ``text`` (or a media ``caption``), and the same
  for every ``failover`` message, which Vonage sends when the first one fails.

Vonage reads numbers as international digits without ``+`` (``447700900123``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.core.errors import bad_request
from gateway.messages.base import Message, NumberRule, Provider, UpstreamTarget
from gateway.messages.fields import Field, FieldTable
from gateway.messages.forms import read_form
from gateway.messages.slots import BASIC
from gateway.vendors.generic.pointers import compile_spec_path, message_id_at
from gateway.vendors.generic.send import JsonFieldsReader

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = [
    "MESSAGES_FIELDS",
    "MESSAGES_PROVIDER",
    "PROVIDER",
    "SMS_FIELDS",
    "VonageAdapter",
    "VonageMessagesAdapter",
    "VonageSmsReader",
]

NUMBERS: Final = NumberRule(bare_digits=True)

F = Field

#: ``POST /sms/json``: every parameter of the SMS API (vonage_sms ``SmsMessage``).
SMS_FIELDS: Final = FieldTable(
    (
        F("to", "recipient"),
        F("from", "sender"),
        F("text", "content", text=True),
        F("body", "content", text=True, note="binary messages: hex-encoded payload"),
        F("type", "control", safe=frozenset({"text", "unicode"}), note="'binary' sends raw bytes (with udh)"),
        F("udh", "control", note="user data header: ports, WAP push, concatenation"),
        F("protocol-id", "control", note="e.g. silent (type 0) or SIM data download messages"),
        F("message-class", "control", note="0: flash message; 2, 3: to the SIM"),
        F("ttl", "control", note="how long Vonage keeps trying"),
        F("callback", "callback_url", note="Vonage posts delivery receipts (numbers, account) there"),
        F("account-ref", "control", note="billing sub-account"),
        F("trusted-number", "control", note="'true' skips Fraud Defender"),
        F("status-report-req", "harmless", note="receipts go to the account's own webhook"),
        F("client-ref", "harmless"),
        F("entity-id", "harmless", note="regulatory (India DLT)"),
        F("content-id", "harmless", note="regulatory (India DLT) template id; the text is in text"),
        F("api_key", "harmless", note="refused: a credential (HTTP Basic instead)"),
        F("api_secret", "harmless", note="refused: a credential"),
        F("sig", "harmless", note="refused: a signature the gateway cannot check"),
        F("timestamp", "harmless", note="part of a signed request (with sig)"),
    )
)
_CREDENTIALS: Final = ("api_key", "api_secret", "sig")


class VonageSmsReader:
    __slots__ = ()

    table: FieldTable = SMS_FIELDS
    fields: frozenset[str] = SMS_FIELDS.message_names
    numbers: NumberRule = NUMBERS

    def parse(self, body: bytes, content_type: str) -> Message:
        read = SMS_FIELDS.read_form(read_form(body, content_type))
        fields = read.values
        if any(fields[name] for name in _CREDENTIALS):
            raise bad_request(
                "credentials belong in the Authorization header (HTTP Basic), not in the body; "
                "the gateway adds the vendor's own"
            )
        to = fields["to"]
        if not to or not to[0].strip():
            raise bad_request("the to field is missing or empty")
        sender = fields["from"]
        return Message(
            recipients=(to[0],),
            senders=(sender[0],) if sender and sender[0] else (),
            bodies=(*fields["text"], *fields["body"]),
            default_sender=not (sender and sender[0]),
            secrets=read.secrets,
            controls=read.controls,
        )


def _no_custom(doc: dict[str, object]) -> None:
    failover = doc.get("failover")
    for message in [doc, *failover] if isinstance(failover, list) else [doc]:
        if isinstance(message, dict) and message.get("message_type") == "custom":
            raise bad_request("a custom message cannot be checked; send text or media")


_MEDIA: Final = ("image", "video", "audio", "file", "vcard")


def _message_fields(prefix: str) -> list[Field]:
    """One Messages API message (SMS and MMS); the same fields in each ``failover`` message."""
    out = [
        F(f"{prefix}/to", "recipient"),
        F(f"{prefix}/from", "sender"),
        F(f"{prefix}/text", "content", text=True),
        F(
            f"{prefix}/channel",
            "control",
            channel=True,
            note="sms; mms, whatsapp, rcs, viber, messenger need channels",
        ),
        F(f"{prefix}/message_type", "harmless", note="text or a media kind ('custom' is refused)"),
        F(
            f"{prefix}/webhook_url",
            "callback_url",
            note="Vonage posts status webhooks (numbers, account) there",
        ),
        F(f"{prefix}/ttl", "control", note="how long Vonage keeps trying"),
        F(f"{prefix}/trusted_recipient", "control", note="'true' skips Fraud Defender"),
        F(f"{prefix}/sms/pool_id", "control", note="number pool: a sender pool"),
        F(f"{prefix}/sms/encoding_type", "harmless"),
        F(f"{prefix}/sms/content_id", "harmless", note="regulatory (India DLT)"),
        F(f"{prefix}/sms/entity_id", "harmless", note="regulatory (India DLT)"),
        F(f"{prefix}/client_ref", "harmless"),
        F(f"{prefix}/webhook_version", "harmless"),
    ]
    for media in _MEDIA:
        out.append(F(f"{prefix}/{media}/url", "content", note="Vonage fetches it and sends it (MMS)"))
        out.append(F(f"{prefix}/{media}/caption", "content", text=True))
    return out


#: ``POST /v1/messages``: a message and its failover messages (SMS and MMS fields; other
#: channels' own objects are not declared, so they are refused).
MESSAGES_FIELDS: Final = FieldTable((*_message_fields(""), *_message_fields("/failover/*")))

MESSAGES_READER: Final = JsonFieldsReader(fields=MESSAGES_FIELDS, numbers=NUMBERS, check=_no_custom)
_SMS_READER: Final = VonageSmsReader()
_SMS_ID: Final = compile_spec_path("/messages/0/message-id")
_UUID: Final = compile_spec_path("/message_uuid")


class VonageAdapter:
    __slots__ = ()
    name: str = "vonage"
    slots = (BASIC,)

    def reader(self, route: RouteConfig) -> VonageSmsReader:
        return _SMS_READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return UpstreamTarget(template.render(params))

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        return message_id_at(_SMS_ID, status, body)


class VonageMessagesAdapter:
    __slots__ = ()
    name: str = "vonage-messages"
    slots = (BASIC,)

    def reader(self, route: RouteConfig) -> JsonFieldsReader:
        return MESSAGES_READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return UpstreamTarget(template.render(params))

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        return message_id_at(_UUID, status, body)


PROVIDER: Final = Provider("vonage", lambda settings: VonageAdapter())
MESSAGES_PROVIDER: Final = Provider("vonage-messages", lambda settings: VonageMessagesAdapter())
