"""Twilio, form-encoded: Programmable Messaging and Verify.

- Messages: ``POST /2010-04-01/Accounts/{account}/Messages.json`` reads one ``To`` (no list), a
  sender from ``From`` or ``MessagingServiceSid``, the text from ``Body``; ``MediaUrl`` (repeatable)
  and ``ContentVariables`` (template values, often a code) are logged like bodies.
- Verify: ``POST /v2/Services/{service}/Verifications`` (``To``, ``Channel``, ``CustomCode``,
  ``CustomMessage``) and ``.../VerificationCheck`` (``To`` or ``VerificationSid``, ``Code``); the
  codes are logged like bodies. Verify lives on another host (``verify.twilio.com``), so it is a
  gateway of its own (``upstream.base_url``).

Repeated single-valued fields are refused: which occurrence Twilio would use is not documented,
and the gateway must check the one that is sent. The reader is picked by the route's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.errors import bad_request
from gateway.providers.base import E164, AccountPath, Message, NumberRule, Provider, UpstreamTarget
from gateway.providers.forms import Role, form_fields, load_json_answer, read_form
from gateway.providers.slots import BASIC

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.routing import PathTemplate

__all__ = [
    "PROVIDER",
    "TwilioAdapter",
    "TwilioMessagesReader",
    "TwilioVerificationCheckReader",
    "TwilioVerifyReader",
]

Wanted = tuple[tuple[str, Role, bool], ...]

_MESSAGES: Final[Wanted] = (
    ("To", "recipient", False),
    ("From", "sender", False),
    ("MessagingServiceSid", "sender", False),
    ("Body", "body", False),
    ("MediaUrl", "code", True),
    ("ContentVariables", "code", False),
)
_VERIFY: Final[Wanted] = (
    ("To", "recipient", False),
    ("CustomMessage", "body", False),
    ("CustomCode", "code", False),
)
_CHECK: Final[Wanted] = (
    ("To", "recipient", False),
    ("Code", "code", False),
)


def _names(wanted: Wanted) -> frozenset[str]:
    return frozenset(name.casefold() for name, _, _ in wanted)


def _one(values: list[str]) -> tuple[str, ...]:
    return (values[0],) if values else ()


class TwilioMessagesReader:
    """Reads a Messages.json create request exactly as twilio-python encodes it."""

    __slots__ = ()

    fields: frozenset[str] = _names(_MESSAGES)
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        fields = form_fields(read_form(body, content_type), _MESSAGES)
        to = fields["To"]
        if not to or not to[0].strip():
            raise bad_request("the To field is missing or empty")
        # An empty From names no sender; the messaging service, if given, is then what gets checked.
        sender = next((v[0] for v in (fields["From"], fields["MessagingServiceSid"]) if v and v[0]), None)
        return Message(
            recipients=(to[0],),
            senders=(sender,) if sender is not None else (),
            bodies=_one(fields["Body"]),
            default_sender=sender is None,
            secrets=(*fields["MediaUrl"], *fields["ContentVariables"]),
        )


class TwilioVerifyReader:
    """Starts a verification: the code Twilio sends (``CustomCode``) is a secret. Verify names no
    sender (the service's own), so a client with a ``senders`` list is refused here."""

    __slots__ = ()

    fields: frozenset[str] = _names(_VERIFY)
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        fields = form_fields(read_form(body, content_type), _VERIFY)
        to = fields["To"]
        if not to or not to[0].strip():
            raise bad_request("the To field is missing or empty")
        return Message(
            recipients=(to[0],),
            bodies=_one(fields["CustomMessage"]),
            default_sender=True,
            secrets=_one(fields["CustomCode"]),
        )


class TwilioVerificationCheckReader:
    """Checks a code: ``Code`` is a secret; ``To`` may be left out for a ``VerificationSid``."""

    __slots__ = ()

    fields: frozenset[str] = _names(_CHECK)
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        pairs = read_form(body, content_type)
        fields = form_fields(pairs, _CHECK)
        extra = form_fields(pairs, (("VerificationSid", "recipient", False),))
        if not fields["Code"]:
            raise bad_request("the Code field is missing")
        to = fields["To"]
        if (to and not to[0].strip()) or (not to and not extra["VerificationSid"]):
            raise bad_request("the To field is missing or empty")
        return Message(
            recipients=_one(to),
            default_sender=True,
            secrets=_one(fields["Code"]),
            verification_ids=_one(extra["VerificationSid"]),
        )


class TwilioAdapter:
    __slots__ = ("_accounts",)

    name: str = "twilio"
    slots = (BASIC,)
    _messages: Final = TwilioMessagesReader()
    _verify: Final = TwilioVerifyReader()
    _check: Final = TwilioVerificationCheckReader()

    def __init__(self, account_id: str = "") -> None:
        self._accounts = AccountPath(("account",), account_id)

    def reader(
        self, route: RouteConfig | None = None
    ) -> TwilioMessagesReader | TwilioVerifyReader | TwilioVerificationCheckReader:
        path = route.path if route is not None else ""
        if path.endswith("/Verifications"):
            return self._verify
        if path.endswith("/VerificationCheck"):
            return self._check
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
