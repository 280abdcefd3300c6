"""Messente: the legacy ``send_sms`` API and Omnimessage.

- ``send_sms`` (``GET`` or ``POST /send_sms/``): ``to``, ``from``, ``text`` in the query string or a
  form body, with the account's ``username`` and ``password`` in the query. A client sends its
  gateway-issued username and password there; the gateway removes them and puts the vendor's in
  their place. A message field given in both query and body is refused (which one Messente takes
  is not documented).
- Omnimessage (``POST /v1/omnimessage``, JSON, Basic auth): ``to``, and ``messages[].sender`` and
  ``messages[].text`` of every channel in the fallback chain (SMS, Viber, Telegram).

Messente reads numbers in international format with ``+``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.errors import bad_request
from gateway.providers.base import E164, Message, NumberRule, Provider, UpstreamTarget
from gateway.providers.forms import FORM_TYPE, Role, form_fields, read_form
from gateway.providers.generic import JsonFieldsReader, compile_spec_path, message_id_at
from gateway.providers.slots import BASIC, QuerySlot

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["PROVIDER", "MessenteAdapter", "SendSmsReader"]

_LEGACY: Final[tuple[tuple[str, Role, bool], ...]] = (
    ("to", "recipient", False),
    ("from", "sender", False),
    ("text", "body", False),
)
#: Where the legacy API takes the account's credentials.
QUERY_CREDENTIALS: Final = ("username", "password")


class SendSmsReader:
    """The legacy API merges query and form parameters, so both are read, as one."""

    __slots__ = ()

    fields: frozenset[str] = frozenset(name for name, _, _ in _LEGACY)
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        return self.parse_request("", body, content_type)

    def parse_request(self, raw_query: str, body: bytes, content_type: str) -> Message:
        pairs = read_form(raw_query.encode("utf-8"), FORM_TYPE) if raw_query else []
        if body:
            pairs += read_form(body, content_type)
        fields = form_fields(pairs, _LEGACY)  # a field in both places counts as given twice
        to = fields["to"]
        if not to or not to[0].strip():
            raise bad_request("the to field is missing or empty")
        sender = fields["from"]
        return Message(
            recipients=(to[0],),
            senders=(sender[0],) if sender and sender[0] else (),
            bodies=tuple(fields["text"]),
            default_sender=not (sender and sender[0]),
        )


OMNIMESSAGE_READER: Final = JsonFieldsReader(
    recipients=("/to",),
    senders=("/messages/*/sender",),
    bodies=("/messages/*/text",),
    numbers=E164,
)
_LEGACY_READER: Final = SendSmsReader()
_OMNI_ID: Final = compile_spec_path("/omnimessage_id")


def _is_legacy(path: str) -> bool:
    return path.rstrip("/").endswith("/send_sms")


class MessenteAdapter:
    __slots__ = ()
    name: str = "messente"
    slots = (BASIC, QuerySlot(*QUERY_CREDENTIALS))

    def reader(self, route: RouteConfig) -> SendSmsReader | JsonFieldsReader:
        return _LEGACY_READER if _is_legacy(route.path) else OMNIMESSAGE_READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        path = template.render(params)
        return UpstreamTarget(path, query_credentials=QUERY_CREDENTIALS if _is_legacy(path) else None)

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        if body.startswith(b"OK ") and 200 <= status < 300:  # legacy: "OK <message id>"
            ident = body[3:].strip().decode("ascii", "replace")
            return ident[:128] or None
        return message_id_at(_OMNI_ID, status, body)


PROVIDER: Final = Provider("messente", lambda settings: MessenteAdapter())
