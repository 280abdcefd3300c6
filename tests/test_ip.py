"""gateway/identity/ip.py: address parsing, allowlists and the client address behind trusted proxies."""

from __future__ import annotations

import netaddr
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.errors import GatewayError
from gateway.identity.ip import ClientAddressResolver, IpAllowlist, Ranges, parse_ip


@pytest.mark.parametrize(
    ("text", "expected", "version"),
    [
        ("192.0.2.1", "192.0.2.1", 4),
        (" 192.0.2.1 ", "192.0.2.1", 4),
        ("2001:db8::1", "2001:db8::1", 6),
        ("[2001:db8::1]", "2001:db8::1", 6),
        ("fe80::1%eth0", "fe80::1", 6),
        ("[fe80::1%25eth0]", "fe80::1", 6),
        ("::ffff:192.0.2.1", "192.0.2.1", 4),
        ("[::ffff:192.0.2.1]", "192.0.2.1", 4),
        ("::1", "::1", 6),
    ],
)
def test_parse_ip(text: str, expected: str, version: int) -> None:
    address = parse_ip(text)
    assert address == netaddr.IPAddress(expected)
    assert address.version == version


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "1.2.3",
        "1",
        "1.2.3.4.5",
        "01.2.3.4",
        "0x1.2.3.4",
        "1.2.3.4:80",
        "[::1]:80",
        "::g",
        "256.1.1.1",
    ],
)
def test_parse_ip_refuses_garbage(text: str) -> None:
    with pytest.raises((netaddr.AddrFormatError, ValueError)):
        parse_ip(text)


def test_empty_allowlist_allows_everything_and_is_falsy() -> None:
    allow = IpAllowlist([])
    assert not allow
    assert allow.allows(parse_ip("203.0.113.9"))
    assert allow.allows(parse_ip("2001:db8::9"))


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.0", False),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("2001:db8:1::5", True),
        ("2001:db8:2::5", False),
        ("::ffff:10.1.2.3", True),  # IPv4-mapped matches the IPv4 CIDR
        ("::ffff:11.0.0.1", False),
    ],
)
def test_allowlist_cidrs(address: str, allowed: bool) -> None:
    allow = IpAllowlist(["10.0.0.0/8", "192.0.2.7/32", "2001:db8:1::/48"])
    assert allow
    assert allow.allows(parse_ip(address)) is allowed


TRUSTED = ["10.0.0.0/8", "fd00::/8"]


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        pytest.param("203.0.113.5", [], "203.0.113.5", id="no-xff"),
        pytest.param("203.0.113.5", ["198.51.100.7"], "203.0.113.5", id="untrusted-peer-ignores-xff"),
        pytest.param("203.0.113.5", ["garbage"], "203.0.113.5", id="untrusted-peer-garbage-not-read"),
        pytest.param("10.0.0.1", [], "10.0.0.1", id="trusted-peer-no-xff"),
        pytest.param("10.0.0.1", ["198.51.100.7"], "198.51.100.7", id="one-hop"),
        pytest.param("10.0.0.1", ["198.51.100.7, 10.0.0.2"], "198.51.100.7", id="skip-trusted-hop"),
        pytest.param(
            "10.0.0.1", ["6.6.6.6, 198.51.100.7, 10.0.0.2"], "198.51.100.7", id="forged-left-ignored"
        ),
        pytest.param("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3", id="all-trusted-left-most"),
        pytest.param("10.0.0.1", ["6.6.6.6", "198.51.100.7, 10.0.0.2"], "198.51.100.7", id="values-joined"),
        pytest.param("10.0.0.1", ["198.51.100.7", "10.0.0.2"], "198.51.100.7", id="values-joined-2"),
        pytest.param(
            "10.0.0.1", ["garbage, 198.51.100.7, 10.0.0.2"], "198.51.100.7", id="garbage-left-unread"
        ),
        pytest.param("10.0.0.1", ["2001:db8::1, fd00::2"], "2001:db8::1", id="ipv6-hops"),
        pytest.param("fd00::1", ["[2001:db8::1]"], "2001:db8::1", id="bracketed-hop-v6-peer"),
        pytest.param("10.0.0.1", ["::ffff:198.51.100.7"], "198.51.100.7", id="mapped-hop"),
        pytest.param("10.0.0.1", ["::ffff:10.0.0.9, 198.51.100.7"], "198.51.100.7", id="mapped-trusted"),
    ],
)
def test_client_address_resolution(peer: str, xff: list[str], client: str) -> None:
    resolver = ClientAddressResolver(TRUSTED)
    assert resolver.resolve(parse_ip(peer), xff) == parse_ip(client)


def test_mapped_trusted_hop_is_skipped() -> None:
    resolver = ClientAddressResolver(TRUSTED)
    assert resolver.resolve(parse_ip("10.0.0.1"), ["198.51.100.7, ::ffff:10.0.0.9"]) == parse_ip(
        "198.51.100.7"
    )


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    resolver = ClientAddressResolver([])
    assert not resolver.is_trusted(parse_ip("10.0.0.1"))
    assert resolver.resolve(parse_ip("10.0.0.1"), ["198.51.100.7"]) == parse_ip("10.0.0.1")


@pytest.mark.parametrize(
    "xff",
    [
        ["198.51.100.7, garbage"],
        ["garbage"],
        ["198.51.100.7, "],
        ["198.51.100.7:4711"],
        ["198.51.100.7", "10.0.0.2, nope"],
        ["10.0.0.2, unknown"],
    ],
)
def test_malformed_hop_from_trusted_peer_is_400(xff: list[str]) -> None:
    resolver = ClientAddressResolver(TRUSTED)
    with pytest.raises(GatewayError) as err:
        resolver.resolve(parse_ip("10.0.0.1"), xff)
    assert (err.value.status, err.value.code) == (400, "bad_request")


# -- the bisect over merged ranges answers as netaddr's IPSet does ---------------------------------


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(
        st.one_of(
            st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)).map(
                lambda b: f"{netaddr.IPAddress(b[0], 4)}/{b[1]}"
            ),
            st.tuples(st.integers(0, 2**128 - 1), st.integers(16, 128)).map(
                lambda b: f"{netaddr.IPAddress(b[0], 6)}/{b[1]}"
            ),
        ),
        min_size=1,
        max_size=8,
    ),
    probes=st.lists(
        st.one_of(
            st.integers(0, 2**32 - 1).map(lambda v: netaddr.IPAddress(v, 4)),
            st.integers(0, 2**128 - 1).map(lambda v: netaddr.IPAddress(v, 6)),
        ),
        max_size=20,
    ),
)
def test_ranges_agree_with_ipset(blocks: list[str], probes: list[netaddr.IPAddress]) -> None:
    ranges, reference = Ranges(blocks), netaddr.IPSet(blocks)
    for block in blocks:  # the edges of every block, and just outside them
        network = netaddr.IPNetwork(block)
        for value in (network.first, network.last, network.first - 1, network.last + 1):
            if 0 <= value < 2 ** (32 if network.version == 4 else 128):
                probes.append(netaddr.IPAddress(value, network.version))
    for address in probes:
        assert (address in ranges) == (address in reference), (blocks, address)
