"""RFC 9421 request signatures (gateway/identity/hmac.py) and the client signer (gateway/core/signing.py).

Signatures are made by the independent ``http-message-signatures`` package and must verify at
the gateway; signatures made by ``gateway.core.signing`` must verify with that package. Every way a
signature can be wrong is a 401 with its own audit ``detail``; a replay is refused even though
the signature itself is perfect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256
from multidict import CIMultiDict

from gateway.core.signing import Signer, sign, target_uri
from gateway.storage.service import StorageUnavailable
from tests.conftest import CLIENT_USER, Gateway, GatewayFactory, Vendor, error_of, policy
from tests.tokens import HMAC_KEY_ID, HMAC_SECRET, library_signed

FORM = urlencode({"To": "+37255512367", "From": "MyBank", "Body": "hello"}).encode()
PATH = f"/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
OLD_KEY_ID = "billing-2026-08"
OLD_SECRET = "Oq9x2PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Z3"
EXPIRED_KEY_ID = "billing-2026-05"
EXPIRED_SECRET = "Xp1x2PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Q7"


def hmac_keys() -> list[dict[str, Any]]:
    today = datetime.now(UTC).date()
    return [
        {
            "id": HMAC_KEY_ID,
            "secret": "env:SMSGW_TEST_HMAC",
            "created": today,
            "expires": today + timedelta(60),
        },
        {"id": OLD_KEY_ID, "secret": "env:SMSGW_TEST_HMAC_OLD", "expires": today + timedelta(20)},
        {"id": EXPIRED_KEY_ID, "secret": "env:SMSGW_TEST_HMAC_EXPIRED", "expires": today},
    ]


@pytest.fixture
def hmac_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSGW_TEST_HMAC", HMAC_SECRET)
    monkeypatch.setenv("SMSGW_TEST_HMAC_OLD", OLD_SECRET)
    monkeypatch.setenv("SMSGW_TEST_HMAC_EXPIRED", EXPIRED_SECRET)


async def signed_gateway(make_gateway: GatewayFactory, vendor: Vendor, **settings: Any) -> Gateway:
    return await make_gateway(
        vendor.base_url,
        settings=settings,
        policies=policy(route={"auth": ["hmac", "basic"]}, client={"hmac_keys": hmac_keys()}),
    )


@dataclass
class Answer:
    status: int
    code: str | None
    detail: str | None  # the audit record's detail for this request


async def send(
    gw: Gateway,
    headers: dict[str, str],
    body: bytes = FORM,
    *,
    path: str = PATH,
    method: str = "POST",
    host: str | None = None,
) -> Answer:
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    if host is not None:
        hdrs["Host"] = host
    async with gw.session.request(method, gw.base + path, data=body, headers=hdrs) as response:
        payload = await response.read()
        request_id = response.headers["X-Request-ID"]
    code = error_of(payload)["code"] if response.status >= 400 else None
    record = next(
        (r for r in gw.audit() if r.get("request_id") == request_id and r["event"] == "request"), {}
    )
    return Answer(response.status, code, record.get("detail"))


def url(gw: Gateway, path: str = PATH) -> str:
    return gw.base + path


# --------------------------------------------------------------------------- both libraries agree


async def test_signature_from_the_independent_library_is_accepted(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None
) -> None:
    gw = await signed_gateway(make_gateway, vendor)
    answer = await send(gw, library_signed("POST", url(gw), FORM))
    assert (answer.status, answer.code) == (201, None)
    record = next(r for r in gw.audit() if r["event"] == "request")
    assert (record["client"], record["auth"], record["key_id"]) == ("billing", "hmac", HMAC_KEY_ID)
    # the client's signature headers never reach the vendor; the body arrives unchanged
    (seen,) = vendor.received
    assert "Signature" not in seen.headers and "Signature-Input" not in seen.headers


async def test_signature_from_gateway_signing_is_accepted_and_rotation_works(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None
) -> None:
    gw = await signed_gateway(make_gateway, vendor)
    for key_id, secret in ((HMAC_KEY_ID, HMAC_SECRET), (OLD_KEY_ID, OLD_SECRET)):  # both keys live
        answer = await send(gw, Signer(key_id, secret).headers("POST", url(gw), FORM))
        assert answer.status == 201, key_id
    assert [r["key_id"] for r in gw.audit() if r["event"] == "request"] == [HMAC_KEY_ID, OLD_KEY_ID]
    answer = await send(gw, sign("POST", url(gw), FORM, key_id=EXPIRED_KEY_ID, secret=EXPIRED_SECRET))
    assert (answer.status, answer.code, answer.detail) == (401, "unauthenticated", "key_expired")


async def test_requests_with_the_signer_as_auth_hook(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None
) -> None:
    """The README's requests example: the signer signs the prepared request that goes out."""
    import asyncio

    import requests

    # A vendor API that defines a query parameter (the signature covers the query too).
    generic = {"format": "form", "recipient": "To", "sender": "From", "body": "Body", "query": ["Tag"]}
    gw = await signed_gateway(make_gateway, vendor, upstream={"provider": "generic", "generic": generic})
    signer = Signer(HMAC_KEY_ID, HMAC_SECRET)
    form = {"To": "+37255512367", "From": "MyBank", "Body": "hello there"}
    response = await asyncio.to_thread(
        requests.post, url(gw) + "?Tag=a%20b", data=form, auth=signer, verify=str(gw.pki["ca"]), timeout=10
    )
    assert response.status_code == 201, response.text
    assert len(vendor.received) == 1


@dataclass
class _Message:
    method: str
    url: str
    headers: CIMultiDict[str]


@pytest.mark.parametrize(
    "target",
    [
        "https://sms-gw.example.com/2010-04-01/Accounts/AC1/Messages.json",
        "https://127.0.0.1:8443/v1/send?dry_run=1&x=%20y",
        "https://[::1]:9443/",
    ],
)
def test_gateway_signing_verifies_with_the_independent_library(target: str) -> None:
    body = b'{"to": "+37255512367", "text": "hello"}'
    headers = CIMultiDict(sign("POST", target, body, key_id=HMAC_KEY_ID, secret=HMAC_SECRET))
    verifier = HTTPMessageVerifier(
        signature_algorithm=HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={HMAC_KEY_ID: HMAC_SECRET.encode()}, private_keys={}),
    )
    (result,) = verifier.verify(
        _Message("POST", target, headers),
        require_components=("@method", "@target-uri", "content-digest"),
        body=body,
    )
    assert result.parameters["keyid"] == HMAC_KEY_ID
    assert result.body == body
    with pytest.raises(Exception, match="does not match"):  # the digest binds the body
        verifier.verify(_Message("POST", target, headers), body=body + b" ")


def test_target_uri_is_spelt_the_way_the_gateway_rebuilds_it() -> None:
    assert target_uri("HTTPS://GW.Example.COM:443/A/b?Q=1") == "https://gw.example.com/A/b?Q=1"
    assert target_uri("https://gw.example.com:8443") == "https://gw.example.com:8443/"
    for bad in ("http://gw.example.com/x", "/relative", "https://user:pw@gw.example.com/"):
        with pytest.raises(ValueError):
            target_uri(bad)


def test_signer_never_shows_its_secret() -> None:
    signer = Signer(HMAC_KEY_ID, HMAC_SECRET)
    assert HMAC_SECRET not in repr(signer) and HMAC_SECRET not in str(signer)


# --------------------------------------------------------------------------- what is refused


async def test_replay_skew_tampering_and_missing_parts_are_401(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None
) -> None:
    gw = await signed_gateway(make_gateway, vendor)
    now = int(time.time())
    good = library_signed("POST", url(gw), FORM)
    other = f"/2010-04-01/Accounts/{CLIENT_USER}x/Messages.json"

    cases: list[tuple[str, Any, str]] = [
        ("first use", lambda: send(gw, good), ""),
        ("replayed", lambda: send(gw, good), "replayed"),
        (
            "created too old",
            lambda: send(gw, library_signed("POST", url(gw), FORM, created=now - 400)),
            "clock_skew",
        ),
        (
            "created ahead",
            lambda: send(gw, library_signed("POST", url(gw), FORM, created=now + 400)),
            "clock_skew",
        ),
        ("method", lambda: send(gw, library_signed("PUT", url(gw), FORM)), "bad_signature"),
        ("path", lambda: send(gw, library_signed("POST", url(gw, other), FORM)), "bad_signature"),
        (
            "query",
            lambda: send(gw, library_signed("POST", url(gw) + "?a=1", FORM), path=PATH + "?a=2"),
            "bad_signature",
        ),
        (
            "host",
            lambda: send(gw, library_signed("POST", url(gw), FORM), host="evil.example.com"),
            "bad_signature",
        ),
        (
            "body",
            lambda: send(gw, library_signed("POST", url(gw), FORM), FORM.replace(b"hello", b"HELLO")),
            "digest_mismatch",
        ),
        (
            "digest swapped with the body",
            lambda: send(gw, {**library_signed("POST", url(gw), FORM), **_digest_of(b"x")}, b"x"),
            "bad_signature",
        ),
        (
            "no content-digest covered",
            lambda: send(gw, library_signed("POST", url(gw), FORM, with_digest=False)),
            "missing_component",
        ),
        (
            "no target-uri covered",
            lambda: send(gw, library_signed("POST", url(gw), FORM, components=("@method", "@path"))),
            "missing_component",
        ),
        (
            "no nonce",
            lambda: send(gw, _without_nonce(library_signed("POST", url(gw), FORM))),
            "missing_parameter",
        ),
        (
            "unknown key",
            lambda: send(gw, library_signed("POST", url(gw), FORM, key_id="nobody")),
            "unknown_key",
        ),
        (
            "wrong secret",
            lambda: send(gw, library_signed("POST", url(gw), FORM, secret=OLD_SECRET)),
            "bad_signature",
        ),
        (
            "alg",
            lambda: send(gw, _with_alg(library_signed("POST", url(gw), FORM), "rsa-pss-sha512")),
            "algorithm",
        ),
        (
            "garbage",
            lambda: send(gw, {"Signature-Input": "sig1=(((", "Signature": "sig1=:AA==:"}),
            "malformed",
        ),
        ("two labels", lambda: send(gw, _two_labels(library_signed("POST", url(gw), FORM))), "malformed"),
        ("signature only", lambda: send(gw, {"Signature": "sig1=:AA==:"}), "malformed"),
    ]
    results = {}
    for name, request, _ in cases:
        answer = await request()
        results[name] = (answer.status, answer.detail)
    expected = {name: (201, None) if not detail else (401, detail) for name, _, detail in cases}
    assert results == expected
    assert len(vendor.received) == 1
    refusal = [r for r in gw.audit() if r["decision"] == "deny"]
    assert all(r["reason"] == "unauthenticated" and r["client"] is None for r in refusal)


def _digest_of(body: bytes) -> dict[str, str]:
    from gateway.core.signing import content_digest

    return {"Content-Digest": content_digest(body)}


def _without_nonce(headers: dict[str, str]) -> dict[str, str]:
    value = headers["Signature-Input"]
    start = value.index(";nonce=")
    end = value.find(";", start + 1)
    return {**headers, "Signature-Input": value[:start] + (value[end:] if end != -1 else "")}


def _with_alg(headers: dict[str, str], alg: str) -> dict[str, str]:
    return {**headers, "Signature-Input": headers["Signature-Input"].replace("hmac-sha256", alg)}


def _two_labels(headers: dict[str, str]) -> dict[str, str]:
    params = headers["Signature-Input"].split("=", 1)[1]
    signature = headers["Signature"].split("=", 1)[1]
    return {
        **headers,
        "Signature-Input": f"{headers['Signature-Input']}, sig2={params}",
        "Signature": f"{headers['Signature']}, sig2={signature}",
    }


async def test_public_url_is_the_signed_origin(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None
) -> None:
    """Behind a load balancer (or to bind signatures to one name) the client signs the public URL."""
    gw = await signed_gateway(make_gateway, vendor, server={"public_url": "https://sms-gw.example.com"})
    public = "https://sms-gw.example.com" + PATH
    assert (await send(gw, sign("POST", public, FORM, key_id=HMAC_KEY_ID, secret=HMAC_SECRET))).status == 201
    local = await send(gw, sign("POST", url(gw), FORM, key_id=HMAC_KEY_ID, secret=HMAC_SECRET))
    assert (local.status, local.detail) == (401, "bad_signature")


# --------------------------------------------------------------------------- nonces in storage


class DownStorage:
    """A storage backend that cannot answer (Redis gone)."""

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float) -> bool:
        raise StorageUnavailable("down")

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("on_error", "status"), [("closed", 503), ("open", 201)])
async def test_nonce_storage_down_follows_on_error(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None, on_error: str, status: int
) -> None:
    gw = await signed_gateway(make_gateway, vendor, storage={"on_error": on_error})
    gw.running.services.storage.kv = DownStorage()  # type: ignore[assignment]
    answer = await send(gw, sign("POST", url(gw), FORM, key_id=HMAC_KEY_ID, secret=HMAC_SECRET))
    assert answer.status == status
    if on_error == "closed":
        assert (answer.code, answer.detail) == ("limiter_unavailable", "hmac_nonce")
    else:
        # One event for the outage, and the request that passed unchecked says so.
        events = [r for r in gw.audit() if r["event"] == "storage_unavailable"]
        assert [e["during"] for e in events] == ["hmac_nonce"]
        assert answer.detail == "nonce_skipped"


async def test_a_failed_signature_burns_no_nonce(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None
) -> None:
    """The nonce is stored only once the signature verified: a forger cannot spend it first."""
    gw = await signed_gateway(make_gateway, vendor)
    headers = sign("POST", url(gw), FORM, key_id=HMAC_KEY_ID, secret=HMAC_SECRET, nonce="n-0001")
    forged = {**headers, "Signature": "sig1=:" + "A" * 43 + "=:"}
    assert (await send(gw, forged)).detail == "bad_signature"
    assert (await send(gw, headers)).status == 201
