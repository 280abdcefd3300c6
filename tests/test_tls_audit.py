"""An independent TLS audit of the running gateway with sslyze (its own OpenSSL builds, through
nassl, so it can offer what Python's ``ssl`` cannot: SSL 2/3, TLS 1.0/1.1, export and CBC suites,
compression, renegotiation). Loopback only; nothing leaves the machine.

Scanned with an ECDSA and an RSA certificate: the TLS 1.2 suites depend on the key type. The
README's "TLS audit" paragraph summarises what this scan finds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import trustme
from sslyze import (
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResult,
    ServerScanStatusEnum,
)

from tests.conftest import GatewayFactory, Vendor

COMMANDS = {
    ScanCommand.SSL_2_0_CIPHER_SUITES,
    ScanCommand.SSL_3_0_CIPHER_SUITES,
    ScanCommand.TLS_1_0_CIPHER_SUITES,
    ScanCommand.TLS_1_1_CIPHER_SUITES,
    ScanCommand.TLS_1_2_CIPHER_SUITES,
    ScanCommand.TLS_1_3_CIPHER_SUITES,
    ScanCommand.TLS_COMPRESSION,
    ScanCommand.SESSION_RENEGOTIATION,
    ScanCommand.TLS_FALLBACK_SCSV,
    ScanCommand.HEARTBLEED,
    ScanCommand.OPENSSL_CCS_INJECTION,
    ScanCommand.ELLIPTIC_CURVES,
    ScanCommand.HTTP_HEADERS,
}
AEAD = ("_GCM_", "_CHACHA20_POLY1305_", "_CCM")
TLS13_SUITES = {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}


def scan(port: int) -> ServerScanResult:
    """One sslyze scan, blocking (run it off the event loop that serves the gateway)."""
    scanner = Scanner(per_server_concurrent_connections_limit=4)
    location = ServerNetworkLocation("127.0.0.1", port, ip_address="127.0.0.1")
    scanner.queue_scans([ServerScanRequest(server_location=location, scan_commands=COMMANDS)])
    (result,) = scanner.get_results()
    return result


def accepted(attempt: Any) -> list[str]:
    assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, attempt.error_trace
    return sorted(suite.cipher_suite.name for suite in attempt.result.accepted_cipher_suites)


@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA], ids=["ecdsa", "rsa"])
async def test_sslyze_finds_only_tls12_and_13_with_forward_secret_aead_suites(
    make_gateway: GatewayFactory, vendor: Vendor, ca: trustme.CA, tmp_path: Path, key_type: trustme.KeyType
) -> None:
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=key_type)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    gw = await make_gateway(
        vendor.base_url, settings={"server": {"tls": {"cert_file": str(cert), "key_file": str(key)}}}
    )
    result = await asyncio.wait_for(asyncio.to_thread(scan, gw.running.public_port), timeout=120)
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    found = result.scan_result
    assert found is not None

    # Protocols: nothing below TLS 1.2 is accepted at all.
    for old in (
        found.ssl_2_0_cipher_suites,
        found.ssl_3_0_cipher_suites,
        found.tls_1_0_cipher_suites,
        found.tls_1_1_cipher_suites,
    ):
        assert accepted(old) == []

    # TLS 1.2: ECDHE key exchange and AEAD only, signed with the certificate's key type.
    tls12 = accepted(found.tls_1_2_cipher_suites)
    assert tls12
    signed_by = "ECDSA" if key_type == trustme.KeyType.ECDSA else "RSA"
    for name in tls12:
        assert name.startswith(f"TLS_ECDHE_{signed_by}_WITH_"), name
        assert any(mode in name for mode in AEAD), name
    # TLS 1.3: every suite is AEAD with (EC)DHE; all three standard ones are offered.
    assert set(accepted(found.tls_1_3_cipher_suites)) == TLS13_SUITES

    # No compression (CRIME), secure renegotiation only and none started by the client.
    assert found.tls_compression.result.supports_compression is False
    renegotiation = found.session_renegotiation.result
    assert renegotiation.supports_secure_renegotiation is True
    assert renegotiation.is_vulnerable_to_client_renegotiation_dos is False
    assert found.tls_fallback_scsv.result.supports_fallback_scsv is True
    assert found.heartbleed.result.is_vulnerable_to_heartbleed is False
    assert found.openssl_ccs_injection.result.is_vulnerable_to_ccs_injection is False
    curves = {curve.name for curve in found.elliptic_curves.result.supported_curves}
    assert "X25519" in curves and "secp256r1" in curves

    # HSTS on the answer to sslyze's own request (a 404: no route matches "/").
    headers = found.http_headers
    assert headers.status == ScanCommandAttemptStatusEnum.COMPLETED, headers.error_trace
    assert headers.result.http_error_trace is None
    hsts = headers.result.strict_transport_security_header
    assert hsts is not None
    assert (hsts.max_age, hsts.include_subdomains) == (31536000, True)
