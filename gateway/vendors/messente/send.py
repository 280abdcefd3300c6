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

from gateway.core.errors import bad_request
from gateway.messages.base import E164, Message, NumberRule, Provider, UpstreamTarget
from gateway.messages.fields import Field, FieldTable
from gateway.messages.forms import FORM_TYPE, check_name, field_base, read_form
from gateway.messages.slots import BASIC, QuerySlot
from gateway.vendors.generic.pointers import compile_spec_path, message_id_at
from gateway.vendors.generic.send import JsonFieldsReader

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = ["LEGACY_FIELDS", "OMNIMESSAGE_FIELDS", "PROVIDER", "MessenteAdapter", "SendSmsReader"]

F = Field

#: Legacy ``send_sms``: every parameter, in the query or the form body (the API merges both).
LEGACY_FIELDS: Final = FieldTable(
    (
        F("to", "recipient"),
        F("from", "sender"),
        F("text", "content", text=True),
        F("dlr-url", "callback_url", note="Messente calls it with delivery reports (numbers)"),
        F("time_to_send", "control", note="scheduling: the send happens later"),
        F("validity", "control", note="how long Messente keeps trying"),
        F("udh", "control", note="user data header: ports, WAP push"),
        F("mclass", "control", note="0: flash message; 2, 3: to the SIM"),
        F(
            "charset",
            "control",
            safe=frozenset({"utf-8", "utf8"}),
            note="another one reads the text differently",
        ),
        F("autoconvert", "harmless", note="replaces non-GSM characters"),
        F("text-store", "harmless", note="plaintext, nostore or sha256"),
    )
)
#: Where the legacy API takes the account's credentials.
QUERY_CREDENTIALS: Final = ("username", "password")
_CONSUMED: Final = frozenset(QUERY_CREDENTIALS)


class SendSmsReader:
    """The legacy API merges query and form parameters, so both are read, as one."""

    __slots__ = ()

    table: FieldTable = LEGACY_FIELDS
    fields: frozenset[str] = LEGACY_FIELDS.message_names
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        return self.parse_request("", body, content_type)

    def parse_request(self, raw_query: str, body: bytes, content_type: str) -> Message:
        pairs = read_form(raw_query.encode("utf-8"), FORM_TYPE) if raw_query else []
        # The credentials are read (and replaced) by the gateway's query slot, never forwarded as sent.
        pairs = [(name, value) for name, value in pairs if field_base(check_name(name)) not in _CONSUMED]
        if body:
            pairs += read_form(body, content_type)
        read = LEGACY_FIELDS.read_form(pairs)  # a field in both places counts as given twice
        fields = read.values
        to = fields["to"]
        if not to or not to[0].strip():
            raise bad_request("the to field is missing or empty")
        sender = fields["from"]
        return Message(
            recipients=(to[0],),
            senders=(sender[0],) if sender and sender[0] else (),
            bodies=tuple(fields["text"]),
            default_sender=not (sender and sender[0]),
            secrets=read.secrets,
            controls=read.controls,
        )


#: Omnimessage: ``to``, and the channels of its fallback chain (SMS, Viber, WhatsApp, Telegram,
#: RCS); each message is the union of the channels' fields (messente_api models).
OMNIMESSAGE_FIELDS: Final = FieldTable(
    (
        F("/to", "recipient"),
        F("/messages/*/sender", "sender"),
        F("/messages/*/text", "content", text=True),
        F(
            "/messages/*/channel",
            "control",
            channel=True,
            note="sms; viber, whatsapp, telegram, rcs need channels",
        ),
        F("/messages/*/validity", "control", note="minutes before the next channel is tried"),
        F("/messages/*/ttl", "control", note="seconds before the next channel is tried"),
        F("/messages/*/udh", "control", note="user data header: ports, WAP push"),
        F("/messages/*/autoconvert", "harmless", note="replaces non-GSM characters"),
        F("/messages/*/image_url", "content", note="Viber: fetched and sent"),
        F("/messages/*/button_url", "content", note="Viber: a link in the message"),
        F("/messages/*/button_text", "content"),
        F("/messages/*/video", "content"),
        F("/messages/*/carousel", "content"),
        F("/messages/*/template", "content", template=True, note="Viber or WhatsApp stored template"),
        F("/messages/*/image", "content"),
        F("/messages/*/audio", "content"),
        F("/messages/*/document", "content"),
        F("/messages/*/sticker", "content"),
        F("/messages/*/suggestions", "content", note="RCS: links and actions"),
        F("/messages/*/rich_card", "content"),
        F("/messages/*/content_info", "content"),
        F("/dlr_url", "callback_url", note="Messente posts delivery reports (numbers) there"),
        F("/time_to_send", "control", note="scheduling: the send happens later"),
        F("/priority", "control", note="high priority costs more"),
        F("/text_store", "harmless", note="plaintext, nostore or sha256"),
    )
)
OMNIMESSAGE_READER: Final = JsonFieldsReader(fields=OMNIMESSAGE_FIELDS, numbers=E164)
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


def _credential_problem(kind: str, paths: tuple[str, ...]) -> str | None:
    """The legacy ``send_sms`` takes the account's username and password in its query."""
    if kind != "basic" and any(path.rstrip("/").endswith("/send_sms") for path in paths):
        return "Messente's send_sms takes the account's username and password: use type = \"basic\""
    return None


PROVIDER: Final = Provider(
    "messente", lambda settings: MessenteAdapter(), credential_problem=_credential_problem
)
