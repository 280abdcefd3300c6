"""Who is calling: authenticators by kind, and the stages that ask them and check scopes.

An authenticator knows one kind of credential (``basic``, later ``jwt`` and ``hmac``): whether a
request carries one, how to verify it, and the challenge to send when none is valid. The
registry in ``gateway/identity/__init__.py`` maps the names used in a route's ``auth`` list to a
builder, so a new kind is a new module plus one registry line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange, SyncStage
from gateway.core.values import Client, Principal

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.identity.jwks import JwksService
    from gateway.messages.base import ProviderAdapter
    from gateway.storage.service import StorageService

__all__ = [
    "AuthContext",
    "AuthServices",
    "Authenticate",
    "Authenticator",
    "AuthenticatorBuilder",
    "CheckScopes",
    "Principal",
]


class Authenticator(Protocol):
    kind: str
    #: ``WWW-Authenticate`` value sent when no credential of an accepted kind is valid ("" = none).
    challenge: str
    #: True when verifying needs the request body (RFC 9421 ``Content-Digest``); the body is then
    #: read, within the size bound, before authentication.
    needs_body: bool

    def present(self, request: web.Request) -> bool:
        """Does the request carry a credential of this kind (valid or not)?"""
        ...

    async def authenticate(self, ex: Exchange) -> Principal:
        """Verify it, or raise ``GatewayError`` (401 ``unauthenticated``, with a ``detail``)."""
        ...


class AuthServices(Protocol):
    """The long-lived services authenticators use (gateway/server/services.py's ``Services`` has
    them): JWKS key sets, and the shared storage for replay nonces."""

    @property
    def jwks(self) -> JwksService: ...

    @property
    def storage(self) -> StorageService: ...


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What authenticator builders may use: the config, the compiled clients, the services."""

    config: Config
    clients: Mapping[str, Client]
    services: AuthServices
    #: The vendor adapter: where its SDK puts credentials (``slots``).
    adapter: ProviderAdapter | None = None


AuthenticatorBuilder = Callable[[AuthContext], Authenticator]


class Authenticate:
    """The first credential of a kind the route accepts decides; none present or none valid is 401."""

    name = "authenticate"
    __slots__ = ("_authenticators", "_challenge")

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self._authenticators = tuple(authenticators)
        self._challenge = ", ".join(a.challenge for a in self._authenticators if a.challenge)

    @property
    def needs_body(self) -> bool:
        return any(a.needs_body for a in self._authenticators)

    async def run(self, ex: Exchange) -> None:
        request = ex.request
        for authenticator in self._authenticators:
            if authenticator.present(request):
                try:
                    principal = await authenticator.authenticate(ex)
                except GatewayError as exc:
                    if exc.code == "unauthenticated" and self._challenge:
                        exc.headers = {**exc.headers, "WWW-Authenticate": self._challenge}
                    raise
                client = ex.policy.clients.get(principal.client_id)
                if client is None:  # a credential for a client that no longer exists
                    raise self.unauthenticated(Detail.UNKNOWN_CLIENT)
                ex.principal = principal
                ex.client = client
                return
        raise self.unauthenticated(Detail.MISSING)

    def unauthenticated(self, detail: str) -> GatewayError:
        headers = {"WWW-Authenticate": self._challenge} if self._challenge else {}
        return refuse(Reason.UNAUTHENTICATED, "a valid credential is required", headers, detail)


class CheckScopes(SyncStage):
    """The route's scopes must all be granted: by the client, and by the credential if it narrows them."""

    name = "scopes"
    __slots__ = ("_required",)

    def __init__(self, required: frozenset[str]) -> None:
        self._required = required

    def run_sync(self, ex: Exchange) -> None:
        assert ex.client is not None and ex.principal is not None
        granted = ex.client.scopes
        if ex.principal.scopes is not None:
            granted = granted & ex.principal.scopes
        if not self._required <= granted:
            raise refuse(Reason.FORBIDDEN, "the client lacks a scope this route needs", detail=Detail.SCOPE)
