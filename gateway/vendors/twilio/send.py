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

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gateway.core.errors import bad_request
from gateway.messages.base import E164, AccountPath, Message, NumberRule, Provider, UpstreamTarget
from gateway.messages.fields import CHANNEL, Control, Field, FieldTable
from gateway.messages.forms import load_json_answer, read_form
from gateway.messages.slots import BASIC

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate

__all__ = [
    "CHECK_FIELDS",
    "MESSAGES_FIELDS",
    "PROVIDER",
    "VERIFY_FIELDS",
    "TwilioAdapter",
    "TwilioMessagesReader",
    "TwilioVerificationCheckReader",
    "TwilioVerifyReader",
]

F = Field

#: Programmable Messaging, ``Messages.json`` create: every parameter twilio-python sends.
MESSAGES_FIELDS: Final = FieldTable(
    (
        F("To", "recipient", note="a number, or channel:address (whatsapp:, messenger:, rcs:) - a channel"),
        F("From", "sender"),
        F(
            "MessagingServiceSid",
            "control",
            note="sender pool; alone it is the sender, beside From it needs allowing",
        ),
        F("FallbackFrom", "sender", note="the sender used when an RCS send falls back to SMS"),
        F("Body", "content", text=True),
        F(
            "MediaUrl",
            "content",
            repeat=True,
            note="Twilio fetches each URL and sends it as MMS (costs more)",
        ),
        F("ContentSid", "content", template=True, note="a stored template: the text is not in the request"),
        F("ContentVariables", "content", note="the template's values, often a code"),
        F(
            "PersistentAction",
            "content",
            repeat=True,
            note="links (mailto:, geo:, tel:) shown with the message",
        ),
        F("StatusCallback", "callback_url", note="Twilio posts receipts, numbers and the account id there"),
        F("ApplicationSid", "control", note="receipts go to the TwiML app's status callback URL"),
        F("MaxPrice", "control", note="price cap"),
        F("ValidityPeriod", "control", note="how long Twilio keeps trying"),
        F("ForceDelivery", "control", note="reserved; bypasses Twilio's checks"),
        F("TrafficType", "control", note="'free': the recipient does not pay (short codes)"),
        F("ShortenUrls", "control", note="Twilio rewrites links and tracks clicks"),
        F("ScheduleType", "control", note="scheduling"),
        F("SendAt", "control", note="scheduling: the send happens later, after the gateway's checks"),
        F("SendAsMms", "control", note="sends as MMS (costs more)"),
        F(
            "RiskCheck",
            "control",
            safe=frozenset({"enable"}),
            note="'disable' turns off SMS pumping protection",
        ),
        F("ProvideFeedback", "harmless"),
        F("Attempt", "harmless"),
        F("ContentRetention", "harmless"),
        F("AddressRetention", "harmless"),
        F("SmartEncoded", "harmless"),
        F("MessageIntent", "harmless"),
    )
)
#: Verify, ``Verifications`` create.
VERIFY_FIELDS: Final = FieldTable(
    (
        F("To", "recipient"),
        F(
            "Channel",
            "control",
            channel=True,
            note="sms by default; call, whatsapp, email, sna, auto need channels",
        ),
        F("CustomMessage", "content", text=True),
        F("CustomFriendlyName", "content", note="shown in the message"),
        F("CustomCode", "content", note="the code itself"),
        F("Amount", "content", note="PSD2: shown in the message"),
        F("Payee", "content", note="PSD2: shown in the message"),
        F("AppHash", "content", note="appended to the message"),
        F("TemplateSid", "content", template=True, note="a stored template"),
        F("TemplateCustomSubstitutions", "content", note="the template's values"),
        F("Templates", "content", template=True, note="stored templates"),
        F("SendDigits", "control", note="call channel: digits dialled on answer"),
        F("ChannelConfiguration", "control", note="overrides the channel's sender, template, substitutions"),
        F("EnableSnaClientToken", "control", note="silent network auth"),
        F("RiskCheck", "control", safe=frozenset({"enable"}), note="'disable' turns off fraud guard"),
        F("Locale", "harmless"),
        F("RateLimits", "harmless", note="keys of the service's own rate limits"),
        F("DeviceIp", "harmless", note="a fraud signal"),
        F("Tags", "harmless"),
    )
)
#: Verify, ``VerificationCheck`` create.
CHECK_FIELDS: Final = FieldTable(
    (
        F("To", "recipient"),
        F("Code", "content", note="the code being checked"),
        F("VerificationSid", "harmless", note="names the verification instead of To"),
        F("Amount", "content"),
        F("Payee", "content"),
        F("SnaClientToken", "content", note="silent network auth token"),
    )
)
#: ``whatsapp:+1...``: a channel prefix on a number (Twilio's channel addresses).
_CHANNEL_PREFIX: Final = re.compile(r"([A-Za-z][A-Za-z0-9-]*):(.*)", re.DOTALL)


def _one(values: list[str]) -> tuple[str, ...]:
    return (values[0],) if values else ()


def _recipient(values: list[str]) -> tuple[str, tuple[Control, ...]]:
    """The number Twilio dials, and the channel a ``channel:`` prefix names (checked as a channel)."""
    if not values or not values[0].strip():
        raise bad_request("the To field is missing or empty")
    found = _CHANNEL_PREFIX.fullmatch(values[0])
    if found is None:
        return values[0], ()
    return found[2], (Control("To", CHANNEL, found[1]),)


class TwilioMessagesReader:
    """Reads a Messages.json create request exactly as twilio-python encodes it."""

    __slots__ = ()

    table: FieldTable = MESSAGES_FIELDS
    fields: frozenset[str] = MESSAGES_FIELDS.message_names
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        read = MESSAGES_FIELDS.read_form(read_form(body, content_type))
        fields = read.values
        to, channel = _recipient(fields["To"])
        service = fields["MessagingServiceSid"]
        from_ = fields["From"]
        controls = read.controls
        if not (from_ and from_[0]):
            # Alone, the messaging service is the sender, checked against the client's senders.
            controls = tuple(c for c in controls if not (c.name == "MessagingServiceSid" and c.exact))
        # An empty From names no sender; the messaging service, if given, is then what gets checked.
        sender = next((v[0] for v in (from_, service) if v and v[0]), None)
        senders = (sender,) if sender is not None else ()
        senders += tuple(v for v in fields["FallbackFrom"] if v)
        return Message(
            recipients=(to,),
            senders=senders,
            bodies=_one(fields["Body"]),
            default_sender=sender is None,
            secrets=read.secrets,
            controls=(*channel, *controls),
            templated=read.templated,
        )


class TwilioVerifyReader:
    """Starts a verification: the code Twilio sends (``CustomCode``) is a secret. Verify names no
    sender (the service's own), so a client with a ``senders`` list is refused here."""

    __slots__ = ()

    table: FieldTable = VERIFY_FIELDS
    fields: frozenset[str] = VERIFY_FIELDS.message_names
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        read = VERIFY_FIELDS.read_form(read_form(body, content_type))
        fields = read.values
        to, channel = _recipient(fields["To"])
        return Message(
            recipients=(to,),
            bodies=_one(fields["CustomMessage"]),
            default_sender=True,
            secrets=read.secrets,
            controls=(*channel, *read.controls),
            templated=read.templated,
        )


class TwilioVerificationCheckReader:
    """Checks a code: ``Code`` is a secret; ``To`` may be left out for a ``VerificationSid``."""

    __slots__ = ()

    table: FieldTable = CHECK_FIELDS
    fields: frozenset[str] = CHECK_FIELDS.message_names
    numbers: NumberRule = E164

    def parse(self, body: bytes, content_type: str) -> Message:
        read = CHECK_FIELDS.read_form(read_form(body, content_type))
        fields = read.values
        if not fields["Code"]:
            raise bad_request("the Code field is missing")
        to = fields["To"]
        if (to and not to[0].strip()) or (not to and not fields["VerificationSid"]):
            raise bad_request("the To field is missing or empty")
        return Message(
            recipients=_one(to),
            default_sender=True,
            secrets=read.secrets,
            controls=read.controls,
            verification_ids=_one(fields["VerificationSid"]),
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
