"""SMSAPI: ``POST /sms.do``, form-encoded, ``Authorization: Bearer``.

``to`` holds one or more numbers joined by commas, ``from`` the sender, ``message`` the text;
``param1``..``param4`` are substituted per recipient into the text and are logged like it.
``group`` sends to a contact group whose members are not in the request, so it is refused, and
so is an ``encoding`` other than UTF-8 (SMSAPI would decode the text differently). SMSAPI reads a
number of nine digits or fewer as Polish, so bare numbers must be longer than that (or start
with ``+``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.errors import bad_request
from gateway.providers.base import Message, NumberRule, Provider, UpstreamTarget
from gateway.providers.forms import Role, form_fields, read_form
from gateway.providers.generic import compile_spec_path, message_id_at, split_recipients
from gateway.providers.slots import BASIC, TokenSlot

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["PROVIDER", "SmsapiAdapter", "SmsapiReader"]

_PARAMS: Final = tuple(f"param{i}" for i in range(1, 5))
_WANTED: Final[tuple[tuple[str, Role, bool], ...]] = (
    ("to", "recipient", False),
    ("from", "sender", False),
    ("message", "body", False),
    ("group", "recipient", True),
    ("encoding", "body", False),
    *((name, "code", False) for name in _PARAMS),
)


class SmsapiReader:
    __slots__ = ()

    fields: frozenset[str] = frozenset(name for name, _, _ in _WANTED)
    numbers: NumberRule = NumberRule(bare_digits=True, min_bare_digits=10)

    def parse(self, body: bytes, content_type: str) -> Message:
        fields = form_fields(read_form(body, content_type), _WANTED)
        if fields["group"]:
            raise bad_request("sending to contact groups is not supported: their members cannot be checked")
        encoding = fields["encoding"]
        if encoding and encoding[0].lower() not in ("utf-8", "utf8"):
            raise bad_request("only the UTF-8 encoding is accepted")
        sender = fields["from"]
        return Message(
            recipients=split_recipients(fields["to"], ","),
            senders=(sender[0],) if sender and sender[0] else (),
            bodies=tuple(fields["message"]),
            default_sender=not (sender and sender[0]),
            secrets=tuple(v for name in _PARAMS for v in fields[name]),
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
