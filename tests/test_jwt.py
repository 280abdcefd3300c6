"""JWT bearer tokens (gateway/identity/jwt.py) and JWKS key sets (gateway/identity/jwks.py).

Tokens are made by joserfc, a library independent of the gateway's pyjwt. The key sets are served
by a real aiohttp server over TLS that counts its fetches.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway, GatewayFactory, Vendor, error_of, policy
from tests.tokens import (
    AUDIENCE,
    ISSUER,
    JWT_SECRET,
    SUBJECT,
    JwksServer,
    Keys,
    claims,
    hs256_with,
    public_jwk,
    token,
    unsigned,
)

FORM = {"To": "+37255512367", "From": "MyBank", "Body": "hello"}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def issuer(**extra: Any) -> dict[str, Any]:
    return {"issuer": ISSUER, "audience": AUDIENCE, "leeway_s": 0, **extra}


def jwt_policy(route: dict[str, Any] | None = None, client: dict[str, Any] | None = None) -> dict[str, Any]:
    return policy(
        route={"auth": ["jwt", "basic"], **(route or {})}, client={"jwt_subject": SUBJECT, **(client or {})}
    )


async def send(gw: Gateway, bearer: str) -> tuple[int, str | None, dict[str, Any]]:
    """Status, error code and the audit request record of one send with this token."""
    response = await gw.send(FORM, auth=f"Bearer {bearer}")
    payload = await response.read()
    code = error_of(payload)["code"] if response.status >= 400 else None
    request_id = response.headers["X-Request-ID"]
    record = next(r for r in gw.audit() if r["request_id"] == request_id and r["event"] == "request")
    if response.status == 401:
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="smsgw"')
    return response.status, code, record


# --------------------------------------------------------------------------- accepted


async def test_tokens_of_each_algorithm_from_an_independent_library(
    make_gateway: GatewayFactory, vendor: Vendor, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSGW_TEST_JWT_SECRET", JWT_SECRET)
    pems = keys.pem_files(tmp_path / "keys")
    issuers = [
        issuer(issuer="https://rsa.example.test/", public_key_file=str(pems["rsa"]), algorithms=["RS256"]),
        issuer(issuer="https://ec.example.test/", public_key_file=str(pems["ec"]), algorithms=["ES256"]),
        issuer(issuer="https://ed.example.test/", public_key_file=str(pems["ed"]), algorithms=["EdDSA"]),
        issuer(issuer="https://hs.example.test/", secret="env:SMSGW_TEST_JWT_SECRET", algorithms=["HS256"]),
    ]
    gw = await make_gateway(
        vendor.base_url, settings={"auth": {"jwt": {"issuers": issuers}}}, policies=jwt_policy()
    )
    made = {
        "RS256": token(keys.rsa, "RS256", claims(iss="https://rsa.example.test/"), "rsa-1"),
        "ES256": token(keys.ec, "ES256", claims(iss="https://ec.example.test/"), "ec-1"),
        "EdDSA": token(keys.ed, "EdDSA", claims(iss="https://ed.example.test/"), "ed-1"),
        "HS256": token(keys.hs, "HS256", claims(iss="https://hs.example.test/")),
    }
    for alg, bearer in made.items():
        status, _, record = await send(gw, bearer)
        assert (status, record["client"], record["auth"]) == (201, "billing", "jwt"), alg
    assert len(vendor.received) == 4
    # an issuer's token is not accepted under another issuer's name, even with a known key type
    status, _, record = await send(
        gw, token(keys.ec, "ES256", claims(iss="https://rsa.example.test/"), "ec-1")
    )
    assert (status, record["detail"]) == (401, "algorithm")


async def test_client_named_by_client_id_when_there_is_no_sub_and_unknown_subjects_refused(
    make_gateway: GatewayFactory, vendor: Vendor, keys: Keys, tmp_path: Path
) -> None:
    pems = keys.pem_files(tmp_path / "keys")
    settings = {
        "auth": {"jwt": {"issuers": [issuer(public_key_file=str(pems["rsa"]), algorithms=["RS256"])]}}
    }
    gw = await make_gateway(vendor.base_url, settings=settings, policies=jwt_policy())
    assert (await send(gw, token(keys.rsa, "RS256", claims(sub=None, client_id=SUBJECT))))[0] == 201
    assert (await send(gw, token(keys.rsa, "RS256", claims(sub=None, azp=SUBJECT))))[0] == 201
    status, _, record = await send(gw, token(keys.rsa, "RS256", claims(sub="someone-else")))
    assert (status, record["detail"], record["client"]) == (401, "unknown_subject", None)


async def test_token_scopes_narrow_the_client(
    make_gateway: GatewayFactory, vendor: Vendor, keys: Keys, tmp_path: Path
) -> None:
    pems = keys.pem_files(tmp_path / "keys")
    settings = {
        "auth": {"jwt": {"issuers": [issuer(public_key_file=str(pems["rsa"]), algorithms=["RS256"])]}}
    }
    gw = await make_gateway(
        vendor.base_url, settings=settings, policies=jwt_policy(client={"scopes": ["sms:send", "otp:send"]})
    )
    cases = [
        (claims(scope="otp:send"), 403),
        (claims(scp=["otp:send"]), 403),
        (claims(scope="sms:send otp:send"), 201),
        (claims(scp=["sms:send"]), 201),
        (claims(), 201),  # no scope claim: the client's own scopes
    ]
    for payload, expected in cases:
        status, code, record = await send(gw, token(keys.rsa, "RS256", payload))
        assert status == expected, payload
        if expected == 403:
            assert (code, record["reason"], record["detail"]) == ("forbidden", "forbidden", "scope")
    # a scope the client itself lacks is not granted by the token
    limited = await make_gateway(
        vendor.base_url, settings=settings, policies=jwt_policy(client={"scopes": ["otp:send"]})
    )
    status, code, _ = await send(limited, token(keys.rsa, "RS256", claims(scope="sms:send")))
    assert (status, code) == (403, "forbidden")


# --------------------------------------------------------------------------- the attack suite


async def test_attacks_are_401(
    make_gateway: GatewayFactory, vendor: Vendor, keys: Keys, tmp_path: Path
) -> None:
    pems = keys.pem_files(tmp_path / "keys")
    settings = {
        "auth": {
            "jwt": {
                "max_token_bytes": 4096,
                "issuers": [issuer(public_key_file=str(pems["rsa"]), algorithms=["RS256", "PS256"])],
            }
        }
    }
    gw = await make_gateway(vendor.base_url, settings=settings, policies=jwt_policy())
    now = int(time.time())
    good = token(keys.rsa, "RS256", claims(), "rsa-1")
    head, payload, signature = good.split(".")
    other = token(keys.rsa, "RS256", claims(sub="admin"), "rsa-1").split(".")[1]
    stranger = Keys().rsa
    cases = {
        "alg none": (unsigned(claims()), "algorithm"),
        "alg None": (unsigned(claims(), alg="None"), "algorithm"),
        "HS256 keyed with the RS public key": (hs256_with(pems["rsa"].read_bytes(), claims()), "algorithm"),
        "expired": (token(keys.rsa, "RS256", claims(exp=now - 5)), "expired"),
        "nbf in the future": (token(keys.rsa, "RS256", claims(nbf=now + 60)), "not_yet_valid"),
        "iat in the future": (token(keys.rsa, "RS256", claims(iat=now + 60)), "not_yet_valid"),
        "wrong iss": (token(keys.rsa, "RS256", claims(iss="https://evil.example/")), "wrong_issuer"),
        "wrong aud": (token(keys.rsa, "RS256", claims(aud="another-service")), "wrong_audience"),
        "no aud": (token(keys.rsa, "RS256", claims(aud=None)), "missing_claim"),
        "missing exp": (token(keys.rsa, "RS256", claims(exp=None)), "missing_claim"),
        "tampered payload": (f"{head}.{other}.{signature}", "bad_signature"),
        "signed by another key": (token(stranger, "RS256", claims(), "rsa-1"), "bad_signature"),
        "ES256 with an RSA issuer": (token(keys.ec, "ES256", claims()), "algorithm"),
        "oversized": (token(keys.rsa, "RS256", claims(pad="x" * 5000)), "oversized"),
        "not a JWT": ("not.a.jwt", "malformed"),
        "two parts": (f"{head}.{payload}", "malformed"),
    }  # fmt: skip
    results = {}
    for name, (bearer, _) in cases.items():
        status, code, record = await send(gw, bearer)
        results[name] = (status, code, record["detail"])
    assert results == {name: (401, "unauthenticated", detail) for name, (_, detail) in cases.items()}
    assert vendor.received == []
    assert (await send(gw, good))[0] == 201  # and the real one still works


# --------------------------------------------------------------------------- JWKS over TLS


async def test_jwks_rotation_refetch_storm_and_revocation(
    make_gateway: GatewayFactory, vendor: Vendor, keys: Keys, pki: dict[str, Path]
) -> None:
    second = Keys().rsa  # the issuer's next key: kid "rsa-1" is reused by no one
    second_jwk = {**public_jwk(second), "kid": "rsa-2"}
    server = JwksServer([public_jwk(keys.rsa), public_jwk(keys.ec)])
    await server.start(pki)
    try:
        settings = {
            "auth": {
                "jwt": {
                    "issuers": [
                        issuer(
                            jwks_url=server.url, jwks_ca_file=str(pki["ca"]), algorithms=["RS256", "ES256"]
                        )
                    ]
                }
            }
        }
        gw = await make_gateway(vendor.base_url, settings=settings, policies=jwt_policy())
        assert server.fetches == 1  # fetched at start
        old = token(keys.rsa, "RS256", claims(), "rsa-1")
        assert (await send(gw, old))[0] == 201
        assert (await send(gw, token(keys.ec, "ES256", claims(), "ec-1")))[0] == 201
        assert server.fetches == 1

        # the issuer rotates: rsa-1 is gone, rsa-2 signs from now on
        server.keys = [second_jwk, public_jwk(keys.ec)]
        assert (await send(gw, token(second, "RS256", claims(), "rsa-2")))[0] == 201
        assert server.fetches == 2  # the unknown kid was fetched once, without a restart

        # a flood of made-up kids costs the issuer nothing more within the interval
        storm = [token(keys.rsa, "RS256", claims(), f"made-up-{i}") for i in range(40)]
        answers = await asyncio.gather(*(send(gw, bearer) for bearer in storm))
        assert {(status, record["detail"]) for status, _, record in answers} == {(401, "unknown_key")}
        assert server.fetches == 2

        # the token of the removed key is refused, though it verified (and was remembered) before
        status, _, record = await send(gw, old)
        assert (status, record["detail"]) == (401, "unknown_key")
    finally:
        await server.stop()


async def test_jwks_endpoint_down_keeps_the_last_good_keys(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    keys: Keys,
    pki: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = JwksServer([public_jwk(keys.rsa)])
    await server.start(pki)
    settings = {
        "auth": {
            "jwt": {
                "issuers": [issuer(jwks_url=server.url, jwks_ca_file=str(pki["ca"]), algorithms=["RS256"])]
            }
        }
    }
    gw = await make_gateway(vendor.base_url, settings=settings, policies=jwt_policy())
    await server.stop()  # the identity provider goes down
    # an unknown kid makes the gateway refetch, which fails: refused, and the known keys are kept
    status, _, record = await send(gw, token(keys.rsa, "RS256", claims(), "rsa-9"))
    assert (status, record["detail"]) == (401, "unknown_key")
    assert "keeping the last good key set" in caplog.text
    for i in range(3):  # fresh tokens (nothing remembered) signed with the known key still pass
        assert (await send(gw, token(keys.rsa, "RS256", claims(jti=f"t{i}"), "rsa-1")))[0] == 201


async def test_jwks_fetch_needs_a_trusted_certificate(
    make_gateway: GatewayFactory, vendor: Vendor, keys: Keys, pki: dict[str, Path]
) -> None:
    """Without jwks_ca_file the test CA is not trusted: no key set, so no token passes."""
    server = JwksServer([public_jwk(keys.rsa)])
    await server.start(pki)
    try:
        settings = {"auth": {"jwt": {"issuers": [issuer(jwks_url=server.url, algorithms=["RS256"])]}}}
        gw = await make_gateway(vendor.base_url, settings=settings, policies=jwt_policy())
        status, _, record = await send(gw, token(keys.rsa, "RS256", claims(), "rsa-1"))
        assert (status, record["detail"]) == (401, "unknown_key")
        assert server.fetches == 0  # the handshake failed before any request
    finally:
        await server.stop()


async def test_a_remembered_token_still_expires(
    make_gateway: GatewayFactory, vendor: Vendor, keys: Keys, tmp_path: Path
) -> None:
    pems = keys.pem_files(tmp_path / "keys")
    settings = {
        "auth": {"jwt": {"issuers": [issuer(public_key_file=str(pems["rsa"]), algorithms=["RS256"])]}}
    }
    gw = await make_gateway(vendor.base_url, settings=settings, policies=jwt_policy())
    short = token(keys.rsa, "RS256", claims(exp=int(time.time()) + 2))
    assert (await send(gw, short))[0] == 201
    assert (await send(gw, short))[0] == 201  # remembered
    await asyncio.sleep(max(0.0, int(time.time()) + 2 - time.time()) + 0.1)
    status, _, record = await send(gw, short)
    assert (status, record["detail"]) == (401, "expired")
