"""Recipients and senders: strict E.164 parsing and the per-client destination policy.

Numbers are accepted only in international E.164 form so that rate limits, OTP caps and log
hashes key on one canonical string per phone; anything looser would let one phone appear under
many spellings.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from hashlib import blake2b
from typing import TYPE_CHECKING, Protocol

import phonenumbers
from phonenumbers import PhoneMetadata, phonenumberutil

from gateway.config.schema import NON_GEOGRAPHIC_CODES
from gateway.core.errors import GatewayError, Reason, invalid_recipient, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.core.pipeline import BuildContext, SyncStage
from gateway.core.redaction import Redactor
from gateway.core.values import NO_COUNTRY, Destination
from gateway.messages.base import E164, NumberRule

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig
    from gateway.messages.base import ProviderAdapter

__all__ = [
    "ANY_COUNTRY",
    "NON_GEOGRAPHIC_CODES",
    "NUMBER_TYPES",
    "CheckRecipients",
    "Destination",
    "DestinationPolicy",
    "RecipientsBuild",
    "check_recipients",
    "parse_recipient",
]

_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
_BARE = re.compile(r"[1-9][0-9]{6,14}", re.ASCII)

#: ``route.number_types`` names -> phonenumbers' number types.
NUMBER_TYPES: dict[str, int] = {
    "fixed_line": phonenumbers.PhoneNumberType.FIXED_LINE,
    "mobile": phonenumbers.PhoneNumberType.MOBILE,
    "fixed_line_or_mobile": phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    "toll_free": phonenumbers.PhoneNumberType.TOLL_FREE,
    "premium_rate": phonenumbers.PhoneNumberType.PREMIUM_RATE,
    "shared_cost": phonenumbers.PhoneNumberType.SHARED_COST,
    "voip": phonenumbers.PhoneNumberType.VOIP,
    "personal_number": phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
    "pager": phonenumbers.PhoneNumberType.PAGER,
    "uan": phonenumbers.PhoneNumberType.UAN,
    "voicemail": phonenumbers.PhoneNumberType.VOICEMAIL,
    "unknown": phonenumbers.PhoneNumberType.UNKNOWN,
}
_TYPE_NAMES = {value: name for name, value in NUMBER_TYPES.items()}
_REGION = re.compile(r"[A-Z]{2}", re.ASCII)
_COUNTRY_CODE = re.compile(r"[A-Za-z]{2}", re.ASCII)

#: ``countries = ["*"]``: every geographic country, said in as many words.
ANY_COUNTRY = "*"
_CHANNEL_PREFIXES = ("sms:", "whatsapp:", "tel:")
_MAX_RAW = 64  # far above any real address; bounds the work done on hostile input


def _strip_channel(text: str) -> str:
    lower = text[:10].lower()
    for prefix in _CHANNEL_PREFIXES:
        if lower.startswith(prefix):
            return text[len(prefix) :].strip()
    return text


def parse_recipient(raw: str, rule: NumberRule = E164, scope: str = "") -> Destination:
    """Refuses anything phonenumbers would have to guess about (national formats, separators).

    ``rule`` says how the vendor reads numbers: with ``bare_digits`` it dials ``447700900123`` as
    ``+447700900123``, so that is the number checked. Non-ASCII digits (full-width forms such as U+FF14,
    Arabic-Indic) are refused for every vendor: none documents reading them, and phonenumbers
    would silently fold them to ASCII.

    ``scope`` (the client's id) keys the parse cache apart per client: a cached number answers
    faster, and one client must not learn by timing which numbers another sent to.
    """
    if not isinstance(raw, str) or len(raw) > _MAX_RAW:
        raise invalid_recipient()
    text = _strip_channel(raw.strip())
    if rule.bare_digits and _BARE.fullmatch(text) and len(text) >= rule.min_bare_digits:
        text = "+" + text
    if not _E164.fullmatch(text):
        raise invalid_recipient()
    digest = _CACHE_HASH.copy()
    digest.update(f"{scope}\x00{text}".encode())
    key = digest.digest()
    kind = _KNOWN.get(key, _MISS)
    if kind is _MISS:
        e164, kind = _parse_e164(text)
        if e164 == text:  # the number itself is not kept: it is the request's own text
            _remember(key, kind)
    else:
        _KNOWN.move_to_end(key)
        e164 = text
    if kind is None:
        raise invalid_recipient()
    region, number_type, network = kind
    return Destination(raw=raw, e164=e164, region=region, type=number_type, network=network)


#: What parsing a number found, by a keyed hash of its E.164 text: phonenumbers.parse is about
#: 50 µs a number, a hit about 1 µs. The hash's key lives in this process only and the values
#: are (region, type, network) or None (invalid), shared between numbers, so the cache holds no
#: phone number: a number whose canonical form differs from its text (a national prefix phonenumbers
#: strips) is parsed every time. Least recently used entries go first.
_CACHE_SIZE = 16_384
_CACHE_KEY = secrets.token_bytes(32)
#: Keyed once; each lookup hashes with a copy.
_CACHE_HASH = blake2b(key=_CACHE_KEY, digest_size=16)
_KNOWN: OrderedDict[bytes, tuple[str | None, str, str | None] | None] = OrderedDict()
_KINDS: dict[tuple[str | None, str, str | None], tuple[str | None, str, str | None]] = {}
_MISS = object()


def _remember(key: bytes, kind: tuple[str | None, str, str | None] | None) -> None:
    if kind is not None:
        kind = _KINDS.setdefault(kind, kind)
    _KNOWN[key] = kind
    if len(_KNOWN) > _CACHE_SIZE:
        _KNOWN.popitem(last=False)


def _parse_e164(text: str) -> tuple[str, tuple[str | None, str, str | None] | None]:
    """(E.164 form, (region, type name, network)); the kind is None for an invalid number."""
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return text, None
    region, number_type = classify(number)
    if number_type == _UNKNOWN:  # what phonenumbers.is_valid_number answers False for
        return text, None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # Non-geographic numbers ("001") and unknown ones ("ZZ") have no country to allow or deny;
    # the former are allowed by their calling code instead.
    network = None
    if region == phonenumberutil.REGION_CODE_FOR_NON_GEO_ENTITY:
        network = f"+{number.country_code}"
    if region is None or region == NO_COUNTRY or not _REGION.fullmatch(region):
        region = None
    return e164, (region, _TYPE_NAMES.get(number_type, "unknown"), network)


_UNKNOWN = phonenumbers.PhoneNumberType.UNKNOWN
_type_for = getattr(phonenumberutil, "_number_type_helper", None)


def classify(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """(region, number type) in one pass; the type is UNKNOWN for an invalid number.

    ``is_valid_number``, ``region_code_for_number`` and ``number_type`` each find the region
    again, and for a calling code shared by several regions (+1, +7, +44) that tries every
    region's patterns: this finds it once, then takes the type as ``is_valid_number_for_region``
    does. Without phonenumbers' helper (a later release), the three public calls.
    """
    region = phonenumbers.region_code_for_number(number)
    if _type_for is None:
        if not phonenumbers.is_valid_number(number):
            return region, _UNKNOWN
        return region, phonenumbers.number_type(number)
    if region is None:
        return None, _UNKNOWN
    code = number.country_code
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region.upper())
    if metadata is None or (
        region != phonenumberutil.REGION_CODE_FOR_NON_GEO_ENTITY
        and code != phonenumbers.country_code_for_valid_region(region)
    ):
        return region, _UNKNOWN
    return region, _type_for(phonenumbers.national_significant_number(number), metadata)


class DestinationPolicy:
    """A client's allowed destinations and sender IDs.

    Destinations are closed by default: no ``countries`` allows no recipient at all. ``"*"``
    allows every country; non-geographic numbers (satellite, international networks) pass only
    where their calling code is named (``"+881"``), never through ``"*"``. Senders: empty means any.
    """

    __slots__ = ("any_country", "countries", "networks", "senders")

    def __init__(self, countries: Iterable[str] = (), senders: Iterable[str] = ()) -> None:
        normalised: set[str] = set()
        networks: set[str] = set()
        any_country = False
        for code in countries:
            if code == ANY_COUNTRY:
                any_country = True
            elif isinstance(code, str) and code in NON_GEOGRAPHIC_CODES:
                networks.add(code)
            elif not isinstance(code, str) or not _COUNTRY_CODE.fullmatch(code):
                raise ValueError(
                    f"country {code!r} is not an ISO 3166 alpha-2 code (two letters A-Z), '*', "
                    f"or a non-geographic calling code ({', '.join(sorted(NON_GEOGRAPHIC_CODES))})"
                )
            else:
                normalised.add(code.upper())
        self.any_country = any_country
        self.countries: frozenset[str] = frozenset(normalised)
        self.networks: frozenset[str] = frozenset(networks)
        self.senders: frozenset[str] = frozenset(senders)

    def allows(self, dest: Destination) -> bool:
        if dest.region is None:
            return dest.network is not None and dest.network in self.networks
        return self.any_country or dest.region in self.countries

    def check(
        self, destinations: Sequence[Destination], senders: Sequence[str], default_sender: bool = False
    ) -> None:
        """Countries first, then senders, matching the order of the request path (docs/request-path.md).

        With an allowlist of senders, a message that names none (the vendor's default) is refused too.
        """
        for position, dest in enumerate(destinations, start=1):
            if not self.allows(dest):
                if dest.network is not None:
                    raise refuse(
                        Reason.DESTINATION_NOT_ALLOWED,
                        f"recipient {position} is a non-geographic number (satellite or international "
                        f"network, {dest.network}); allowed only where the client's countries name "
                        f"{dest.network}",
                        detail=Detail.NON_GEOGRAPHIC.of(dest.network),
                    )
                raise refuse(
                    Reason.DESTINATION_NOT_ALLOWED,
                    f"the destination country of recipient {position} is not allowed for this client",
                    detail=Detail.COUNTRY.of(
                        dest.region or NO_COUNTRY
                    ),  # the region phonenumbers placed it in
                )
        if self.senders and (default_sender or not senders or any(s not in self.senders for s in senders)):
            raise refuse(Reason.SENDER_NOT_ALLOWED, "sender ID is not allowed for this client")


class CheckRecipients(SyncStage):
    """Recipients are valid E.164 numbers (422), read as the vendor reads them (``rule``); the
    route's number types (premium-rate, ...) and the client's countries and senders allow them (403)."""

    name = "recipients"
    __slots__ = ("_number_types", "_redactor", "_rule")

    def __init__(self, redactor: Redactor, rule: NumberRule = E164, number_types: Iterable[str] = ()) -> None:
        self._redactor = redactor
        self._rule = rule
        self._number_types = frozenset(number_types)

    def run_sync(self, ex: Exchange) -> None:
        message, client = ex.message, ex.client
        assert message is not None and client is not None
        destinations: list[Destination] = []
        for position, raw in enumerate(message.recipients, start=1):
            try:
                destinations.append(parse_recipient(raw, self._rule, client.id))
            except GatewayError:
                ex.log_recipients = self._redactor.recipients([(r, None) for r in message.recipients])
                raise invalid_recipient(
                    f"recipient {position} is not a valid E.164 phone number"
                    if len(message.recipients) > 1
                    else "the recipient is not a valid E.164 phone number"
                ) from None
        ex.destinations = tuple(destinations)
        ex.log_recipients = self._redactor.recipients([(d.raw, d.e164) for d in destinations])
        if self._number_types:
            for position, dest in enumerate(destinations, start=1):
                if dest.type not in self._number_types:
                    raise refuse(
                        Reason.DESTINATION_NOT_ALLOWED,
                        f"the number type of recipient {position} is not allowed on this route",
                        detail=Detail.NUMBER_TYPE.of(dest.type),
                    )
        client.destinations.check(ex.destinations, message.senders, message.default_sender)


class RecipientsBuild(BuildContext, Protocol):
    """The vendor adapter (how its numbers are written), and core's redactor, at policy build."""

    @property
    def adapter(self) -> ProviderAdapter: ...


def check_recipients(route: RouteConfig, b: RecipientsBuild) -> CheckRecipients:
    return CheckRecipients(b.redactor, b.adapter.reader(route).numbers, route.number_types)
