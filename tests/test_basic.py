"""gateway/identity/basic.py: which Authorization values name a client and which do not."""

from __future__ import annotations

import base64

import pytest

from gateway.identity.basic import BasicAuthenticator
from tests.conftest import basic, sha


@pytest.fixture
def basic_auth() -> BasicAuthenticator:
    return BasicAuthenticator(
        [
            ("alice", sha("alice-pw"), "client-a"),
            ("bob", sha("p:w:x"), "client-b"),
            ("carol", sha("pässwört"), "client-c"),
        ]
    )


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (basic("alice", "alice-pw"), "client-a"),
        (basic("bob", "p:w:x"), "client-b"),  # everything after the first colon is the password
        (basic("carol", "pässwört"), "client-c"),
        (basic("alice", "alice-pw", scheme="basic"), "client-a"),
        (basic("alice", "alice-pw", scheme="BASIC"), "client-a"),
        (basic("alice", "alice-pw", scheme="bAsIc"), "client-a"),
        (basic("alice", "alice-pw").replace(" ", "   "), "client-a"),
    ],
)
def test_basic_valid(basic_auth: BasicAuthenticator, header: str, client: str) -> None:
    assert basic_auth.verify(header) == client


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Basic", id="scheme-only"),
        pytest.param("Basic ", id="scheme-space"),
        pytest.param(basic("alice", "wrong"), id="wrong-password"),
        pytest.param(basic("alice", "alice-pw "), id="password-trailing-space"),
        pytest.param(basic("Alice", "alice-pw"), id="username-case"),
        pytest.param(basic("mallory", "alice-pw"), id="unknown-user"),
        pytest.param(basic("mallory", ""), id="unknown-user-empty-password"),
        pytest.param(basic("alice", ""), id="empty-password"),
        pytest.param(basic("", "alice-pw"), id="empty-user"),
        pytest.param(basic("bob", "p"), id="password-cut-at-second-colon"),
        pytest.param(basic("alice", "alice-pw", scheme="Bearer"), id="bearer"),
        pytest.param(basic("alice", "alice-pw", scheme="Digest"), id="digest"),
        pytest.param(basic("alice", "alice-pw", scheme="Basicx"), id="scheme-prefix"),
        pytest.param("Basic !!!not-base64!!!", id="invalid-base64"),
        pytest.param("Basic YWxpY2U6YWxpY2UtcHc", id="missing-padding"),
        pytest.param("Basic " + base64.b64encode(b"alice-alice-pw").decode(), id="missing-colon"),
        pytest.param(basic(b"alice\xff", b"alice-pw"), id="non-utf8-user"),
        pytest.param(basic(b"alice", b"alice-pw\xff"), id="non-utf8-password"),
        pytest.param("Basic\t" + basic("alice", "alice-pw").split(" ")[1], id="tab-separator"),
    ],
)
def test_basic_refused(basic_auth: BasicAuthenticator, header: str | None) -> None:
    assert basic_auth.verify(header) is None


def test_basic_urlsafe_alphabet_is_not_accepted() -> None:
    # "?>?" encodes to "Pz4/" in standard base64 and "Pz4_" in the URL-safe alphabet.
    auth = BasicAuthenticator([("u", sha("?>?"), "c")])
    assert auth.verify("Basic " + base64.b64encode(b"u:?>?").decode()) == "c"
    assert auth.verify("Basic " + base64.urlsafe_b64encode(b"u:?>?").decode()) is None


# --------------------------------------------------------------------------- allowlist before password


def _allowlisted() -> BasicAuthenticator:
    from gateway.identity.ip import IpAllowlist

    return BasicAuthenticator(
        [("alice", sha("alice-pw"), "client-a"), ("bob", sha("bob-pw"), "client-b")],
        {"client-a": IpAllowlist(["10.0.0.0/8"]), "client-b": IpAllowlist(["192.0.2.0/24"])},
    )


def test_allowlist_is_checked_for_the_claimed_username_whatever_the_password() -> None:
    from netaddr import IPAddress

    auth = _allowlisted()
    outside, inside = IPAddress("203.0.113.9"), IPAddress("10.1.2.3")
    for password in ("alice-pw", "wrong"):
        assert auth.address_allowed(basic("alice", password), outside) is False
        assert auth.address_allowed(basic("alice", password), inside) is True
    # A header that names nobody claims no client: the password check answers (401).
    assert auth.address_allowed("Bearer x", outside) is True


def test_unknown_usernames_get_a_stable_decoy_among_the_real_clients() -> None:
    auth = _allowlisted()
    names = [f"user{i}" for i in range(200)]
    decoys = [auth.claimed_client(name) for name in names]
    assert set(decoys) == {"client-a", "client-b"}  # spread over the real clients
    assert decoys == [_allowlisted().claimed_client(name) for name in names]  # same on every replica
    assert auth.claimed_client("alice") == "client-a"
    assert BasicAuthenticator([]).claimed_client("anyone") is None
