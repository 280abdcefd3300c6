"""The gateway's decisions as small pure functions, specified one rule at a time.

No servers and no network: each test calls one function (or builds one object) and states what
it must answer. Files are only written under ``tmp_path``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
import ssl
import time
import zlib
from pathlib import Path

import netaddr
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.audit import GENESIS, AuditLog, canonical, chain_value, last_chain
from gateway.config.schema import CredentialsConfig, HSTSConfig, TLSConfig
from gateway.context import RequestContext
from gateway.credentials import VendorCredentials
from gateway.demo import make_self_signed
from gateway.errors import GatewayError
from gateway.identity.basic import BasicAuthenticator
from gateway.identity.ip import ClientAddressResolver, IpAllowlist, parse_ip
from gateway.jsonlog import JsonLinesSink
from gateway.keygen import basic_credential, random_token
from gateway.proxy import Upstream, VendorAnswer, response_headers, upstream_headers
from gateway.routing import PathTemplate, Router, TemplateError, check_normal_form, route_shape
from gateway.transport import (
    HttpsPolicy,
    hsts_value,
    security_headers,
    server_context,
    spki_sha256,
    upstream_context,
)

# ============================================================================================
# routing: path templates
# ============================================================================================


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("/", ()),
        ("/v1/messages", ()),
        ("/2010-04-01/Accounts/{account}/Messages.json", ("account",)),
        ("/v1/{a}/{b}", ("a", "b")),
        ("/a/{x}.json", ("x",)),
        ("/a/{x}-{y}", ("x", "y")),
        ("/a:b@c/~d_e!$&'()*+,;=", ()),
        ("/a/..b/c.", ()),
    ],
)
def test_template_compiles(text: str, params: tuple[str, ...]) -> None:
    template = PathTemplate.compile(text)
    assert template.text == text
    assert template.params == params


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("v1/messages", id="no-leading-slash"),
        pytest.param("/a?b=1", id="query"),
        pytest.param("/a#frag", id="fragment"),
        pytest.param("//a", id="leading-double-slash"),
        pytest.param("/a//b", id="empty-segment"),
        pytest.param("/a/./b", id="dot-segment"),
        pytest.param("/a/../b", id="dotdot-segment"),
        pytest.param("/a/.", id="trailing-dot"),
        pytest.param("/a/..", id="trailing-dotdot"),
        pytest.param("/a/{x", id="unclosed-brace"),
        pytest.param("/a/x}", id="stray-close-brace"),
        pytest.param("/a/{x}}", id="extra-close-brace"),
        pytest.param("/a/{{x}", id="extra-open-brace"),
        pytest.param("/a/{}", id="empty-param"),
        pytest.param("/a/{1x}", id="param-name-digit-first"),
        pytest.param("/a/{x-y}", id="param-name-dash"),
        pytest.param("/a/{x}/{x}", id="duplicate-param"),
        pytest.param("/a b", id="space"),
        pytest.param("/a%20b", id="percent"),
        pytest.param("/a\\b", id="backslash"),
        pytest.param('/a"b', id="quote"),
        pytest.param("/a<b>", id="angle"),
        pytest.param("/caf\u00e9", id="non-ascii"),
        pytest.param("/a/{x}/b c", id="bad-tail-after-param"),
    ],
)
def test_template_is_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        PathTemplate.compile(text)


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


def test_template_render_fills_params() -> None:
    template = PathTemplate.compile("/2010-04-01/Accounts/{account}/Messages/{sid}.json")
    assert template.render({"account": "AC1", "sid": "SM9"}) == "/2010-04-01/Accounts/AC1/Messages/SM9.json"
    assert PathTemplate.compile("/v1/sms").render({}) == "/v1/sms"


@pytest.mark.parametrize(
    "value",
    ["abc", "AC0123", "a.b", "a-b_c~d", "..b"],
)
def test_param_matches_unreserved_characters(value: str) -> None:
    found = PathTemplate.compile("/m/{x}").pattern.match(f"/m/{value}")
    assert found is not None
    assert found["x"] == value


@pytest.mark.parametrize("value", ["%41", "a b", "a/b", "a%2Fb", "a:b", "a@b", "a+b", "", "a?b"])
def test_param_does_not_match_other_characters(value: str) -> None:
    assert PathTemplate.compile("/m/{x}").pattern.match(f"/m/{value}") is None


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/a/{x}/b/{y}", "/a/{}/b/{}"),
        ("/a/{account}", "/a/{}"),
        ("/v1/sms", "/v1/sms"),
    ],
)
def test_route_shape(path: str, shape: str) -> None:
    assert route_shape(path) == shape


def test_same_shape_means_same_route_shape() -> None:
    assert route_shape("/a/{x}") == route_shape("/a/{y}")


# ============================================================================================
# routing: the router
# ============================================================================================


def test_router_returns_target_template_and_params() -> None:
    router = Router([("/2010-04-01/Accounts/{account}/Messages.json", ["POST"], "send")])
    match = router.match("POST", "/2010-04-01/Accounts/AC42/Messages.json")
    assert match.target == "send"
    assert match.template.text == "/2010-04-01/Accounts/{account}/Messages.json"
    assert dict(match.params) == {"account": "AC42"}


def test_router_methods_are_upper_cased_at_build_time() -> None:
    router = Router([("/x", ["post"], 1)])
    assert router.match("POST", "/x").target == 1


def test_router_first_match_wins() -> None:
    router = Router([("/a/{x}", ["POST"], "param"), ("/a/b", ["POST"], "literal")])
    assert router.match("POST", "/a/b").target == "param"
    router = Router([("/a/b", ["POST"], "literal"), ("/a/{x}", ["POST"], "param")])
    assert router.match("POST", "/a/b").target == "literal"
    assert router.match("POST", "/a/c").target == "param"


def test_router_skips_a_path_match_with_the_wrong_method() -> None:
    router = Router([("/a/{x}", ["GET"], "get"), ("/a/b", ["POST"], "post")])
    assert router.match("POST", "/a/b").target == "post"


@pytest.mark.parametrize("path", ["/nope", "/a", "/a/b/c", "/m/%41", "/m/a/b"])
def test_router_unknown_path_is_404(path: str) -> None:
    router = Router([("/a/b", ["POST"], 1), ("/m/{x}", ["POST"], 2)])
    with pytest.raises(GatewayError) as err:
        router.match("POST", path)
    assert err.value.status == 404
    assert err.value.code == "route_not_found"


def test_router_wrong_method_is_405_with_union_allow() -> None:
    router = Router(
        [
            ("/a/{x}", ["GET"], 1),
            ("/a/b", ["PUT", "delete"], 2),
            ("/a/c", ["PATCH"], 3),  # path does not match /a/b: not in Allow
            ("/z", ["POST"], 4),
        ]
    )
    with pytest.raises(GatewayError) as err:
        router.match("POST", "/a/b")
    assert err.value.status == 405
    assert err.value.code == "method_not_allowed"
    assert err.value.headers["Allow"] == "DELETE, GET, PUT"


def test_router_refuses_same_shape_and_method_twice() -> None:
    with pytest.raises(TemplateError):
        Router([("/a/{x}", ["POST"], 1), ("/a/{y}", ["GET", "post"], 2)])


def test_router_allows_same_shape_with_other_methods() -> None:
    router = Router([("/a/{x}", ["POST"], 1), ("/a/{y}", ["GET"], 2)])
    assert router.match("GET", "/a/z").target == 2
    assert router.match("POST", "/a/z").target == 1


def test_router_refuses_a_bad_template() -> None:
    with pytest.raises(TemplateError):
        Router([("/a/../b", ["POST"], 1)])


@pytest.mark.parametrize("path", ["/m/a b", "/m/..", "/m/%2e%2e"])
def test_router_checks_normal_form_before_matching(path: str) -> None:
    router = Router([("/m/{x}", ["POST"], 1)])
    with pytest.raises(GatewayError) as err:
        router.match("POST", path)
    assert (err.value.status, err.value.code) == (400, "bad_request")


# ============================================================================================
# routing: normal form of the request path
# ============================================================================================


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("", id="empty"),
        pytest.param("a/b", id="relative"),
        pytest.param("*", id="asterisk"),
        pytest.param("//a", id="leading-double-slash"),
        pytest.param("/a//b", id="double-slash"),
        pytest.param("/a/b//", id="trailing-double-slash"),
        pytest.param("/a\\b", id="backslash"),
        pytest.param("/a%2fb", id="enc-slash-lower"),
        pytest.param("/a%2Fb", id="enc-slash-upper"),
        pytest.param("/a%5cb", id="enc-backslash-lower"),
        pytest.param("/a%5Cb", id="enc-backslash-upper"),
        pytest.param("/a/%2e%2e/b", id="enc-dot-lower"),
        pytest.param("/a/%2E/b", id="enc-dot-upper"),
        pytest.param("/a%2e", id="enc-dot-anywhere"),
        pytest.param("/a%00", id="enc-nul"),
        pytest.param("/./a", id="leading-dot-segment"),
        pytest.param("/a/./b", id="dot-segment"),
        pytest.param("/a/../b", id="dotdot-segment"),
        pytest.param("/a/..", id="trailing-dotdot"),
        pytest.param("/a/.", id="trailing-dot"),
        pytest.param("/..", id="root-dotdot"),
        pytest.param("/a b", id="space"),
        pytest.param("/a\tb", id="tab"),
        pytest.param("/a\nb", id="newline"),
        pytest.param("/a\rb", id="cr"),
        pytest.param("/a\x00b", id="nul"),
        pytest.param("/a\x1fb", id="unit-sep"),
        pytest.param("/a\x7fb", id="del"),
    ],
)
def test_normal_form_refused(path: str) -> None:
    with pytest.raises(GatewayError) as err:
        check_normal_form(path)
    assert (err.value.status, err.value.code) == (400, "bad_request")


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/a",
        "/a/",
        "/a/..b",
        "/a/b..",
        "/a/b.json",
        "/.well-known/x",
        "/a/%41",
        "/2010-04-01/Accounts/AC1/Messages.json",
        "/a:b@c;d=e",
    ],
)
def test_normal_form_accepted(path: str) -> None:
    check_normal_form(path)


# ============================================================================================
# identity/ip.py
# ============================================================================================


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


# ============================================================================================
# identity/basic.py
# ============================================================================================


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _basic(user: str | bytes, password: str | bytes, scheme: str = "Basic") -> str:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":"
    raw += password if isinstance(password, bytes) else password.encode()
    return f"{scheme} {base64.b64encode(raw).decode()}"


@pytest.fixture
def basic_auth() -> BasicAuthenticator:
    return BasicAuthenticator(
        [
            ("alice", _sha("alice-pw"), "client-a"),
            ("bob", _sha("p:w:x"), "client-b"),
            ("carol", _sha("pässwört"), "client-c"),
        ]
    )


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (_basic("alice", "alice-pw"), "client-a"),
        (_basic("bob", "p:w:x"), "client-b"),  # everything after the first colon is the password
        (_basic("carol", "pässwört"), "client-c"),
        (_basic("alice", "alice-pw", scheme="basic"), "client-a"),
        (_basic("alice", "alice-pw", scheme="BASIC"), "client-a"),
        (_basic("alice", "alice-pw", scheme="bAsIc"), "client-a"),
        (_basic("alice", "alice-pw").replace(" ", "   "), "client-a"),
    ],
)
def test_basic_valid(basic_auth: BasicAuthenticator, header: str, client: str) -> None:
    assert basic_auth.authenticate(header) == client


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Basic", id="scheme-only"),
        pytest.param("Basic ", id="scheme-space"),
        pytest.param(_basic("alice", "wrong"), id="wrong-password"),
        pytest.param(_basic("alice", "alice-pw "), id="password-trailing-space"),
        pytest.param(_basic("Alice", "alice-pw"), id="username-case"),
        pytest.param(_basic("mallory", "alice-pw"), id="unknown-user"),
        pytest.param(_basic("mallory", ""), id="unknown-user-empty-password"),
        pytest.param(_basic("alice", ""), id="empty-password"),
        pytest.param(_basic("", "alice-pw"), id="empty-user"),
        pytest.param(_basic("bob", "p"), id="password-cut-at-second-colon"),
        pytest.param(_basic("alice", "alice-pw", scheme="Bearer"), id="bearer"),
        pytest.param(_basic("alice", "alice-pw", scheme="Digest"), id="digest"),
        pytest.param(_basic("alice", "alice-pw", scheme="Basicx"), id="scheme-prefix"),
        pytest.param("Basic !!!not-base64!!!", id="invalid-base64"),
        pytest.param("Basic YWxpY2U6YWxpY2UtcHc", id="missing-padding"),
        pytest.param("Basic " + base64.b64encode(b"alice-alice-pw").decode(), id="missing-colon"),
        pytest.param(_basic(b"alice\xff", b"alice-pw"), id="non-utf8-user"),
        pytest.param(_basic(b"alice", b"alice-pw\xff"), id="non-utf8-password"),
        pytest.param("Basic\t" + _basic("alice", "alice-pw").split(" ")[1], id="tab-separator"),
    ],
)
def test_basic_refused(basic_auth: BasicAuthenticator, header: str | None) -> None:
    assert basic_auth.authenticate(header) is None


def test_basic_urlsafe_alphabet_is_not_accepted() -> None:
    # "?>?" encodes to "Pz4/" in standard base64 and "Pz4_" in the URL-safe alphabet.
    auth = BasicAuthenticator([("u", _sha("?>?"), "c")])
    assert auth.authenticate("Basic " + base64.b64encode(b"u:?>?").decode()) == "c"
    assert auth.authenticate("Basic " + base64.urlsafe_b64encode(b"u:?>?").decode()) is None


# ============================================================================================
# transport: HSTS, security headers, HTTPS policy
# ============================================================================================


@pytest.mark.parametrize(
    ("cfg", "value"),
    [
        (HSTSConfig(), "max-age=31536000; includeSubDomains"),
        (HSTSConfig(max_age_s=600, include_subdomains=False), "max-age=600"),
        (HSTSConfig(max_age_s=0, include_subdomains=False), "max-age=0"),
        (HSTSConfig(max_age_s=0, include_subdomains=True), "max-age=0; includeSubDomains"),
        (
            HSTSConfig(max_age_s=63072000, include_subdomains=True, preload=True),
            "max-age=63072000; includeSubDomains; preload",
        ),
    ],
)
def test_hsts_value(cfg: HSTSConfig, value: str) -> None:
    assert hsts_value(cfg) == value


def test_security_headers() -> None:
    assert security_headers(HSTSConfig()) == {
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
    custom = security_headers(HSTSConfig(max_age_s=600, include_subdomains=False))
    assert custom["Strict-Transport-Security"] == "max-age=600"


def _policy(
    *, offloaded: bool = False, action: str = "reject", origin: str = "", port: int = 443
) -> HttpsPolicy:
    return HttpsPolicy(offloaded=offloaded, action=action, public_origin=origin, https_port=port)


@pytest.mark.parametrize(
    ("tls", "trusted", "proto", "https"),
    [
        (True, False, None, True),
        (True, True, "http", True),
        (False, True, "https", False),  # terminate mode never trusts the header
        (False, False, None, False),
    ],
)
def test_is_https_terminate(tls: bool, trusted: bool, proto: str | None, https: bool) -> None:
    assert _policy().is_https(tls=tls, peer_trusted=trusted, forwarded_proto=proto) is https


@pytest.mark.parametrize(
    ("tls", "trusted", "proto", "https"),
    [
        (False, True, "https", True),
        (False, True, "HTTPS", True),
        (False, True, " Https ", True),
        (False, True, "http", False),
        (False, True, None, False),
        (False, True, "", False),
        (False, True, "https, http", False),
        (False, False, "https", False),  # only the balancer's own word counts
        (True, False, "https", False),
        (True, False, None, False),
    ],
)
def test_is_https_offloaded(tls: bool, trusted: bool, proto: str | None, https: bool) -> None:
    policy = _policy(offloaded=True)
    assert policy.is_https(tls=tls, peer_trusted=trusted, forwarded_proto=proto) is https


def _assert_403(err: GatewayError) -> None:
    assert (err.status, err.code) == (403, "tls_required")
    assert "Location" not in err.headers


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_refuse_rejects_by_default(method: str) -> None:
    _assert_403(_policy(origin="https://gw.example.com").refuse(method, "gw.example.com", "/x"))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_refuse_redirect_prefers_public_origin(method: str) -> None:
    policy = _policy(action="redirect", origin="https://gw.example.com", port=8443)
    err = policy.refuse(method, "other.example:8080", "/v1/status?a=1")
    assert (err.status, err.code) == (308, "tls_required")
    assert err.headers["Location"] == "https://gw.example.com/v1/status?a=1"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"])
def test_refuse_redirect_only_for_get_and_head(method: str) -> None:
    _assert_403(_policy(action="redirect", origin="https://gw.example.com").refuse(method, "h", "/"))


@pytest.mark.parametrize(
    ("host", "port", "location"),
    [
        ("gw.example.com", 443, "https://gw.example.com/p?q=1"),
        ("gw.example.com:8080", 443, "https://gw.example.com/p?q=1"),
        ("gw.example.com:8080", 8443, "https://gw.example.com:8443/p?q=1"),
        ("192.0.2.1:80", 8443, "https://192.0.2.1:8443/p?q=1"),
        ("[::1]:8080", 8443, "https://[::1]:8443/p?q=1"),
        ("[2001:db8::1]", 443, "https://[2001:db8::1]/p?q=1"),
    ],
)
def test_refuse_redirect_from_host(host: str, port: int, location: str) -> None:
    err = _policy(action="redirect", port=port).refuse("GET", host, "/p?q=1")
    assert err.status == 308
    assert err.headers["Location"] == location


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example/x",
        "a b",
        "user@evil.example",
        "evil.example:80abc",
        "evil.example:",
        "x:1:2",
        "gw.example\r\nSet-Cookie: a=b",
        "[::1",
        "[gw.example]",
        "gw.example:123456",
    ],
)
def test_refuse_redirect_with_bad_host_is_403(host: str | None) -> None:
    _assert_403(_policy(action="redirect", port=8443).refuse("GET", host, "/p"))


# ============================================================================================
# transport: certificates and TLS contexts (construction only)
# ============================================================================================


@pytest.fixture(scope="module")
def cert_pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, bytes, ec.EllipticCurvePrivateKey]:
    # The demo's own certificate maker: one way to make a pair in the project.
    folder = tmp_path_factory.mktemp("units-pki")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    make_self_signed(cert_file, key_file, hosts=("unit.test",))
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert_file, key_file, cert.public_bytes(serialization.Encoding.DER), key


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, element end) of the DER element at ``pos``."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _spki_from_der(der: bytes) -> bytes:
    """Walk Certificate -> tbsCertificate -> subjectPublicKeyInfo without a certificate parser."""
    _, cert_body, _ = _der_element(der, 0)
    _, pos, _ = _der_element(der, cert_body)  # tbsCertificate
    tag, _, end = _der_element(der, pos)
    if tag == 0xA0:  # [0] version
        pos = end
    for _ in range(5):  # serialNumber, signature, issuer, validity, subject
        _, _, pos = _der_element(der, pos)
    tag, _, end = _der_element(der, pos)
    assert tag == 0x30
    return der[pos:end]


def test_spki_sha256_matches_independent_computation(cert_pair) -> None:
    _, _, der, key = cert_pair
    from_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert _spki_from_der(der) == from_key
    expected = base64.b64encode(hashlib.sha256(from_key).digest()).decode()
    assert spki_sha256(der) == expected
    assert len(expected) == 44 and expected.endswith("=")


@pytest.mark.parametrize(
    ("version", "minimum"), [("1.2", ssl.TLSVersion.TLSv1_2), ("1.3", ssl.TLSVersion.TLSv1_3)]
)
def test_server_context_minimum_version(cert_pair, version: str, minimum: ssl.TLSVersion) -> None:
    cert_file, key_file, _, _ = cert_pair
    ctx = server_context(TLSConfig(min_version=version), cert_file, key_file, None)
    assert ctx.minimum_version == minimum
    assert ctx.verify_mode == ssl.CERT_NONE


def test_server_context_offers_only_ecdhe_aead_for_tls12(cert_pair) -> None:
    cert_file, key_file, _, _ = cert_pair
    ctx = server_context(TLSConfig(), cert_file, key_file, None)
    ciphers = ctx.get_ciphers()
    tls12 = [c for c in ciphers if c["protocol"] == "TLSv1.2"]
    assert tls12, "no TLS 1.2 suite left"
    for cipher in tls12:
        assert cipher["kea"] == "kx-ecdhe", cipher["name"]
        assert cipher["aead"] is True, cipher["name"]
        assert re.search(r"gcm|chacha20-poly1305", cipher["symmetric"]), cipher["name"]
        assert cipher["name"].startswith("ECDHE-"), cipher["name"]
        assert not re.search(r"CBC|SHA$|RC4|3DES|NULL|MD5|PSK|DSS", cipher["name"]), cipher["name"]
    for cipher in ciphers:
        assert cipher["aead"] is True, cipher["name"]
        assert cipher["protocol"] in ("TLSv1.2", "TLSv1.3"), cipher["name"]


def test_server_context_options(cert_pair) -> None:
    cert_file, key_file, _, _ = cert_pair
    ctx = server_context(TLSConfig(), cert_file, key_file, None)
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_server_context_with_client_ca_requires_client_certificates(cert_pair) -> None:
    cert_file, key_file, _, _ = cert_pair
    ctx = server_context(TLSConfig(), cert_file, key_file, cert_file)
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_upstream_context_without_pins(cert_pair) -> None:
    cert_file, _, _, _ = cert_pair
    ctx = upstream_context(cert_file)
    assert ctx.sslobject_class is ssl.SSLObject
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    for cipher in ctx.get_ciphers():
        assert cipher["aead"] is True, cipher["name"]


def test_upstream_context_with_pins_uses_a_checking_sslobject(cert_pair) -> None:
    cert_file, _, der, _ = cert_pair
    ctx = upstream_context(cert_file, [spki_sha256(der)])
    assert ctx.sslobject_class is not ssl.SSLObject
    assert issubclass(ctx.sslobject_class, ssl.SSLObject)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True


# ============================================================================================
# credentials
# ============================================================================================


def test_credentials_basic() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="basic", username="AC1", password="tok:en"))
    token = base64.b64encode(b"AC1:tok:en").decode()
    assert creds.headers == (("Authorization", f"Basic {token}"),)
    assert creds.query == ()
    assert creds.secrets == {"tok:en", token}
    assert creds.username == "AC1"
    assert creds.header_names == {"authorization"}


def test_credentials_bearer() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="bearer", token="bt-123"))
    assert creds.headers == (("Authorization", "Bearer bt-123"),)
    assert creds.query == ()
    assert creds.secrets == {"bt-123"}
    assert creds.username == ""


def test_credentials_header() -> None:
    creds = VendorCredentials.from_config(
        CredentialsConfig(type="header", name="X-Vendor-Key", value="hv-1", username="acct")
    )
    assert creds.headers == (("X-Vendor-Key", "hv-1"),)
    assert creds.query == ()
    assert creds.secrets == {"hv-1"}
    assert creds.username == "acct"
    assert creds.header_names == {"x-vendor-key"}


def test_credentials_query() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="query", name="api_key", value="qv-1"))
    assert creds.headers == ()
    assert creds.query == (("api_key", "qv-1"),)
    assert creds.secrets == {"qv-1"}
    assert creds.header_names == frozenset()


def test_credentials_none() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="none"))
    assert (creds.headers, creds.query, creds.secrets, creds.username) == ((), (), frozenset(), "")


# ============================================================================================
# proxy: headers
# ============================================================================================


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


HEADER_CREDS = VendorCredentials.from_config(
    CredentialsConfig(type="header", name="X-Vendor-Key", value="vendor-secret")
)
NO_CREDS = VendorCredentials.from_config(CredentialsConfig(type="none"))

CLIENT_SIDE = [
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "Authorization",
    "Cookie",
    "X-Api-Key",
    "Signature",
    "Signature-Input",
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Real-IP",
    "Idempotency-Key",
    "Host",
    "Content-Length",
    "Expect",
]


@pytest.mark.parametrize("name", CLIENT_SIDE + [n.lower() for n in CLIENT_SIDE[:3]] + ["AUTHORIZATION"])
def test_upstream_headers_drop(name: str) -> None:
    out = upstream_headers(_headers((name, "v"), ("Content-Type", "application/json")), NO_CREDS)
    assert name not in out
    assert out["Content-Type"] == "application/json"


@pytest.mark.parametrize("name", ["X-Forwarded-Server", "X-Forwarded-Prefix", "X-Forwarded-Client-Cert"])
def test_upstream_headers_drop_every_x_forwarded(name: str) -> None:
    out = upstream_headers(_headers((name, "internal-value")), NO_CREDS)
    assert name not in out


def test_upstream_headers_drop_names_listed_in_connection() -> None:
    incoming = _headers(
        ("Connection", "keep-alive, X-Internal-Trace"),
        ("Connection", "x-other"),
        ("X-Internal-Trace", "t"),
        ("X-Other", "o"),
        ("X-Kept", "k"),
    )
    assert list(upstream_headers(incoming, NO_CREDS).items()) == [("X-Kept", "k")]


def test_upstream_headers_replace_clients_copy_of_vendor_header() -> None:
    incoming = _headers(("x-vendor-key", "client-forged"), ("Accept", "*/*"))
    out = upstream_headers(incoming, HEADER_CREDS)
    assert out.getall("X-Vendor-Key") == ["vendor-secret"]
    assert out["Accept"] == "*/*"


def test_upstream_headers_replace_clients_authorization_with_vendors() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="bearer", token="vendor-bt"))
    out = upstream_headers(_headers(("Authorization", "Basic Y2xpZW50OnB3")), creds)
    assert out.getall("Authorization") == ["Bearer vendor-bt"]


def test_upstream_headers_extra_strip_names() -> None:
    incoming = _headers(("Content-Digest", "sha-256=:x:"), ("X-Gw-Token", "t"), ("Accept", "a"))
    out = upstream_headers(incoming, NO_CREDS, strip=["content-digest", "X-GW-TOKEN"])
    assert list(out.items()) == [("Accept", "a")]


def test_upstream_headers_keep_everything_else_with_repeats_in_order() -> None:
    incoming = _headers(
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
        ("Authorization", "Basic x"),
        ("Accept", "text/plain"),
        ("User-Agent", "twilio-python/9"),
        ("X-Twilio-Client", "py"),
        ("Content-Length", "12"),
    )
    out = upstream_headers(incoming, HEADER_CREDS)
    assert list(out.items()) == [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
        ("Accept", "text/plain"),
        ("User-Agent", "twilio-python/9"),
        ("X-Twilio-Client", "py"),
        ("X-Vendor-Key", "vendor-secret"),
    ]


def test_upstream_headers_do_not_change_the_incoming_headers() -> None:
    incoming = _headers(("Authorization", "a"), ("Accept", "b"))
    upstream_headers(incoming, HEADER_CREDS)
    assert list(incoming.items()) == [("Authorization", "a"), ("Accept", "b")]


def test_response_headers() -> None:
    incoming = _headers(
        ("Content-Type", "application/json"),
        ("Content-Length", "99"),
        ("Strict-Transport-Security", "max-age=1"),
        ("Transfer-Encoding", "chunked"),
        ("Keep-Alive", "timeout=5"),
        ("Connection", "keep-alive, X-Vendor-Debug"),
        ("X-Vendor-Debug", "node-7"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Encoding", "gzip"),
        ("Twilio-Request-Id", "RQ1"),
    )
    assert list(response_headers(incoming).items()) == [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Encoding", "gzip"),
        ("Twilio-Request-Id", "RQ1"),
    ]


# ============================================================================================
# proxy: upstream URL
# ============================================================================================


def _upstream(base: str, creds: VendorCredentials) -> Upstream:
    return Upstream(base, creds, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), 1.0, 2.0)


@pytest.mark.parametrize(
    ("base", "path", "query", "url"),
    [
        ("https://api.vendor.test", "/v1/sms", "", "https://api.vendor.test/v1/sms"),
        ("https://api.vendor.test/", "/v1/sms", "", "https://api.vendor.test/v1/sms"),
        ("https://api.vendor.test/base/", "/v1/sms", "", "https://api.vendor.test/base/v1/sms"),
        ("https://api.vendor.test", "/v1/sms", "a=1&b=%20+x", "https://api.vendor.test/v1/sms?a=1&b=%20+x"),
        (
            "https://api.vendor.test",
            "/v1/sms",
            "api_key=client",
            "https://api.vendor.test/v1/sms?api_key=client",
        ),
    ],
)
def test_upstream_url_without_query_credential(base: str, path: str, query: str, url: str) -> None:
    assert _upstream(base, NO_CREDS).url(path, query) == url


QUERY_CREDS = VendorCredentials.from_config(
    CredentialsConfig(type="query", name="api_key", value="s e&c=r/t+%")
)
SUFFIX = "api_key=s%20e%26c%3Dr%2Ft%2B%25"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", SUFFIX),
        ("a=1", f"a=1&{SUFFIX}"),
        ("a=1&b=2", f"a=1&b=2&{SUFFIX}"),
        ("api_key=evil", SUFFIX),
        ("api_key=evil&a=1", f"a=1&{SUFFIX}"),
        ("a=1&API_KEY=evil", f"a=1&{SUFFIX}"),
        ("Api_Key=evil&a=1&api_key=evil2", f"a=1&{SUFFIX}"),
        ("%61pi_key=evil&a=1", f"a=1&{SUFFIX}"),
        ("api%5Fkey=evil&a=1", f"a=1&{SUFFIX}"),
        ("api_key&a=1", f"a=1&{SUFFIX}"),
        ("api_key=&a=1", f"a=1&{SUFFIX}"),
        ("api_keyx=1&xapi_key=2", f"api_keyx=1&xapi_key=2&{SUFFIX}"),
        ("a=api_key", f"a=api_key&{SUFFIX}"),
    ],
)
def test_upstream_url_with_query_credential(query: str, expected: str) -> None:
    assert _upstream("https://api.vendor.test/", QUERY_CREDS).url("/p", query) == (
        f"https://api.vendor.test/p?{expected}"
    )


@pytest.mark.parametrize("query", ["api+key=evil", "api%20key=evil", "API%20KEY=evil"])
def test_upstream_url_drops_encoded_credential_name(query: str) -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="query", name="api key", value="v"))
    assert _upstream("https://v.test", creds).url("/p", query + "&z=1") == "https://v.test/p?z=1&api%20key=v"


# ============================================================================================
# proxy: vendor answer body
# ============================================================================================

BODY = b'{"sid": "SM0123456789abcdef", "status": "queued"}' * 20


def _answer(body: bytes, coding: str | None) -> VendorAnswer:
    headers = CIMultiDict({"Content-Encoding": coding} if coding is not None else {})
    return VendorAnswer(201, headers, body, 1.0)


@pytest.mark.parametrize(
    ("body", "coding"),
    [
        (BODY, None),
        (BODY, "identity"),
        (BODY, "IDENTITY "),
        (BODY, ""),
        (gzip.compress(BODY), "gzip"),
        (gzip.compress(BODY), " GZip"),
        (gzip.compress(BODY), "x-gzip"),
        (zlib.compress(BODY), "deflate"),
    ],
)
def test_decoded_body(body: bytes, coding: str | None) -> None:
    assert _answer(body, coding).decoded_body() == BODY


@pytest.mark.parametrize(
    ("body", "coding"),
    [
        pytest.param(BODY, "br", id="unknown-coding"),
        pytest.param(BODY, "compress", id="compress"),
        pytest.param(gzip.compress(BODY), "gzip, identity", id="coding-list"),
        pytest.param(b"\x1f\x8b\x08garbage-not-gzip", "gzip", id="corrupt-gzip"),
        pytest.param(BODY, "gzip", id="plain-labelled-gzip"),
        pytest.param(BODY, "deflate", id="plain-labelled-deflate"),
    ],
)
def test_decoded_body_unavailable(body: bytes, coding: str) -> None:
    assert _answer(body, coding).decoded_body() is None


def test_decoded_body_limit() -> None:
    answer = _answer(gzip.compress(BODY), "gzip")
    assert answer.decoded_body(limit=len(BODY)) == BODY
    assert answer.decoded_body(limit=len(BODY) - 1) is None
    bomb = _answer(gzip.compress(b"0" * (4 * 1024 * 1024)), "gzip")
    assert bomb.decoded_body() is None


def test_decoded_body_truncated_gzip_is_unavailable() -> None:
    truncated = gzip.compress(BODY)[:-12]
    assert _answer(truncated, "gzip").decoded_body() is None


# ============================================================================================
# audit
# ============================================================================================


def test_canonical_is_sorted_compact_utf8_without_chain() -> None:
    record = {"z": 1, "a": "é", "chain": "abc", "m": {"y": [1, None], "b": True}}
    assert canonical(record) == '{"a":"é","m":{"b":true,"y":[1,null]},"z":1}'.encode()


def test_canonical_stringifies_unknown_types() -> None:
    assert canonical({"p": Path("/x")}) == b'{"p":"/x"}'


def test_canonical_ignores_chain() -> None:
    assert canonical({"a": 1, "chain": "x"}) == canonical({"a": 1}) == canonical({"a": 1, "chain": "y"})


def test_chain_value_plain_and_keyed() -> None:
    record = {"b": 2, "a": 1, "chain": "ignored"}
    message = GENESIS.encode() + b"\n" + b'{"a":1,"b":2}'
    plain = chain_value(GENESIS, record, None)
    keyed = chain_value(GENESIS, record, b"chain-key")
    assert plain == hashlib.sha256(message).hexdigest()
    assert keyed == hmac.new(b"chain-key", message, hashlib.sha256).hexdigest()
    assert plain != keyed
    assert chain_value(GENESIS, record, b"other-key") != keyed
    assert chain_value("1" * 64, record, None) != plain
    assert chain_value(GENESIS, {"a": 1, "b": 3}, None) != plain
    assert re.fullmatch(r"[0-9a-f]{64}", plain)


def _ctx(request_id: str) -> RequestContext:
    return RequestContext(
        request_id=request_id,
        method="POST",
        path="/2010-04-01/Accounts/AC1/Messages.json",
        ip="198.51.100.7",
        route="twilio-send",
        client="billing",
        recipients=["+4479*****23"],
        recipient_count=1,
        sender="ACME",
        body={"hmac": "abc"},
    )


def _write_pair(log: AuditLog, request_id: str) -> None:
    ctx = _ctx(request_id)
    log.decision(ctx, "allow", None, None)
    assert ctx.audited is True
    ctx.status, ctx.upstream_ms, ctx.vendor_message_id = 201, 12.5, "SM1"
    log.outcome(ctx, time.perf_counter())


def _verify(path: Path, key: bytes | None) -> list[dict]:
    records, previous = [], GENESIS
    for line in path.read_bytes().splitlines():
        record = json.loads(line)
        assert record["chain"] == chain_value(previous, record, key)
        previous = record["chain"]
        records.append(record)
    return records


@pytest.mark.parametrize("key", [None, b"audit-chain-key"])
def test_audit_log_lines_chain_from_genesis(tmp_path: Path, key: bytes | None) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio", key)
    _write_pair(log, "req-1")
    log.close()
    records = _verify(path, key)
    assert [(r["event"], r["request_id"]) for r in records] == [("request", "req-1"), ("outcome", "req-1")]
    assert records[0]["decision"] == "allow"
    assert records[0]["provider"] == "twilio"
    assert records[1]["status"] == 201
    assert records[1]["vendor_message_id"] == "SM1"
    assert records[0]["chain"] == chain_value(GENESIS, records[0], key)


def test_audit_log_keyed_chain_does_not_verify_without_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio", b"k")
    _write_pair(log, "req-1")
    log.close()
    first = json.loads(path.read_bytes().splitlines()[0])
    assert first["chain"] != chain_value(GENESIS, first, None)


@pytest.mark.parametrize("key", [None, b"audit-chain-key"])
def test_audit_log_restart_continues_the_chain(tmp_path: Path, key: bytes | None) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(JsonLinesSink(str(path)), "twilio", key)
    _write_pair(first, "req-1")
    first.close()
    before = last_chain(path)
    second = AuditLog(JsonLinesSink(str(path)), "twilio", key)
    _write_pair(second, "req-2")
    second.close()
    records = _verify(path, key)
    assert len(records) == 4
    assert records[2]["chain"] == chain_value(before, records[2], key)
    assert last_chain(path) == records[3]["chain"]


def test_audit_line_keys_sorted_with_chain_last(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    ctx = _ctx("req-1")
    log.decision(ctx, "deny", 403, "ip_not_allowed")
    log.close()
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    keys = list(json.loads(raw, object_pairs_hook=lambda pairs: dict(pairs)).keys())
    assert keys[-1] == "chain"
    assert keys[:-1] == sorted(keys[:-1])
    record = json.loads(raw)
    assert (record["decision"], record["status"], record["reason"]) == ("deny", 403, "ip_not_allowed")
    assert raw.rstrip(b"\n") == canonical(record)[:-1] + b',"chain":"' + record["chain"].encode() + b'"}'


def test_last_chain_of_missing_file_is_genesis(tmp_path: Path) -> None:
    assert last_chain(tmp_path / "nope.jsonl") == GENESIS


def test_last_chain_skips_garbage_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    _write_pair(log, "req-1")
    log.close()
    good = _verify(path, None)[-1]["chain"]
    with path.open("ab") as fh:
        fh.write(b'{"event":"request","chai')  # a torn last write, no newline
    assert last_chain(path) == good
    with path.open("ab") as fh:
        fh.write(b'\n[1, 2]\n{"no_chain": 1}\n{"chain": 5}\nnot json\n\n')
    assert last_chain(path) == good
    again = AuditLog(JsonLinesSink(str(path)), "twilio")
    ctx = _ctx("req-2")
    again.decision(ctx, "allow", None, None)
    again.close()
    last = json.loads(path.read_bytes().splitlines()[-1])
    assert last["chain"] == chain_value(good, last, None)


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"\n\n", b'{"a": 1}\n'])
def test_last_chain_without_any_record_is_genesis(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(content)
    assert last_chain(path) == GENESIS


# ============================================================================================
# keygen
# ============================================================================================


@pytest.mark.parametrize(("nbytes", "length"), [(32, 43), (16, 22), (48, 64), (1, 2)])
def test_random_token_shape(nbytes: int, length: int) -> None:
    token = random_token(nbytes)
    assert len(token) == length
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == nbytes


def test_random_token_default_is_32_bytes() -> None:
    assert len(random_token()) == 43


def test_random_tokens_are_unique() -> None:
    assert len({random_token() for _ in range(500)}) == 500


def test_basic_credential() -> None:
    password, digest = basic_credential()
    assert len(password) == 43
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", password)
    assert digest == hashlib.sha256(password.encode()).hexdigest()
    assert basic_credential()[0] != password
    auth = BasicAuthenticator([("svc", digest, "svc-client")])
    assert auth.authenticate(_basic("svc", password)) == "svc-client"
