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

from gateway.errors import bad_request
from gateway.providers.base import Message, NumberRule, Provider, UpstreamTarget
from gateway.providers.forms import Role, form_fields, read_form
from gateway.providers.generic import JsonFieldsReader, compile_spec_path, message_id_at
from gateway.providers.slots import BASIC

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["MESSAGES_PROVIDER", "PROVIDER", "VonageAdapter", "VonageMessagesAdapter", "VonageSmsReader"]

NUMBERS: Final = NumberRule(bare_digits=True)

_SMS: Final[tuple[tuple[str, Role, bool], ...]] = (
    ("to", "recipient", False),
    ("from", "sender", False),
    ("text", "body", False),
    ("body", "body", False),
    ("api_key", "code", True),
    ("api_secret", "code", True),
    ("sig", "code", True),
)
_CREDENTIALS: Final = ("api_key", "api_secret", "sig")


class VonageSmsReader:
    __slots__ = ()

    fields: frozenset[str] = frozenset(name for name, _, _ in _SMS)
    numbers: NumberRule = NUMBERS

    def parse(self, body: bytes, content_type: str) -> Message:
        fields = form_fields(read_form(body, content_type), _SMS)
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
        )


def _no_custom(doc: dict[str, object]) -> None:
    failover = doc.get("failover")
    for message in [doc, *failover] if isinstance(failover, list) else [doc]:
        if isinstance(message, dict) and message.get("message_type") == "custom":
            raise bad_request("a custom message cannot be checked; send text or media")


_MEDIA: Final = ("image", "video", "file", "audio")

MESSAGES_READER: Final = JsonFieldsReader(
    recipients=("/to", "/failover/*/to"),
    senders=("/from", "/failover/*/from"),
    bodies=("/text", "/failover/*/text", *(f"/{m}/caption" for m in _MEDIA)),
    secrets=tuple(f"/{m}/url" for m in _MEDIA),
    numbers=NUMBERS,
    check=_no_custom,
)

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
