"""Client addresses: strict parsing, CIDR sets, and the right-most untrusted X-Forwarded-For hop.

X-Forwarded-For is read only when the peer itself is a trusted proxy, and then from the right:
every hop a trusted proxy appended is skipped, and the first address that is not a trusted
proxy is the client. Anything left of it was written by the client and may be forged.

Shared by the identity stages (allowlists), the connection limits (per-address counts) and
tracing (whose ``traceparent`` is trusted): none of them owns it, so it lives in core.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from functools import lru_cache

import netaddr

from gateway.core.errors import bad_request

__all__ = ["ClientAddressResolver", "IpAllowlist", "Ranges", "parse_ip"]


def parse_ip(text: str) -> netaddr.IPAddress:
    """Parse one address strictly; IPv4-mapped IPv6 becomes IPv4 so one allowlist entry covers both.

    Remembered (bounded): a connection's requests, and a client's connections, come from one address.
    """
    return _parse_ip(text)


@lru_cache(maxsize=4096)
def _parse_ip(text: str) -> netaddr.IPAddress:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:  # zone index, e.g. fe80::1%eth0
        text = text.split("%", 1)[0]
    address = netaddr.IPAddress(text, flags=netaddr.INET_PTON)
    if address.version == 6 and address.is_ipv4_mapped():
        address = address.ipv4()
    return address


class Ranges:
    """CIDRs (merged by netaddr's IPSet) as sorted integer ranges per IP version: a membership
    test is one bisect, not a walk over netaddr objects."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, cidrs: Iterable[str]) -> None:
        starts: dict[int, list[int]] = {4: [], 6: []}
        ends: dict[int, list[int]] = {4: [], 6: []}
        for block in netaddr.IPSet(cidrs).iter_ipranges():  # sorted, disjoint
            starts[block.version].append(block.first)
            ends[block.version].append(block.last)
        self._starts = starts
        self._ends = ends

    def __contains__(self, address: netaddr.IPAddress) -> bool:
        value = address.value
        version = address.version
        i = bisect_right(self._starts[version], value) - 1
        return i >= 0 and value <= self._ends[version][i]


class IpAllowlist:
    """An empty allowlist allows every address (the key was not set); otherwise CIDR membership."""

    __slots__ = ("_set",)

    def __init__(self, cidrs: Iterable[str]) -> None:
        cidrs = tuple(cidrs)
        self._set = Ranges(cidrs) if cidrs else None

    def __bool__(self) -> bool:
        return self._set is not None

    def allows(self, address: netaddr.IPAddress) -> bool:
        return self._set is None or address in self._set


class ClientAddressResolver:
    __slots__ = ("_trusted",)

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        cidrs = tuple(trusted_proxies)
        self._trusted = Ranges(cidrs) if cidrs else None

    def is_trusted(self, address: netaddr.IPAddress) -> bool:
        return self._trusted is not None and address in self._trusted

    def resolve(self, peer: netaddr.IPAddress, forwarded_for: Sequence[str]) -> netaddr.IPAddress:
        """Return the client address; a malformed X-Forwarded-For from a trusted proxy is a 400."""
        address = peer
        if not forwarded_for or not self.is_trusted(address):
            return address
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            try:
                address = parse_ip(hop)
            except (netaddr.AddrFormatError, ValueError):
                raise bad_request("X-Forwarded-For holds a value that is not an IP address") from None
            if not self.is_trusted(address):
                return address
        return address
