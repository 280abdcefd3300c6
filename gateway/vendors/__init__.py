"""The vendors this version speaks to, one line each; every registry is derived from the list.

A vendor is one package whose ``__init__.py`` defines ``VENDOR`` (``gateway/vendors/base.py``), plus
its line in :data:`VENDORS`. See docs/vendors.md for a worked example.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, TypeVar

from gateway.callbacks.scheme import Scheme, Schemes
from gateway.messages.base import Provider, ProviderAdapter, ProviderSettings
from gateway.vendors import (
    aws_sns,
    generic,
    infobip,
    messagebird,
    messente,
    plivo,
    sinch,
    smsapi,
    twilio,
    vonage,
)
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.generic.send import GenericAdapter, GenericOptions, validate_spec_path
from gateway.vendors.twilio.send import TwilioAdapter

__all__ = [
    "REGISTRY",
    "SANDBOX",
    "SCHEMES",
    "SIGNATURE_HEADERS",
    "VENDORS",
    "GenericAdapter",
    "GenericOptions",
    "Provider",
    "ProviderAdapter",
    "ProviderSettings",
    "TwilioAdapter",
    "Vendor",
    "build_adapter",
    "providers_of",
    "schemes_of",
    "validate_spec_path",
]

#: One line per vendor. The order is the order check-config lists signature schemes in.
VENDORS: Final[tuple[Vendor, ...]] = (
    twilio.VENDOR,
    vonage.VENDOR,
    plivo.VENDOR,
    sinch.VENDOR,
    messagebird.VENDOR,
    messente.VENDOR,
    infobip.VENDOR,
    smsapi.VENDOR,
    aws_sns.VENDOR,
    generic.VENDOR,
)


_T = TypeVar("_T")


def _unique(kind: str, named: list[tuple[str, _T]]) -> MappingProxyType[str, _T]:
    """By name, refusing a name two vendors claim (the second would silently win)."""
    found: dict[str, _T] = {}
    for name, item in named:
        if name in found:
            raise ValueError(f"two vendors define the {kind} {name!r}")
        found[name] = item
    return MappingProxyType(found)


def providers_of(vendors: tuple[Vendor, ...]) -> MappingProxyType[str, Provider]:
    return _unique("provider", [(p.name, p) for v in vendors for p in v.providers])


def schemes_of(vendors: tuple[Vendor, ...]) -> Schemes:
    by_name: MappingProxyType[str, Scheme] = _unique(
        "signature", [(s.name, s) for v in vendors for s in v.schemes]
    )
    defaults = _unique("default scheme of", [item for v in vendors for item in v.default_schemes.items()])
    return Schemes(by_name, defaults)


#: Providers this version can read, by ``upstream.provider`` name.
REGISTRY: Final = providers_of(VENDORS)
#: Callback signature schemes by ``signature`` name, with each provider's default; handed to the
#: callback framework by the policy and check-config (``gateway/server/``), since it names no vendor.
SCHEMES: Final = schemes_of(VENDORS)
#: Every header a vendor signs its callbacks in (lower case).
SIGNATURE_HEADERS: Final = frozenset(h for v in VENDORS for h in v.signature_headers)
#: What ``smsgw sandbox`` serves, vendor by vendor.
SANDBOX: Final[tuple[SandboxRoute, ...]] = tuple(r for v in VENDORS for r in v.sandbox)


def build_adapter(provider: str, settings: ProviderSettings) -> ProviderAdapter:
    entry = REGISTRY.get(provider)
    if entry is None:
        raise ValueError(f"provider {provider!r} is not available in this version")
    return entry.build(settings)
