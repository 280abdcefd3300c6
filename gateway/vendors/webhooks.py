"""The callback framework bound to this version's vendors: what the policy and check-config call.

``gateway/callbacks/`` takes the schemes as an argument and names no vendor; this module hands it
:data:`gateway.vendors.SCHEMES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.callbacks import build
from gateway.callbacks import config as checks
from gateway.callbacks.base import Verifier
from gateway.callbacks.build import pending_ttl, target
from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme
from gateway.vendors import SCHEMES

if TYPE_CHECKING:
    from gateway.config.loader import Config
    from gateway.config.schema import RouteConfig

__all__ = [
    "check_routes",
    "fields",
    "pending_ttl",
    "query_field_names",
    "scheme",
    "secrets",
    "target",
    "verifier",
]


def scheme(route: RouteConfig, config: Config) -> Scheme:
    return build.scheme(SCHEMES, route, config)


def verifier(route: RouteConfig, config: Config) -> Verifier:
    return build.verifier(SCHEMES, route, config)


def fields(route: RouteConfig, config: Config) -> EventFields:
    return build.fields(SCHEMES, route, config)


def check_routes(config: Config, file: str) -> list[tuple[str, str, str]]:
    return checks.check_routes(SCHEMES, config, file)


def query_field_names(config: Config) -> frozenset[str]:
    return checks.query_field_names(SCHEMES, config)


def secrets(config: Config) -> frozenset[str]:
    return checks.secrets(SCHEMES, config)
