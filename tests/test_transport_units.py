"""gateway/transport/tls.py without a listener: HSTS, the HTTPS policy, TLS context construction.

The end-to-end handshakes are in tests/test_transport.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.commands.demo import make_self_signed
from gateway.config.schema import HSTSConfig, TLSConfig
from gateway.core.errors import GatewayError
from gateway.transport.tls import (
    HttpsPolicy,
    hsts_value,
    security_headers,
    server_context,
    spki_sha256,
    upstream_context,
)

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
        "Server": "smsgw",
    }
    custom = security_headers(HSTSConfig(max_age_s=600, include_subdomains=False))
    assert custom["Strict-Transport-Security"] == "max-age=600"


CERT_NAMES = frozenset({"gw.example.com", "*.sms.example.com", "192.0.2.1", "::1", "2001:db8::1"})


def _policy(
    *, offloaded: bool = False, action: str = "reject", origin: str = "", port: int = 443
) -> HttpsPolicy:
    return HttpsPolicy(
        offloaded=offloaded,
        action=action,
        public_origin=origin,
        https_port=lambda: port,
        host_names=lambda: CERT_NAMES,
    )


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
        (False, True, [], False),
        (False, True, ["https"], True),
        (False, False, "https", False),  # only the balancer's own word counts
        (True, False, "https", False),
        (True, False, None, False),
    ],
)
def test_is_https_offloaded(tls: bool, trusted: bool, proto: str | None, https: bool) -> None:
    policy = _policy(offloaded=True)
    assert policy.is_https(tls=tls, peer_trusted=trusted, forwarded_proto=proto) is https


@pytest.mark.parametrize("proto", ["https, http", "https,https", ["https", "https"], ["https", "http"]])
def test_more_than_one_forwarded_proto_from_a_trusted_proxy_is_400(proto: str | list[str]) -> None:
    with pytest.raises(GatewayError) as info:
        _policy(offloaded=True).is_https(tls=False, peer_trusted=True, forwarded_proto=proto)
    assert (info.value.status, info.value.code) == (400, "bad_request")


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
        ("a.sms.example.com", 443, "https://a.sms.example.com/p?q=1"),
        ("GW.Example.COM", 443, "https://GW.Example.COM/p?q=1"),
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
        # well-formed, but not a name of the certificate: a client must not pick the target
        "evil.example",
        "evil.example:443",
        "gw.example.com.evil.example",
        "sms.example.com",
        "a.b.sms.example.com",
        "198.51.100.1",
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
