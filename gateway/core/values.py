"""The values a request's stages hand one another on the exchange.

Each is filled in by one feature and read by others, and by the exchange's audit fields: the
caller (identity), the destinations (recipients), the message (messages), a vendor callback and
what its signature covers (callbacks), and the client a credential names. They live here, below
every feature, so a stage can read what an earlier one found without importing that feature.
Their owners still export them under their old names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from gateway.core.addresses import IpAllowlist

__all__ = [
    "BODY",
    "NOWHERE",
    "NO_COUNTRY",
    "QUERY",
    "Client",
    "Control",
    "Destination",
    "DestinationRules",
    "Event",
    "Message",
    "Principal",
    "Verified",
]

#: Where a verified callback's own fields (message id, status, numbers, text) are, under the
#: signature: the body (form or JSON), the query (GET callbacks), or nowhere the signature
#: covers (Plivo V2 signs only the URL without its query, and a nonce).
BODY: Final = "body"
QUERY: Final = "query"
NOWHERE: Final = "none"

#: The country code counted and audited for a number with no country (phonenumbers' own "ZZ").
NO_COUNTRY: Final = "ZZ"

#: Ids and statuses go to the audit log as they are only when they look like ids.
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)
_STATUS: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:-]{0,63}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller. ``scopes`` is what the credential itself grants (a token's ``scope``
    claim); None means the credential does not narrow the client's scopes."""

    client_id: str
    method: str
    scopes: frozenset[str] | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    raw: str
    e164: str
    region: str | None
    #: phonenumbers' type name (``mobile``, ``premium_rate``, ...).
    type: str = "unknown"
    #: A non-geographic number's calling code (``"+881"``); ``None`` for a number in a country.
    network: str | None = None


@dataclass(frozen=True, slots=True)
class Control:
    """A policed field present in a request, for the route's :class:`FieldPolicy`."""

    name: str  # as declared
    kind: str  # "control" | "callback_url" | CHANNEL
    value: str
    #: False when written otherwise than declared (``sendat``, ``SendAt[]``): refused either way.
    exact: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    """Every part of a send request that the vendor will act on; raw, as the client sent them.

    A request may hold several messages (Infobip, Messente Omnimessage, a generic ``*`` pointer):
    every recipient, sender and text is here, so every one is checked and logged.
    """

    recipients: tuple[str, ...]
    senders: tuple[str, ...] = ()
    bodies: tuple[str, ...] = ()
    #: True when some message names no sender (the vendor then uses the account's default).
    default_sender: bool = False
    #: Texts that carry codes or personal data besides the body (Twilio ``CustomCode``, ``Code``,
    #: ``ContentVariables``, ``MediaUrl``; Sinch ``parameters``; SMSAPI ``param1``...): logged
    #: through the redactor exactly like bodies, never in clear.
    secrets: tuple[str, ...] = ()
    #: Ids of the verifications a check names instead of a number (Twilio ``VerificationSid``):
    #: OTP check caps count per id (an HMAC of it), as they count per number.
    verification_ids: tuple[str, ...] = ()
    #: Policed fields present (control, callback URL, channel): the route's ``FieldPolicy`` decides.
    controls: tuple[Control, ...] = ()
    #: True when the request names stored content (a template or content id) whose text the gateway
    #: cannot see: on a route with ``[route.otp]`` it counts as an OTP send.
    templated: bool = False

    @property
    def sender(self) -> str | None:
        return self.senders[0] if self.senders else None

    @property
    def body(self) -> str | None:
        return self.bodies[0] if self.bodies else None


@dataclass(frozen=True, slots=True)
class Verified:
    """A verified callback and what its signature covers.

    ``fields_in`` is where the vendor's own fields are and that they are signed there (BODY,
    QUERY or NOWHERE); ``query_signed`` says the URL's query is under the signature. A client
    chooses the callback URL when it sends (vendors let it set one per message), so even a signed
    query is the client's word, not the vendor's, unless the vendor put its fields there.
    ``replay_nonce`` is set by schemes whose signature does not cover the body (Plivo V2): the
    gateway binds the nonce to the body so it cannot be reused with another."""

    fields_in: str
    query_signed: bool
    replay_nonce: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    message_id: str | None = None  # raw, for duplicate detection
    status: str | None = None
    numbers: tuple[str, ...] = ()
    text: str | None = None
    #: Where these fields were read, under the signature: ``body``, ``query``, or ``none`` (the
    #: signature covers none of them: Plivo V2). The audit record's ``verified_fields``.
    verified_fields: str = NOWHERE
    #: The query the internal service gets: only what the signature covers, and never a name the
    #: vendor's own fields use (a client-chosen callback URL cannot speak for the vendor).
    forward_query: str = ""

    @property
    def verified(self) -> bool:
        return self.verified_fields != NOWHERE

    @property
    def log_message_id(self) -> str | None:
        return self.message_id if self.message_id and _ID.fullmatch(self.message_id) else None

    @property
    def log_status(self) -> str | None:
        return self.status if self.status and _STATUS.fullmatch(self.status) else None


class DestinationRules(Protocol):
    """A client's countries and senders (gateway.recipients.phone.DestinationPolicy)."""

    def check(
        self, destinations: Sequence[Destination], senders: Sequence[str], default_sender: bool = False
    ) -> None:
        """Refuse (``GatewayError``) a destination or sender the client may not use."""
        ...


@dataclass(frozen=True, slots=True)
class Client:
    """A configured client, compiled once per policy: what its credentials are checked against."""

    id: str
    scopes: frozenset[str]
    ip_allow: IpAllowlist
    destinations: DestinationRules
