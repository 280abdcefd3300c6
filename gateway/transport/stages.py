"""The transport stages as the policy lists them: reading the body, the NUL and hop-by-hop
checks, and forwarding. Each factory takes the route and what it needs of the policy being built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from gateway.core.routing import PathTemplate
from gateway.transport.body import ReadBody, RefuseNul
from gateway.transport.proxy import AnswerScrubber, CheckHopHeaders, Forward, Upstream

if TYPE_CHECKING:
    from gateway.audit.log import AuditLog
    from gateway.config import Config
    from gateway.config.schema import RouteConfig
    from gateway.identity.auth import Authenticator
    from gateway.messages.base import ProviderAdapter
    from gateway.transport.credentials import VendorCredentials

__all__ = [
    "BodyBuild",
    "ForwardBuild",
    "forward",
    "hop_headers",
    "needs_body_first",
    "read_body",
    "read_body_after_auth",
    "read_body_before_auth",
    "refuse_nul",
]


class BodyBuild(Protocol):
    """The config (the body timeout) and the authenticators by kind (do they need the body first?)."""

    @property
    def config(self) -> Config: ...

    @property
    def authenticators(self) -> Mapping[str, Authenticator]: ...


class ForwardServices(Protocol):
    @property
    def upstream(self) -> Upstream: ...

    @property
    def credentials(self) -> VendorCredentials: ...

    @property
    def audit(self) -> AuditLog: ...


class ForwardBuild(Protocol):
    """The upstream pool, vendor credentials and audit log; the adapter; the answer scrubber."""

    @property
    def services(self) -> ForwardServices: ...

    @property
    def adapter(self) -> ProviderAdapter: ...

    @property
    def scrubber(self) -> AnswerScrubber: ...


def needs_body_first(route: RouteConfig, b: BodyBuild) -> bool:
    """Does an authenticator of the route need the body (RFC 9421 ``Content-Digest``)? It is
    then read before authentication, within the same bounds."""
    return any(b.authenticators[kind].needs_body for kind in route.auth)


def read_body(route: RouteConfig, b: BodyBuild) -> ReadBody:
    return ReadBody(b.config.settings.server.body_timeout_s)


def read_body_before_auth(route: RouteConfig, b: BodyBuild) -> ReadBody | None:
    return read_body(route, b) if needs_body_first(route, b) else None


def read_body_after_auth(route: RouteConfig, b: BodyBuild) -> ReadBody | None:
    return None if needs_body_first(route, b) else read_body(route, b)


def refuse_nul(route: RouteConfig, b: object) -> RefuseNul:
    return RefuseNul()


def hop_headers(route: RouteConfig, b: object) -> CheckHopHeaders:
    return CheckHopHeaders()


def forward(route: RouteConfig, b: ForwardBuild) -> Forward:
    s = b.services
    return Forward(
        s.upstream, s.credentials, b.adapter, PathTemplate.compile(route.path), s.audit, b.scrubber
    )
