"""Provider adapters by the names used in ``upstream.provider``.

A vendor is one module that defines a ``PROVIDER`` entry, plus one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from gateway.messages.base import Message, MessageReader, Provider, ProviderAdapter, ProviderSettings
from gateway.vendors.aws_sns import send as aws_sns
from gateway.vendors.generic import send as generic
from gateway.vendors.generic.send import GenericAdapter, GenericOptions, validate_spec_path
from gateway.vendors.infobip import send as infobip
from gateway.vendors.messagebird import send as messagebird
from gateway.vendors.messente import send as messente
from gateway.vendors.plivo import send as plivo
from gateway.vendors.sinch import send as sinch
from gateway.vendors.smsapi import send as smsapi
from gateway.vendors.twilio import send as twilio
from gateway.vendors.twilio.send import TwilioAdapter
from gateway.vendors.vonage import send as vonage

__all__ = [
    "KNOWN_PROVIDERS",
    "REGISTRY",
    "GenericAdapter",
    "GenericOptions",
    "Message",
    "MessageReader",
    "Provider",
    "ProviderAdapter",
    "ProviderSettings",
    "TwilioAdapter",
    "build_adapter",
    "generic",
    "validate_spec_path",
]

#: Providers this version can read, by ``upstream.provider`` name.
REGISTRY: Final = MappingProxyType(
    {
        p.name: p
        for p in (
            twilio.PROVIDER,
            vonage.PROVIDER,
            vonage.MESSAGES_PROVIDER,
            messente.PROVIDER,
            plivo.PROVIDER,
            sinch.PROVIDER,
            infobip.PROVIDER,
            smsapi.PROVIDER,
            messagebird.PROVIDER,
            aws_sns.PROVIDER,
            generic.PROVIDER,
        )
    }
)

#: Provider names the docs list; those not in the registry are refused by check-config, not guessed at.
KNOWN_PROVIDERS: Final[frozenset[str]] = frozenset(
    {
        "twilio",
        "vonage",
        "vonage-messages",
        "messente",
        "plivo",
        "sinch",
        "infobip",
        "smsapi",
        "messagebird",
        "aws-sns",
        "generic",
    }
)


def build_adapter(provider: str, settings: ProviderSettings) -> ProviderAdapter:
    entry = REGISTRY.get(provider)
    if entry is None:
        raise ValueError(f"provider {provider!r} is not available in this version")
    return entry.build(settings)
