"""What a callback signature scheme is, and the registry the framework is handed.

Each vendor package declares its schemes; ``gateway/vendors/__init__.py`` gathers them into one
:class:`Schemes` and hands it to the checks and builders here, so this package names no vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.callbacks.base import Verifier
from gateway.callbacks.events import EventFields
from gateway.config.webhook_options import WebhookOptions

__all__ = ["Scheme", "Schemes", "algorithm_check"]

#: ``(key under [route.webhook], message)`` for each option a scheme cannot use.
OptionProblems = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Scheme:
    """One signature scheme, by the name a route's ``signature`` uses."""

    name: str
    build: Callable[[bytes, WebhookOptions], Verifier]
    fields: EventFields
    #: The vendor signs the URL it calls: ``server.public_url`` is needed to rebuild it.
    signs_url: bool = False
    #: ``upstream.provider`` whose credential password signs the callbacks (the default secret).
    credential_of: str = ""
    #: Credential usernames with this prefix are API keys: their password does not sign callbacks.
    api_key_prefix: str = ""
    #: ``[route.webhook]`` keys this scheme reads (``timeout_s`` and ``ca_file`` apply to all).
    options: frozenset[str] = frozenset()
    #: What to call the secret in check-config's messages.
    signed_with: str = "the vendor's signing secret"
    #: check-config for the options' values (an algorithm it knows, a header it needs).
    check: Callable[[WebhookOptions], OptionProblems] | None = None
    #: The fields come from the route's options rather than from the vendor (generic HMAC).
    fields_from: Callable[[WebhookOptions], EventFields] | None = None

    def event_fields(self, options: WebhookOptions) -> EventFields:
        return self.fields_from(options) if self.fields_from is not None else self.fields


def algorithm_check(allowed: Iterable[str]) -> Callable[[WebhookOptions], OptionProblems]:
    """A :attr:`Scheme.check` refusing an ``algorithm`` the verifier does not implement."""
    names = tuple(allowed)

    def check(options: WebhookOptions) -> OptionProblems:
        if options.algorithm and options.algorithm not in names:
            return [("algorithm", f"{options.algorithm!r} is not one of {', '.join(names)}")]
        return []

    return check


@dataclass(frozen=True, slots=True)
class Schemes:
    """Every scheme by name, and the one a route gets when it names none (by ``upstream.provider``)."""

    by_name: Mapping[str, Scheme] = field(default_factory=lambda: MappingProxyType({}))
    defaults: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, name: str) -> Scheme | None:
        return self.by_name.get(name)

    def __getitem__(self, name: str) -> Scheme:
        return self.by_name[name]

    def names(self) -> str:
        return ", ".join(self.by_name)

    def default_for(self, provider: str) -> str:
        return self.defaults.get(provider, "")

    def reading(self, key: str) -> str:
        """The schemes that read a ``[route.webhook]`` key, for check-config's messages."""
        return ", ".join(repr(s.name) for s in self.by_name.values() if key in s.options)
