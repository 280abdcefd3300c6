"""SMSAPI: ``POST /sms.do``, form-encoded, ``Authorization: Bearer``.

``to`` holds one or more numbers joined by commas, ``from`` the sender, ``message`` the text;
``param1``..``param4`` are substituted per recipient into the text and are logged like it, and
``template`` names a text stored at SMSAPI. Every other parameter of ``sms.do`` is declared in
:data:`SEND_FIELDS` with its role; anything else is refused. ``group`` sends to a contact group whose
members are not in the request, so it is refused under every spelling PHP would read as it, and
so is an ``encoding`` other than UTF-8 (SMSAPI would decode the text differently). SMSAPI reads a
number of nine digits or fewer as Polish, so bare numbers must be longer than that (or start
with ``+``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.core.errors import bad_request
from gateway.messages.base import Message, NumberRule, Provider, UpstreamTarget
from gateway.messages.fanout import FanOut
from gateway.messages.fields import Field, FieldTable
from gateway.messages.forms import read_form
from gateway.messages.slots import BASIC, TokenSlot
from gateway.vendors.generic.pointers import compile_spec_path, message_id_at, split_recipients

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = ["FANOUT", "PROVIDER", "SEND_FIELDS", "SmsapiAdapter", "SmsapiReader"]

F = Field
_OFF: Final = frozenset({"0", "false", ""})

#: ``sms.do``: every parameter smsapi-python-client, -php-client and -javascript-client send.
SEND_FIELDS: Final = FieldTable(
    (
        F("to", "recipient", note="numbers joined by commas; each is checked"),
        F("from", "sender", note="a registered sender name; empty or absent: the account's default"),
        F("message", "content", text=True),
        F("template", "content", template=True, note="a text stored at SMSAPI: not in the request"),
        *(F(f"param{i}", "content", note="substituted into the text per recipient") for i in range(1, 5)),
        F("udh", "content", note="binary message header"),
        F("datacoding", "control", note="'bin': a binary message (udh + hex text)"),
        F("flash", "control", safe=_OFF, note="shown on screen without being stored"),
        F("fast", "control", safe=_OFF, note="priority delivery; SMSAPI charges 50% more"),
        F("date", "control", note="scheduling: sent later, after the gateway's checks"),
        F("time_restriction", "control", safe=frozenset({"follow"}), note="'ignore' sends at night"),
        F("expiration_date", "control", note="validity: how long SMSAPI keeps trying"),
        F("discount_group", "control", note="picks a price list"),
        F(
            "allow_duplicates",
            "control",
            safe=_OFF,
            note="turns off SMSAPI's check against the same text to the same number",
        ),
        F("notify_url", "callback_url", note="SMSAPI calls it with each receipt (number, status, idx)"),
        F("encoding", "harmless", note="only UTF-8 is accepted"),
        F("date_validate", "harmless", note="refuse a date in the past"),
        F("max_parts", "harmless", note="refuse a text longer than this many parts"),
        F("skip_foreign", "harmless", note="send to Polish numbers only"),
        F("idx", "harmless", note="the client's reference, echoed in receipts"),
        F("check_idx", "harmless"),
        F("nounicode", "harmless"),
        F("normalize", "harmless", note="replaces accented letters"),
        F("partner_id", "harmless"),
        F("test", "harmless", note="checked by SMSAPI, not sent"),
        F("details", "harmless", note="a longer answer"),
        F("format", "harmless", note="'json': a JSON answer"),
    )
)
#: Fields that send to numbers not in the request: refused, however written.
FANOUT: Final = FanOut(
    {"group": "sending to contact groups is not supported: their members cannot be checked"}
)


class SmsapiReader:
    __slots__ = ()

    table: FieldTable = SEND_FIELDS
    fields: frozenset[str] = SEND_FIELDS.message_names
    numbers: NumberRule = NumberRule(bare_digits=True, min_bare_digits=10)

    def parse(self, body: bytes, content_type: str) -> Message:
        pairs = read_form(body, content_type)
        FANOUT.check_form(pairs)
        read = SEND_FIELDS.read_form(pairs)
        fields = read.values
        encoding = fields["encoding"]
        if encoding and encoding[0].lower() not in ("utf-8", "utf8"):
            raise bad_request("only the UTF-8 encoding is accepted")
        sender = fields["from"]
        return Message(
            recipients=split_recipients(fields["to"], ","),
            senders=(sender[0],) if sender and sender[0] else (),
            bodies=tuple(fields["message"]),
            default_sender=not (sender and sender[0]),
            secrets=read.secrets,
            controls=read.controls,
            templated=read.templated,
        )


_READER: Final = SmsapiReader()
_ID: Final = compile_spec_path("/list/0/id")


class SmsapiAdapter:
    __slots__ = ()
    name: str = "smsapi"
    slots = (TokenSlot("Bearer"), BASIC)

    def reader(self, route: RouteConfig) -> SmsapiReader:
        return _READER

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return UpstreamTarget(template.render(params))

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        if body.startswith(b"OK:") and 200 <= status < 300:  # without format=json: "OK:<id>:<points>"
            ident = body[3:].split(b":", 1)[0].strip().decode("ascii", "replace")
            return ident[:128] or None
        return message_id_at(_ID, status, body)


PROVIDER: Final = Provider("smsapi", lambda settings: SmsapiAdapter())
