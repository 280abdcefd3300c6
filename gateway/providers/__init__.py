"""Provider adapters by the names used in ``upstream.provider``."""

from __future__ import annotations

from typing import Final

from gateway.providers.base import Message, ProviderAdapter
from gateway.providers.generic import GenericAdapter, GenericSpec, validate_spec_path
from gateway.providers.twilio import TwilioAdapter

__all__ = [
    "AVAILABLE_PROVIDERS",
    "KNOWN_PROVIDERS",
    "GenericAdapter",
    "GenericSpec",
    "Message",
    "ProviderAdapter",
    "TwilioAdapter",
    "build_adapter",
    "validate_spec_path",
]

KNOWN_PROVIDERS: Final[frozenset[str]] = frozenset(
    {"twilio", "vonage", "vonage-messages", "messente", "plivo", "sinch", "infobip", "smsapi", "generic"}
)
AVAILABLE_PROVIDERS: Final[frozenset[str]] = frozenset({"twilio", "generic"})


def build_adapter(provider: str, generic: GenericSpec | None = None) -> ProviderAdapter:
    """The adapter for ``upstream.provider``; documented-but-unbuilt vendors fail loudly, not as generic."""
    if provider == "twilio":
        return TwilioAdapter()
    if provider == "generic":
        if generic is None:
            raise ValueError("provider 'generic' needs a generic adapter spec")
        return GenericAdapter(generic)
    if provider in KNOWN_PROVIDERS:
        raise NotImplementedError(f"provider {provider!r} is not available in this version")
    raise ValueError(f"unknown provider {provider!r} (known: {', '.join(sorted(KNOWN_PROVIDERS))})")
