"""The signature schemes by the name a route's ``signature`` uses, with what each needs: its
verifier, the fields its vendor's callbacks carry, whether it signs the URL, and the
``[route.webhook]`` keys it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from gateway.callbacks.base import Verifier
from gateway.callbacks.events import EventFields
from gateway.config.webhook_options import WebhookOptions
from gateway.vendors.generic.callback import HmacHeaderVerifier
from gateway.vendors.messagebird.callback import MessageBirdVerifier
from gateway.vendors.messente.callback import MessenteVerifier
from gateway.vendors.plivo.callback import PlivoV2Verifier, PlivoV3Verifier
from gateway.vendors.sinch.callback import SinchVerifier
from gateway.vendors.twilio.callback import TwilioVerifier
from gateway.vendors.vonage.callback import VonageSigVerifier
from gateway.vendors.vonage.callback_jwt import VonageJwtVerifier

__all__ = ["DEFAULT_SCHEME", "SCHEMES", "Scheme", "event_fields"]


@dataclass(frozen=True, slots=True)
class Scheme:
    name: str
    build: Callable[[bytes, WebhookOptions], Verifier]
    fields: EventFields
    #: The vendor signs the URL it calls: ``server.public_url`` is needed to rebuild it.
    signs_url: bool = False
    #: ``upstream.provider`` whose credential password signs the callbacks (the default secret).
    credential_of: str = ""
    #: ``[route.webhook]`` keys this scheme reads (``timeout_s`` and ``ca_file`` apply to all).
    options: frozenset[str] = frozenset()
    #: What to call the secret in check-config's messages.
    signed_with: str = "the vendor's signing secret"


_TWILIO = EventFields(
    message_id=("MessageSid", "SmsSid", "SmsMessageSid"),
    status=("MessageStatus", "SmsStatus"),
    numbers=("To", "From"),
    text=("Body",),
)
_PLIVO = EventFields(message_id=("MessageUUID",), status=("Status",), numbers=("To", "From"), text=("Text",))

SCHEMES: Final = MappingProxyType(
    {
        s.name: s
        for s in (
            Scheme(
                "twilio",
                lambda secret, o: TwilioVerifier(secret),
                _TWILIO,
                signs_url=True,
                credential_of="twilio",
                signed_with="the account's Auth Token",
            ),
            Scheme(
                "vonage",
                lambda secret, o: VonageSigVerifier(secret, o.algorithm or "md5-hash", o.tolerance_s),
                EventFields(("messageId",), ("status",), ("msisdn", "to"), ("text",)),
                options=frozenset({"algorithm", "tolerance_s"}),
                signed_with="the account's signature secret",
            ),
            Scheme(
                "vonage-jwt",
                lambda secret, o: VonageJwtVerifier(secret, o.tolerance_s),
                EventFields(("message_uuid",), ("status",), ("to", "from"), ("text",)),
                options=frozenset({"tolerance_s"}),
                signed_with="the account's signature secret",
            ),
            Scheme(
                "plivo",
                lambda secret, o: PlivoV2Verifier(secret),
                _PLIVO,
                signs_url=True,
                credential_of="plivo",
                signed_with="the account's Auth Token",
            ),
            Scheme(
                "plivo-v3",
                lambda secret, o: PlivoV3Verifier(secret),
                _PLIVO,
                signs_url=True,
                credential_of="plivo",
                signed_with="the account's Auth Token",
            ),
            Scheme(
                "sinch",
                lambda secret, o: SinchVerifier(secret, o.tolerance_s),
                EventFields(("batch_id", "id"), ("status",), ("recipient", "from", "to"), ("body",)),
                options=frozenset({"tolerance_s"}),
                signed_with="the callback secret of the service plan",
            ),
            Scheme(
                "messagebird",
                lambda secret, o: MessageBirdVerifier(secret),
                EventFields(("id",), ("status",), ("recipient", "originator"), ("body",)),
                signs_url=True,
                signed_with="the signing key (not the access key)",
            ),
            Scheme(
                "messente",
                lambda secret, o: MessenteVerifier(secret),
                EventFields(
                    ("message_id", "sms_unique_id"), ("status", "stat"), ("to", "from", "sender"), ("text",)
                ),
                credential_of="messente",
                signed_with="the API password or the inbound Shared Secret",
            ),
            Scheme(
                "hmac",
                lambda secret, o: HmacHeaderVerifier(
                    secret, o.header, o.algorithm or "sha256", o.encoding, o.prefix
                ),
                EventFields(),
                options=frozenset({"algorithm", "header", "encoding", "prefix", "message_id", "status"}),
                signed_with="the shared HMAC secret",
            ),
        )
    }
)

#: ``signature`` when a route does not name one: the scheme of ``upstream.provider``.
DEFAULT_SCHEME: Final = MappingProxyType(
    {
        "twilio": "twilio",
        "vonage": "vonage",
        "vonage-messages": "vonage-jwt",
        "plivo": "plivo",
        "sinch": "sinch",
        "messagebird": "messagebird",
        "messente": "messente",
    }
)


def event_fields(scheme: Scheme, options: WebhookOptions) -> EventFields:
    """A scheme's fields; the generic scheme's come from its options."""
    if scheme.name != "hmac":
        return scheme.fields
    return EventFields(
        message_id=(options.message_id,) if options.message_id else (),
        status=(options.status,) if options.status else (),
    )
