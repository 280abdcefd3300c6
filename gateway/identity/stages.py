"""The identity stages as the policy lists them: route and client allowlists, authentication,
scopes. Each factory takes the route and what it needs of the policy being built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from gateway.identity.auth import Authenticate, Authenticator, CheckScopes
from gateway.identity.ip import ClientAllowlist, IpAllowlist, RouteAllowlist

if TYPE_CHECKING:
    from gateway.config.schema import RouteConfig

__all__ = [
    "IdentityBuild",
    "authenticate",
    "client_allowlist",
    "route_allowlist",
    "scopes",
]


class IdentityBuild(Protocol):
    """The authenticators the policy built for the auth kinds its routes use, by kind."""

    @property
    def authenticators(self) -> Mapping[str, Authenticator]: ...


def route_allowlist(route: RouteConfig, b: object) -> RouteAllowlist | None:
    return RouteAllowlist(IpAllowlist(route.ip_allow)) if route.ip_allow else None


def authenticate(route: RouteConfig, b: IdentityBuild) -> Authenticate:
    return Authenticate([b.authenticators[kind] for kind in route.auth])


def client_allowlist(route: RouteConfig, b: object) -> ClientAllowlist:
    return ClientAllowlist()


def scopes(route: RouteConfig, b: object) -> CheckScopes | None:
    return CheckScopes(frozenset(route.scopes)) if route.scopes else None
