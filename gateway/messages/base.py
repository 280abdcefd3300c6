"""What a provider adapter does: read a vendor request the way that vendor reads it.

The gateway never rewrites the body on the wire (vendors sign bodies); adapters only extract the
parts that policies and logs need, say where the request goes upstream, and find the vendor's
message id in its answer. Each adapter registers a :class:`Provider` (its name, builder and the
model of its ``[upstream.<name>]`` table) in its vendor's ``VENDOR`` (``gateway/vendors/<name>/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from pydantic import BaseModel

from gateway.core.values import Message

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.core.routing import PathTemplate
    from gateway.messages.fields import FieldTable
    from gateway.messages.slots import CredentialSlot

__all__ = [
    "E164",
    "AccountPath",
    "Message",
    "MessageReader",
    "NumberRule",
    "Provider",
    "ProviderAdapter",
    "ProviderSettings",
    "UpstreamTarget",
    "client_query_credentials",
]


@dataclass(frozen=True, slots=True)
class NumberRule:
    """How a vendor reads a recipient number, so the gateway checks the number the vendor dials.

    ``bare_digits``: digits with the country code and no ``+`` (``447700900123``) are read as
    international, as Vonage, Plivo, Sinch, Infobip, SMSAPI and MessageBird do. ``min_bare_digits``:
    shorter bare numbers are refused, since the vendor may read them as national (SMSAPI reads nine
    digits as a Polish number). Anything else (spaces, ``00``, non-ASCII digits) is refused.
    """

    bare_digits: bool = False
    min_bare_digits: int = 0


#: Only ``+`` and ASCII digits: Twilio, Messente, AWS SNS, generic.
E164: Final = NumberRule()


class MessageReader(Protocol):
    """Reads one kind of request (Messages, Verify, ...); chosen per route when the config loads.

    A reader may also define ``parse_request(raw_query, body, content_type)`` when its vendor
    reads message fields from the query string (Messente's legacy ``send_sms``); the stage then
    calls that instead of refusing message fields in the query.
    """

    #: Case-folded names of the fields that carry recipients, senders, texts and codes: the same
    #: names in the query string are refused, and scrubbed from logged URLs.
    fields: frozenset[str]
    #: How the vendor reads recipient numbers.
    numbers: NumberRule
    #: Every field the reader lets through, with its role (``gateway/messages/fields.py``);
    #: anything else in the body or query is refused. None only for readers not yet converted.
    table: FieldTable | None

    def parse(self, body: bytes, content_type: str) -> Message:
        """Extract the message or raise ``GatewayError`` 400 ``bad_request`` (never echoing input)."""
        ...


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """Where a request goes, and what to rewrite in the vendor's answer (bytes -> bytes)."""

    path: str
    answer_rewrites: tuple[tuple[bytes, bytes], ...] = ()
    #: Query parameter names (username, password) that carry the vendor's credential on this path
    #: instead of the Authorization header (Messente's legacy API); None: the usual place.
    query_credentials: tuple[str, str] | None = None


class ProviderAdapter(Protocol):
    name: str
    #: Where the vendor's SDK puts its credential; a gateway-issued one is read from there.
    slots: tuple[CredentialSlot, ...]

    def reader(self, route: RouteConfig) -> MessageReader:
        """The reader for a route's requests (called once per route at load time)."""
        ...

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget: ...

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        """The vendor's id for an accepted message, read from its answer; None when absent."""
        ...


def client_query_credentials(adapter: ProviderAdapter) -> frozenset[str]:
    """Case-folded query names where the adapter's clients may put a credential."""
    names = {name for slot in getattr(adapter, "slots", ()) for name in slot.query_names}
    return frozenset(names | set(getattr(adapter, "secret_query_names", ())))


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """What builders get: the provider's own table, and the real account id for path swaps."""

    options: BaseModel | None
    account_id: str


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    build: Callable[[ProviderSettings], ProviderAdapter]
    #: The model of the ``[upstream.<name>]`` table, if the provider has one.
    options: type[BaseModel] | None = None
    options_required: bool = False
    #: Why ``upstream.credentials.type`` cannot work with this provider on these route paths, or None.
    credential_problem: Callable[[str, tuple[str, ...]], str | None] | None = None


class AccountPath:
    """Path parameters that hold the vendor account id (Twilio ``{account}``).

    Clients use gateway-issued virtual ids there; upstream the real id is put in, and the real id
    in the vendor's answer (``account_sid``, ``uri``) is turned back into the client's virtual id.
    """

    __slots__ = ("_account", "_params")

    def __init__(self, params: tuple[str, ...], account_id: str) -> None:
        self._params = params
        self._account = account_id

    def target(self, template: PathTemplate, params: Mapping[str, str]) -> UpstreamTarget:
        if not self._account or not any(p in params for p in self._params):
            return UpstreamTarget(template.render(params))
        swapped = dict(params)
        rewrites: list[tuple[bytes, bytes]] = []
        for name in self._params:
            virtual = params.get(name)
            if virtual is None:
                continue
            swapped[name] = self._account
            if virtual != self._account:
                rewrites.append((self._account.encode("ascii"), virtual.encode("ascii")))
        return UpstreamTarget(template.render(swapped), tuple(rewrites))
