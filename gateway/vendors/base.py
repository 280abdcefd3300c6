"""Everything about one vendor in one object, so adding a vendor is one package and one line.

Each vendor package's ``__init__.py`` defines ``VENDOR = Vendor(...)``; ``gateway/vendors/__init__.py``
lists them and derives every registry from the list: providers by ``upstream.provider`` name,
callback schemes by ``signature`` name with their defaults, and the routes ``smsgw sandbox`` serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aiohttp import web

from gateway.callbacks.scheme import Scheme
from gateway.messages.base import Provider

__all__ = ["SandboxRoute", "Vendor"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class SandboxRoute:
    """A path the sandbox serves, answering in the vendor's own shape."""

    method: str
    path: str
    handler: Handler
    #: When vendors share a path (Vonage Messages and the generic API both use ``/v1/messages``):
    #: this route answers the requests it accepts; the one without ``accepts`` takes the rest.
    accepts: Callable[[web.Request], bool] | None = None


@dataclass(frozen=True, slots=True)
class Vendor:
    """One vendor: what the gateway reads of its sends and callbacks, and how the docs name it."""

    #: As the docs write it: docs/vendors.md has a section whose heading starts with it.
    title: str
    #: Its ``upstream.provider`` entries (send readers, credential slots, ``[upstream.<name>]``).
    providers: tuple[Provider, ...]
    #: Its callback signature schemes, by the names a route's ``signature`` uses.
    schemes: tuple[Scheme, ...] = ()
    #: ``upstream.provider`` -> the scheme a webhook route gets when it names no ``signature``.
    default_schemes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Headers its callbacks carry a signature in (lower case): never forwarded, never logged.
    #: ``gateway/core/headers.py`` must recognise each one (a test holds it to that).
    signature_headers: frozenset[str] = frozenset()
    #: What ``smsgw sandbox`` and ``make demo`` serve in its place.
    sandbox: tuple[SandboxRoute, ...] = ()

    def __post_init__(self) -> None:
        names = {p.name for p in self.providers}
        schemes = {s.name for s in self.schemes}
        for provider, scheme in self.default_schemes.items():
            if provider not in names or scheme not in schemes:
                raise ValueError(f"{self.title}: default scheme {provider!r} -> {scheme!r} is not its own")
        for header in self.signature_headers:
            if header != header.lower():
                raise ValueError(f"{self.title}: signature header {header!r} must be lower case")
