"""Where a request comes from, as stages: the client address, and the route's and the client's
allowlists. The addresses themselves (strict parsing, CIDR sets, which X-Forwarded-For hop is the
client) are in gateway/core/addresses.py, shared with the connection limits and tracing.
"""

from __future__ import annotations

from gateway.core.addresses import ClientAddressResolver, IpAllowlist, Ranges, parse_ip
from gateway.core.errors import Reason, bad_request, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange, SyncStage

__all__ = [
    "ClientAddressResolver",
    "ClientAllowlist",
    "IpAllowlist",
    "Ranges",
    "ResolveClientAddress",
    "RouteAllowlist",
    "parse_ip",
]


# --------------------------------------------------------------------------- stages


class ResolveClientAddress(SyncStage):
    """The address every allowlist and log uses (right-most untrusted X-Forwarded-For hop)."""

    name = "client_address"
    __slots__ = ("_resolver",)

    def __init__(self, resolver: ClientAddressResolver) -> None:
        self._resolver = resolver

    def run_sync(self, ex: Exchange) -> None:
        peer = ex.peer
        if peer is None:
            raise bad_request("the client address is unknown")
        ex.address = self._resolver.resolve(peer, ex.request.headers.getall("X-Forwarded-For", ()))
        if ex.address is not peer:
            ex.ip = str(ex.address)


class RouteAllowlist(SyncStage):
    name = "route_ip_allow"
    __slots__ = ("_allowlist",)

    def __init__(self, allowlist: IpAllowlist) -> None:
        self._allowlist = allowlist

    def run_sync(self, ex: Exchange) -> None:
        assert ex.address is not None
        if not self._allowlist.allows(ex.address):
            raise refuse(
                Reason.IP_NOT_ALLOWED,
                "the client address is not allowed on this route",
                detail=Detail.ROUTE_ALLOWLIST,
            )


class ClientAllowlist(SyncStage):
    """The authenticated client's own allowlist (basic credentials check it before the password)."""

    name = "client_ip_allow"
    __slots__ = ()

    def run_sync(self, ex: Exchange) -> None:
        assert ex.client is not None and ex.address is not None
        if not ex.client.ip_allow.allows(ex.address):
            raise refuse(
                Reason.IP_NOT_ALLOWED,
                "the client address is not allowed for this client",
                detail=Detail.CLIENT_ALLOWLIST,
            )
