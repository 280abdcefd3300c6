"""Mutual TLS as a credential (gateway/identity/mtls.py): the verified client certificate names
the client through ``tls_subject`` (its subject CN or a subjectAltName)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from tests.conftest import CLIENT_USER, Gateway, GatewayFactory, Vendor, client_ssl, error_of, policy

FORM = {"To": "+37255512367", "From": "MyBank", "Body": "hello"}
PATH = f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"


def mtls_settings(pki: dict[str, Path]) -> dict[str, Any]:
    return {"server": {"tls": {"client_ca_file": str(pki["ca"])}}}


def two_clients() -> dict[str, Any]:
    doc = policy(route={"auth": ["basic", "mtls"]}, client={"tls_subject": "billing-client"})
    doc["default"]["client"].append(
        {"id": "reports", "scopes": ["sms:send"], "countries": ["*"], "tls_subject": "reports.svc.internal"}
    )
    return doc


async def send_with(gw: Gateway, ctx: ssl.SSLContext | None, **headers: str) -> tuple[int, str | None, dict]:
    connector = aiohttp.TCPConnector(ssl=ctx if ctx is not None else client_ssl(gw.pki))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(gw.base + PATH, data=FORM, headers=headers) as response:
            payload = await response.read()
            request_id = response.headers["X-Request-ID"]
    code = error_of(payload)["code"] if response.status >= 400 else None
    record = next(r for r in gw.audit() if r["request_id"] == request_id and r["event"] == "request")
    return response.status, code, record


def certified(
    pki: dict[str, Path], ca: trustme.CA, *identities: str, common_name: str | None = None
) -> ssl.SSLContext:
    ctx = client_ssl(pki)
    ca.issue_cert(*identities, common_name=common_name).configure_cert(ctx)
    return ctx


async def test_the_certificate_names_its_client(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path], ca: trustme.CA
) -> None:
    gw = await make_gateway(vendor.base_url, settings=mtls_settings(pki), policies=two_clients())
    # by subject common name
    status, _, record = await send_with(gw, certified(pki, ca, "host.example", common_name="billing-client"))
    assert (status, record["client"], record["auth"], record["key_id"]) == (
        201,
        "billing",
        "mtls",
        "billing-client",
    )
    # by a subjectAltName DNS entry, compared without case
    status, _, record = await send_with(gw, certified(pki, ca, "Reports.SVC.internal", common_name="x"))
    assert (status, record["client"]) == (201, "reports")
    # a certificate from the right CA that names no client
    status, code, record = await send_with(gw, certified(pki, ca, "stranger.example", common_name="stranger"))
    assert (status, code, record["detail"]) == (401, "unauthenticated", "unknown_certificate")
    # one that names two clients is never a guess
    both = certified(pki, ca, "reports.svc.internal", common_name="billing-client")
    status, _, record = await send_with(gw, both)
    assert (status, record["detail"]) == (401, "ambiguous_certificate")
    assert len(vendor.received) == 2


async def test_no_certificate_no_handshake(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path]
) -> None:
    gw = await make_gateway(vendor.base_url, settings=mtls_settings(pki), policies=two_clients())
    with pytest.raises(aiohttp.ClientError):
        await send_with(gw, None)
    assert vendor.received == [] and gw.audit() == []


async def test_a_credential_in_the_request_decides_before_the_certificate(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path], ca: trustme.CA
) -> None:
    """auth = ["basic", "mtls"]: basic credentials, when sent, name the client (and must be valid)."""
    from tests.conftest import CLIENT_PASSWORD, basic

    gw = await make_gateway(vendor.base_url, settings=mtls_settings(pki), policies=two_clients())
    ctx = certified(pki, ca, "reports.svc.internal", common_name="x")
    status, _, record = await send_with(gw, ctx, Authorization=basic(CLIENT_USER, CLIENT_PASSWORD))
    assert (status, record["client"], record["auth"]) == (201, "billing", "basic")
    status, _, record = await send_with(gw, ctx, Authorization=basic(CLIENT_USER, "wrong"))
    assert (status, record["detail"]) == (401, "bad_credentials")
