"""Value types the config sections share: listen addresses, networks, rates, durations, countries, keys."""

from __future__ import annotations

import re
from typing import Annotated

import netaddr
import phonenumbers
from limits import parse_many
from pydantic import AfterValidator, Field, SecretStr

_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")


def parse_listen(value: str) -> tuple[str, int]:
    match = _LISTEN.match(value)
    if not match or int(match["port"]) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:8443 or [::]:8443)")
    return match["v6"] or match["host"], int(match["port"])


def _listen(value: str) -> str:
    parse_listen(value)
    return value


def _optional_listen(value: str) -> str:
    return _listen(value) if value else value


_MAPPED = netaddr.IPNetwork("::ffff:0:0/96")


def _network(value: str) -> netaddr.IPNetwork:
    """A CIDR in normal form; IPv4-mapped IPv6 entries become IPv4.

    Client addresses are compared as IPv4 when they arrive IPv4-mapped (identity/ip.py), so an
    entry written as ``::ffff:10.0.0.0/104`` would otherwise match nothing. A prefix shorter
    than /96 also holds addresses that are not mapped and stays IPv6.
    """
    try:
        network = netaddr.IPNetwork(value).cidr
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address or CIDR") from None
    if network.version == 6 and network.prefixlen >= 96 and network in _MAPPED:
        network = netaddr.IPNetwork(f"{network.ip.ipv4()}/{network.prefixlen - 96}")
    return network


def _cidr(value: str) -> str:
    return str(_network(value))


def _trusted_proxy(value: str) -> str:
    network = _network(value)
    if network.prefixlen == 0:
        raise ValueError(
            f"{value!r} is every IPv{network.version} address: it would let any client forge X-Forwarded-For"
        )
    return str(network)


def _rate(item: str) -> str:
    try:
        parsed = parse_many(item)
    except ValueError:
        raise ValueError(f"{item!r} is not a rate like '600/minute' or '5/hour'") from None
    if any(rate.amount < 1 for rate in parsed):
        raise ValueError(f"{item!r} allows nothing; a rate needs at least 1 per period")
    return item


_DURATION = re.compile(r"^\s*(\d+)\s+(second|minute|hour|day)s?\s*$")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_duration(value: str) -> int:
    """Seconds in a config duration such as ``"15 minutes"``."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like '30 seconds' or '15 minutes'")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code")
    return value.upper()


#: Calling codes that belong to no country (phonenumbers' region "001"): satellite phones
#: (+870 Inmarsat, +881 Iridium/Globalstar), international networks (+882, +883), UIFN freephone
#: and shared-cost (+800, +808), UPT (+878), +888 and premium rate (+979). Costly and rarely a
#: real customer, so a classic toll-fraud target: a client reaches them only by naming the code
#: in ``countries`` ("+881"); ``"*"`` never includes them (gateway/recipients/phone.py).
NON_GEOGRAPHIC_CODES = frozenset(f"+{code}" for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)


def _destination(value: str) -> str:
    if value == "*" or value in NON_GEOGRAPHIC_CODES:
        return value
    if value.startswith("+"):
        codes = ", ".join(sorted(NON_GEOGRAPHIC_CODES))
        raise ValueError(
            f"{value!r} is not a non-geographic calling code ({codes}); name a country by its "
            "ISO 3166 alpha-2 code"
        )
    return _country(value)


Listen = Annotated[str, AfterValidator(_listen)]
OptionalListen = Annotated[str, AfterValidator(_optional_listen)]
Cidr = Annotated[str, AfterValidator(_cidr)]
TrustedProxy = Annotated[str, AfterValidator(_trusted_proxy)]
Rates = tuple[Annotated[str, AfterValidator(_rate)], ...]
Duration = Annotated[str, AfterValidator(_duration)]
Country = Annotated[str, AfterValidator(_country)]
CountryOrAny = Annotated[str, AfterValidator(lambda v: v if v == "*" else _country(v))]
DestinationCode = Annotated[str, AfterValidator(_destination)]
Timeout = Annotated[float, Field(gt=0, le=600)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return netaddr.IPAddress(host).is_loopback()
    except (netaddr.AddrFormatError, ValueError):
        return False


MIN_KEY_BYTES = 32
MIN_KEY_DISTINCT = 8


def key_weakness(text: str) -> str | None:
    """Why a key cannot be random bytes, or ``None``; says nothing about the key itself."""
    if len(text.encode("utf-8")) < MIN_KEY_BYTES:
        return f"must be at least {MIN_KEY_BYTES} bytes"
    distinct = len(set(text))
    if distinct == 1:
        return "is one character repeated, not a random key"
    if distinct < MIN_KEY_DISTINCT:
        return f"has fewer than {MIN_KEY_DISTINCT} different characters, not a random key"
    return None


def strong_secret(value: SecretStr | None) -> SecretStr | None:
    """An HMAC secret must be random bytes: a guessable one lets anyone sign as its holder."""
    weakness = key_weakness(value.get_secret_value()) if value is not None else None
    if weakness:
        raise ValueError(f"secret {weakness} (make one with `smsgw keygen hmac`)")
    return value


def _positive_duration(value: str) -> str:
    if parse_duration(value) == 0:
        raise ValueError("must be longer than 0 seconds")
    return value


PositiveDuration = Annotated[str, AfterValidator(_positive_duration)]
