"""Transport end to end: TLS versions and ciphers, HSTS and security headers, plain HTTP,
offloaded TLS behind a trusted proxy, mutual TLS and certificate reload.

Every handshake here is a real one over loopback against the gateway's own listener.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from cryptography import x509

from tests.conftest import CLIENT_PASSWORD, CLIENT_USER, basic, client_ssl, policy, raw_exchange

V = ssl.TLSVersion
SEND_PATH = f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
FORM = {"To": "+37255512367", "From": "MyBank", "Body": "hello"}
DEFAULT_HSTS = "max-age=31536000; includeSubDomains"


# -- helpers ---------------------------------------------------------------------------------


def tls_client(
    ca: trustme.CA,
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A verifying client context that trusts the test CA, restricted as asked."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated, on purpose
        if ciphers is not None:
            ctx.set_ciphers(ciphers)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


async def handshake(port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> ssl.SSLObject:
    """Complete a TLS handshake with the listener and return the client's view of it."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), timeout=5
    )
    ssl_object = writer.get_extra_info("ssl_object")
    writer.close()
    return ssl_object


async def assert_refused(port: int, ctx: ssl.SSLContext) -> None:
    """The server aborts the handshake: the client sees an SSL error or a reset, never a session."""
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        await handshake(port, ctx)


def serial_of_der(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number


def serial_of(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


def write_pair(
    leaf: trustme.LeafCert, cert: Path, key: Path, key_from: trustme.LeafCert | None = None
) -> None:
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes((key_from or leaf).private_key_pem.bytes())


def own_pair(
    ca: trustme.CA, folder: Path, key_type: trustme.KeyType = trustme.KeyType.ECDSA
) -> dict[str, Any]:
    """A certificate pair in files this test owns (the shared PKI files are never rewritten)."""
    folder.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1", key_type=key_type)
    cert, key = folder / "server.pem", folder / "server.key"
    write_pair(leaf, cert, key)
    return {
        "leaf": leaf,
        "cert": cert,
        "key": key,
        "settings": {"cert_file": str(cert), "key_file": str(key)},
    }


def gateway_auth() -> str:
    return basic(CLIENT_USER, CLIENT_PASSWORD)


def error_code(payload: Any) -> str:
    return payload["error"]["code"]


def assert_security_headers(headers: Any, hsts: str = DEFAULT_HSTS) -> None:
    assert headers["Strict-Transport-Security"] == hsts
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert len(headers.get("X-Request-ID", "")) >= 16
    assert headers.get("Server") == "smsgw"  # no Python or aiohttp version banner


# -- TLS versions and ciphers ----------------------------------------------------------------


async def test_tls11_client_is_refused_although_it_can_speak_tls11(gateway, ca):
    client = tls_client(ca, minimum=V.TLSv1_1, maximum=V.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")

    # Control: the very same client context completes a TLS 1.1 handshake with a server that
    # allows 1.1, so the refusal below comes from the gateway and not from the client.
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive.minimum_version = V.TLSv1_1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.load_cert_chain(gateway.pki["gateway_cert"], gateway.pki["gateway_key"])
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=permissive)
    try:
        try:
            version = (await handshake(server.sockets[0].getsockname()[1], client)).version()
        except (ssl.SSLError, ConnectionResetError) as exc:
            pytest.skip(f"this OpenSSL build cannot offer TLS 1.1 at all ({exc})")
        assert version == "TLSv1.1"
    finally:
        server.close()
        await server.wait_closed()

    await assert_refused(gateway.running.public_port, client)


async def test_tls12_aead_ecdhe_handshake_and_request_succeed(gateway, ca, pki):
    ssl_object = await handshake(gateway.running.public_port, tls_client(ca, maximum=V.TLSv1_2))
    assert ssl_object.version() == "TLSv1.2"
    cipher = ssl_object.cipher()[0]
    assert cipher.startswith("ECDHE-")
    assert "GCM" in cipher or "CHACHA20" in cipher

    # A real client pinned to TLS 1.2 gets its SMS sent, and the access log shows the version.
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, maximum_version=V.TLSv1_2))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            gateway.base + SEND_PATH, data=FORM, headers={"Authorization": gateway_auth()}
        ) as response:
            assert response.status == 201
    assert [r["tls"] for r in gateway.access()] == ["TLSv1.2"]


async def test_tls12_server_picks_aead_when_client_also_offers_cbc(gateway, ca):
    client = tls_client(
        ca,
        maximum=V.TLSv1_2,
        ciphers="ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-GCM-SHA256:"
        "ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
    )
    cipher = (await handshake(gateway.running.public_port, client)).cipher()[0]
    assert cipher.startswith("ECDHE-") and "GCM" in cipher


@pytest.mark.parametrize(
    "ciphers",
    [
        pytest.param("AES128-GCM-SHA256:AES256-GCM-SHA384", id="rsa-kx-aead"),
        pytest.param("AES128-SHA:AES256-SHA:@SECLEVEL=0", id="rsa-kx-cbc"),
        pytest.param("ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384:@SECLEVEL=0", id="ecdhe-cbc"),
    ],
)
async def test_tls12_without_ecdhe_aead_is_refused(make_gateway, vendor, ca, tmp_path, ciphers):
    # An RSA certificate, so that RSA key exchange and ECDHE-RSA suites would be usable at all:
    # only the gateway's cipher policy can be the reason for the refusal.
    pair = own_pair(ca, tmp_path / "rsa", trustme.KeyType.RSA)
    gw = await make_gateway(vendor.base_url, settings={"server": {"tls": pair["settings"]}})
    port = gw.running.public_port

    await assert_refused(port, tls_client(ca, maximum=V.TLSv1_2, ciphers=ciphers))

    control = tls_client(ca, maximum=V.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    assert (await handshake(port, control)).cipher()[0] == "ECDHE-RSA-AES128-GCM-SHA256"


async def test_ecdhe_cbc_refused_with_ecdsa_certificate(gateway, ca):
    port = gateway.running.public_port
    await assert_refused(
        port, tls_client(ca, maximum=V.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")
    )
    control = tls_client(ca, maximum=V.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert (await handshake(port, control)).cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


async def test_min_version_13_refuses_tls12_client(make_gateway, vendor, ca, pki):
    gw = await make_gateway(vendor.base_url, settings={"server": {"tls": {"min_version": "1.3"}}})
    port = gw.running.public_port

    await assert_refused(port, tls_client(ca, maximum=V.TLSv1_2))
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki, maximum_version=V.TLSv1_2))
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientError):
            await session.post(gw.base + gw.send_path, data=FORM, headers={"Authorization": gateway_auth()})
    assert vendor.received == []

    assert (await handshake(port, tls_client(ca))).version() == "TLSv1.3"
    response = await gw.send()
    assert response.status == 201
    assert [r["tls"] for r in gw.access()] == ["TLSv1.3"]


# -- HSTS and the security headers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("hsts", "expected"),
    [
        pytest.param({}, DEFAULT_HSTS, id="default"),
        pytest.param(
            {"max_age_s": 63072000, "preload": True},
            "max-age=63072000; includeSubDomains; preload",
            id="preload",
        ),
        pytest.param({"max_age_s": 600, "include_subdomains": False}, "max-age=600", id="short"),
    ],
)
async def test_security_headers_on_every_public_answer(make_gateway, vendor, hsts, expected):
    gw = await make_gateway(vendor.base_url, settings={"hsts": hsts} if hsts else None)

    not_found = await gw.send(path="/nope")
    assert not_found.status == 404
    assert error_code(await not_found.json()) == "route_not_found"
    wrong_method = await gw.send(method="GET")
    assert wrong_method.status == 405
    unauthenticated = await gw.send(auth=basic(CLIENT_USER, "wrong"))
    assert unauthenticated.status == 401
    sent = await gw.send()
    assert sent.status == 201

    request_ids = set()
    for response in (not_found, wrong_method, unauthenticated, sent):
        assert_security_headers(response.headers, expected)
        request_ids.add(response.headers["X-Request-ID"])
    assert len(request_ids) == 4
    # The request id in the error body is the one in the header, and the one in the access log.
    assert (await not_found.json())["error"]["request_id"] == not_found.headers["X-Request-ID"]
    assert {r["request_id"] for r in gw.access()} == request_ids


@pytest.mark.parametrize(
    ("hsts", "expected"),
    [
        pytest.param({}, DEFAULT_HSTS, id="default"),
        pytest.param(
            {"max_age_s": 63072000, "preload": True},
            "max-age=63072000; includeSubDomains; preload",
            id="preload",
        ),
    ],
)
async def test_admin_answers_carry_the_security_headers(make_gateway, vendor, hsts, expected):
    gw = await make_gateway(vendor.base_url, settings={"hsts": hsts} if hsts else None)
    for path, status in (("/healthz", 200), ("/readyz", 200), ("/nope", 404)):
        async with gw.session.get(gw.admin + path) as response:
            assert response.status == status
            assert_security_headers(response.headers, expected)
            if status == 404:
                error = (await response.json())["error"]
                assert error["code"] == "route_not_found"
                assert error["request_id"] == response.headers["X-Request-ID"]


# -- plain HTTP ------------------------------------------------------------------------------


async def test_plain_http_listener_rejects(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, settings={"server": {"http": {"listen": "127.0.0.1:0"}}})
    assert gw.running.http_port is not None
    plain = f"http://127.0.0.1:{gw.running.http_port}"
    for method in ("GET", "POST", "HEAD"):
        async with gw.session.request(
            method,
            plain + gw.send_path,
            data=FORM if method == "POST" else None,
            headers={"Authorization": gateway_auth()},
            allow_redirects=False,
        ) as response:
            assert response.status == 403
            assert_security_headers(response.headers)
            if method != "HEAD":
                assert error_code(await response.json()) == "tls_required"
    assert vendor.received == []
    assert gw.audit() == []
    assert [(r["status"], r["reason"], r["tls"]) for r in gw.access()] == [(403, "tls_required", None)] * 3


@pytest.mark.parametrize("public_url", ["", "https://sms-gw.example.com"])
async def test_plain_http_listener_redirects_get_and_head_only(make_gateway, vendor, public_url):
    settings: dict[str, Any] = {"server": {"http": {"listen": "127.0.0.1:0", "action": "redirect"}}}
    if public_url:
        settings["server"]["public_url"] = public_url
    gw = await make_gateway(vendor.base_url, settings=settings)
    plain = f"http://127.0.0.1:{gw.running.http_port}"
    origin = public_url or f"https://127.0.0.1:{gw.running.public_port}"

    for method in ("GET", "HEAD"):
        async with gw.session.request(
            method, plain + "/status/check?x=1&y=2", allow_redirects=False
        ) as response:
            assert response.status == 308
            assert response.headers["Location"] == origin + "/status/check?x=1&y=2"
            assert_security_headers(response.headers)

    async with gw.session.post(
        plain + gw.send_path, data=FORM, headers={"Authorization": gateway_auth()}, allow_redirects=False
    ) as response:
        assert response.status == 403
        assert "Location" not in response.headers
        assert error_code(await response.json()) == "tls_required"
        assert_security_headers(response.headers)
    assert vendor.received == []

    if not public_url:
        # The redirect target is the real TLS listener: following it answers over HTTPS.
        async with gw.session.get(plain + gw.send_path) as followed:
            assert followed.status == 405
            assert followed.url.scheme == "https"
            assert followed.url.port == gw.running.public_port


async def test_plain_http_to_tls_port_gets_no_http_answer(gateway):
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    answer = await raw_exchange(gateway.running.public_port, request)
    assert not answer.startswith(b"HTTP/")
    assert b"HTTP/1." not in answer
    assert gateway.access() == []


# -- offloaded TLS ---------------------------------------------------------------------------


def offloaded(trusted: list[str], **server: Any) -> dict[str, Any]:
    return {"server": {"tls": {"mode": "offloaded"}, "trusted_proxies": trusted, **server}}


async def post_plain(gw, headers: dict[str, str] | list[tuple[str, str]]) -> aiohttp.ClientResponse:
    hdrs = [("Authorization", gateway_auth()), *(headers.items() if isinstance(headers, dict) else headers)]
    url = f"http://127.0.0.1:{gw.running.public_port}{gw.send_path}"
    response = await gw.session.post(url, data=FORM, headers=hdrs)
    await response.read()
    return response


async def test_offloaded_needs_forwarded_proto_https_from_trusted_proxy(make_gateway, vendor, ca):
    gw = await make_gateway(vendor.base_url, settings=offloaded(["127.0.0.1/32"]))
    port = gw.running.public_port

    # The public listener speaks plain HTTP in this mode.
    await assert_refused(port, tls_client(ca))

    refused = await post_plain(gw, {})
    assert refused.status == 403
    assert error_code(await refused.json()) == "tls_required"
    assert_security_headers(refused.headers)
    for proto in ("http", ""):
        answer = await post_plain(gw, {"X-Forwarded-Proto": proto})
        assert answer.status == 403, proto
    # Two values (one header with a list, or the header twice): refused, not guessed at.
    for twice in ([("X-Forwarded-Proto", "https, http")], [("X-Forwarded-Proto", "https")] * 2):
        answer = await post_plain(gw, twice)
        assert answer.status == 400, twice
        assert error_code(await answer.json()) == "bad_request"
    assert vendor.received == []

    accepted = await post_plain(gw, {"X-Forwarded-Proto": "https"})
    assert accepted.status == 201
    assert_security_headers(accepted.headers)
    assert len(vendor.received) == 1


async def test_offloaded_ignores_forwarded_proto_from_untrusted_peer(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, settings=offloaded(["10.0.0.0/8"]))
    answer = await post_plain(gw, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.1.1"})
    assert answer.status == 403
    assert error_code(await answer.json()) == "tls_required"
    assert vendor.received == []


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "status", "client_ip"),
    [
        pytest.param(["127.0.0.1/32"], "10.9.9.9, 198.51.100.7", 201, "198.51.100.7", id="rightmost-allowed"),
        pytest.param(["127.0.0.1/32"], "198.51.100.7, 10.9.9.9", 403, "10.9.9.9", id="forged-leftmost"),
        pytest.param(
            ["127.0.0.1/32", "10.0.0.0/8"],
            "203.0.113.1, 198.51.100.7, 10.2.2.2",
            201,
            "198.51.100.7",
            id="skip-trusted-hops",
        ),
        pytest.param(["127.0.0.1/32"], "", 403, "127.0.0.1", id="no-xff-uses-peer"),
    ],
)
async def test_offloaded_client_ip_is_rightmost_untrusted_hop(
    make_gateway, vendor, trusted, forwarded_for, status, client_ip
):
    gw = await make_gateway(
        vendor.base_url, settings=offloaded(trusted), policies=policy(route={"ip_allow": ["198.51.100.0/24"]})
    )
    headers = {"X-Forwarded-Proto": "https"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    answer = await post_plain(gw, headers)
    assert answer.status == status
    if status == 403:
        assert error_code(await answer.json()) == "ip_not_allowed"
    (first, *_) = gw.audit()
    assert first["ip"] == client_ip
    assert gw.access()[-1]["ip"] == client_ip


# -- mutual TLS ------------------------------------------------------------------------------


async def test_mutual_tls_requires_a_client_certificate(make_gateway, vendor, ca, pki):
    gw = await make_gateway(vendor.base_url, settings={"server": {"tls": {"client_ca_file": str(pki["ca"])}}})
    port = gw.running.public_port

    # TLS 1.2: the missing certificate fails the handshake itself.
    await assert_refused(port, tls_client(ca, maximum=V.TLSv1_2))

    # A real client without a certificate (TLS 1.3 by default) gets no HTTP answer.
    with pytest.raises(aiohttp.ClientError):
        await gw.send()

    # A certificate from another CA is refused too.
    stranger = trustme.CA().issue_cert("billing-client")
    foreign = client_ssl(pki)
    stranger.configure_cert(foreign)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=foreign)) as session:
        with pytest.raises(aiohttp.ClientError):
            await session.post(gw.base + gw.send_path, data=FORM, headers={"Authorization": gateway_auth()})
    assert vendor.received == []

    with_cert = client_ssl(pki)
    ca.issue_cert("billing-client").configure_cert(with_cert)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=with_cert)) as session:
        async with session.post(
            gw.base + gw.send_path, data=FORM, headers={"Authorization": gateway_auth()}
        ) as response:
            assert response.status == 201
    assert len(vendor.received) == 1

    with_cert12 = tls_client(ca, maximum=V.TLSv1_2)
    ca.issue_cert("billing-client").configure_cert(with_cert12)
    assert (await handshake(port, with_cert12)).version() == "TLSv1.2"


# -- certificate reload ----------------------------------------------------------------------


async def test_reload_certificate_presents_new_certificate(make_gateway, vendor, ca, tmp_path):
    pair = own_pair(ca, tmp_path / "reload")
    gw = await make_gateway(vendor.base_url, settings={"server": {"tls": pair["settings"]}})
    port = gw.running.public_port
    before = await handshake(port, tls_client(ca))
    assert serial_of_der(before.getpeercert(binary_form=True)) == serial_of(pair["leaf"])

    fresh = ca.issue_cert("localhost", "127.0.0.1", "::1")
    write_pair(fresh, pair["cert"], pair["key"])
    gw.running.reload_certificate()

    for ctx in (tls_client(ca), tls_client(ca, maximum=V.TLSv1_2)):
        after = await handshake(port, ctx)
        assert serial_of_der(after.getpeercert(binary_form=True)) == serial_of(fresh)
    response = await gw.send()
    assert response.status == 201

    # An unreadable certificate file: the reload is refused and the current pair stays in use.
    pair["cert"].write_text("not a certificate")
    gw.running.reload_certificate()
    kept = await handshake(port, tls_client(ca))
    assert serial_of_der(kept.getpeercert(binary_form=True)) == serial_of(fresh)


async def test_reload_with_mismatched_key_keeps_serving_old_certificate(make_gateway, vendor, ca, tmp_path):
    pair = own_pair(ca, tmp_path / "reload")
    gw = await make_gateway(vendor.base_url, settings={"server": {"tls": pair["settings"]}})
    # A half-finished rotation: the new certificate is in place, the key file is still the old one.
    write_pair(ca.issue_cert("localhost", "127.0.0.1"), pair["cert"], pair["key"], key_from=pair["leaf"])
    gw.running.reload_certificate()

    kept = await handshake(gw.running.public_port, tls_client(ca))
    assert serial_of_der(kept.getpeercert(binary_form=True)) == serial_of(pair["leaf"])


async def test_reload_to_other_key_type_stops_presenting_old_certificate(make_gateway, vendor, ca, tmp_path):
    pair = own_pair(ca, tmp_path / "reload")
    gw = await make_gateway(vendor.base_url, settings={"server": {"tls": pair["settings"]}})
    fresh = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)
    write_pair(fresh, pair["cert"], pair["key"])
    gw.running.reload_certificate()

    after = await handshake(gw.running.public_port, tls_client(ca))
    assert serial_of_der(after.getpeercert(binary_form=True)) == serial_of(fresh)


async def test_reload_without_tls_is_a_no_op(make_gateway, vendor):
    gw = await make_gateway(vendor.base_url, settings=offloaded(["127.0.0.1/32"]))
    gw.running.reload_certificate()
    answer = await post_plain(gw, {"X-Forwarded-Proto": "https"})
    assert answer.status == 201
