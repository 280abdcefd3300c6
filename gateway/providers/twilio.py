"""Twilio Programmable Messaging: ``POST /2010-04-01/Accounts/{account}/Messages.json``, form-encoded.

Twilio reads one ``To`` (no list), a sender from ``From`` or ``MessagingServiceSid``, and the text
from ``Body``. Repeated single-valued fields are refused: which occurrence Twilio would use is not
documented, and the gateway must check the one that is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.errors import bad_request
from gateway.providers.base import AccountPath, Message, Provider, UpstreamTarget
from gateway.providers.forms import Role, form_fields, load_json_answer, read_form

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = ["PROVIDER", "TwilioAdapter", "TwilioMessagesReader"]

_WANTED: Final[tuple[tuple[str, Role, bool], ...]] = (
    ("To", "recipient", False),
    ("From", "sender", False),
    ("MessagingServiceSid", "sender", False),
    ("Body", "body", False),
)


class TwilioMessagesReader:
    """Reads a Messages.json create request exactly as twilio-python encodes it."""

    __slots__ = ()

    fields: frozenset[str] = frozenset(name.casefold() for name, _, _ in _WANTED)

    def parse(self, body: bytes, content_type: str) -> Message:
        fields = form_fields(read_form(body, content_type), _WANTED)
        to = fields["To"]
        if not to or not to[0].strip():
            raise bad_request("the To field is missing or empty")
        # An empty From names no sender; the messaging service, if given, is then what gets checked.
        sender = next((v[0] for v in (fields["From"], fields["MessagingServiceSid"]) if v and v[0]), None)
        text = fields["Body"]
        return Message(
            recipients=(to[0],),
            senders=(sender,) if sender is not None else (),
            bodies=(text[0],) if text else (),
            default_sender=sender is None,
        )


class TwilioAdapter:
    __slots__ = ("_accounts",)

    name: str = "twilio"
    _messages: Final = TwilioMessagesReader()

    def __init__(self, account_id: str = "") -> None:
        self._accounts = AccountPath(("account",), account_id)

    def reader(self, route: RouteConfig | None = None) -> TwilioMessagesReader:
        return self._messages

    def parse(self, body: bytes, content_type: str) -> Message:
        return self._messages.parse(body, content_type)

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        return self._accounts.target(template, params)

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        doc = load_json_answer(status, body)
        if isinstance(doc, dict):
            sid = doc.get("sid")
            if isinstance(sid, str):
                return sid
        return None


PROVIDER: Final = Provider("twilio", lambda settings: TwilioAdapter(settings.account_id))
