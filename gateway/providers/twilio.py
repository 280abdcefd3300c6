"""Twilio Programmable Messaging: ``POST /2010-04-01/Accounts/{sid}/Messages.json``, form-encoded.

Twilio reads one ``To`` (no list), a sender from ``From`` or ``MessagingServiceSid``, and the text
from ``Body``. Repeated single-valued fields are refused: which occurrence Twilio would use is not
documented, and the gateway must check the one that is sent.
"""

from __future__ import annotations

from typing import Final

from gateway.errors import bad_request
from gateway.providers.base import Message
from gateway.providers.generic import Role, form_fields, load_json_answer, read_form

__all__ = ["TwilioAdapter"]

_WANTED: Final[tuple[tuple[str, Role, bool], ...]] = (
    ("To", "recipient", False),
    ("From", "sender", False),
    ("MessagingServiceSid", "sender", False),
    ("Body", "body", False),
)


class TwilioAdapter:
    """Reads a Messages.json create request exactly as twilio-python encodes it."""

    __slots__ = ()

    name: str = "twilio"
    read_fields: frozenset[str] = frozenset(name.lower() for name, _, _ in _WANTED)

    def parse(self, body: bytes, content_type: str) -> Message:
        fields = form_fields(read_form(body, content_type), _WANTED)
        to = fields["To"]
        if not to or not to[0].strip():
            raise bad_request("the To field is missing or empty")
        # An empty From names no sender; the messaging service, if given, is then what gets checked.
        sender = next((v[0] for v in (fields["From"], fields["MessagingServiceSid"]) if v and v[0]), None)
        text = fields["Body"]
        return Message(recipients=(to[0],), sender=sender, body=text[0] if text else None)

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        doc = load_json_answer(status, body)
        if isinstance(doc, dict):
            sid = doc.get("sid")
            if isinstance(sid, str):
                return sid
        return None
