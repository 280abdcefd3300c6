"""A webhook route's parts, compiled once per policy from its config (check-config has already
refused anything these would trip on). The schemes are handed in: this framework names no vendor."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from gateway.callbacks.base import Verifier
from gateway.callbacks.config import route_options as options
from gateway.callbacks.config import scheme_of, signing_secret
from gateway.callbacks.events import EventFields
from gateway.callbacks.forward import ForwardTarget
from gateway.callbacks.scheme import Scheme, Schemes

if TYPE_CHECKING:
    from gateway.config.loader import Config
    from gateway.config.schema import RouteConfig

__all__ = ["fields", "options", "pending_ttl", "scheme", "target", "verifier"]


def scheme(schemes: Schemes, route: RouteConfig, config: Config) -> Scheme:
    return schemes[scheme_of(schemes, route, config.settings.upstream.provider)]


def verifier(schemes: Schemes, route: RouteConfig, config: Config) -> Verifier:
    chosen = scheme(schemes, route, config)
    secret = signing_secret(route, chosen, config.settings)
    if not secret:
        raise ValueError(f"route {route.name!r} has no signing secret")
    return chosen.build(secret.encode("utf-8"), options(route))


def fields(schemes: Schemes, route: RouteConfig, config: Config) -> EventFields:
    return scheme(schemes, route, config).event_fields(options(route))


def pending_ttl(route: RouteConfig) -> float:
    """How long a callback being forwarded blocks its copies: past the forward's own timeout."""
    return options(route).timeout_s * 2 + 10


def target(route: RouteConfig, config: Config) -> ForwardTarget:
    opts = options(route)
    context = None
    if route.forward_to.startswith("https://"):
        cafile = str(config.resolve_path(opts.ca_file)) if opts.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return ForwardTarget(route.forward_to, opts.timeout_s, context)
