"""Identity and time: a signed request counts once, across gateway restarts too; RFC 9421
``expires`` is honoured; JWT time claims are numbers and a token's lifetime is bounded.

Everything goes through the real gateway on loopback; signatures come from the independent
``http-message-signatures`` package and tokens from joserfc (``tests/tokens.py``).
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256

from gateway.identity.hmac import time_refusal
from gateway.identity.jwt import claim_times_refusal
from tests.conftest import Gateway, GatewayFactory, RedisServer, Vendor, client_ssl, policy
from tests.test_hmac import FORM, PATH, hmac_keys, send
from tests.test_jwt import jwt_policy
from tests.test_jwt import send as send_token
from tests.test_workers import Served
from tests.test_workers import serve_workers as serve_workers  # a fixture: real `smsgw serve` processes
from tests.tokens import AUDIENCE, HMAC_KEY_ID, HMAC_SECRET, ISSUER, JWT_SECRET, claims, library_signed, token


@pytest.fixture
def hmac_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSGW_TEST_HMAC", HMAC_SECRET)
    monkeypatch.setenv("SMSGW_TEST_HMAC_OLD", "Oq9x2PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Z3")
    monkeypatch.setenv("SMSGW_TEST_HMAC_EXPIRED", "Xp1x2PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Q7")


HMAC_POLICIES = policy(route={"auth": ["hmac"]}, client={"hmac_keys": hmac_keys()})
#: The signed URL does not depend on the port a restarted gateway happens to get.
PUBLIC = "https://sms-gw.example.com"
URL = PUBLIC + PATH


async def next_second() -> None:
    """Wait (under a second) until the wall clock's second changes: a restart then happens in a
    later second than the signature it must refuse, as it would in production."""
    now = time.time()
    await asyncio.sleep(1.001 - (now - int(now)))


# --------------------------------------------------------------------------- replay across a restart


async def test_a_signed_request_replayed_after_a_restart_with_memory_storage_is_refused(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None
) -> None:
    settings = {"server": {"public_url": PUBLIC}}
    first = await make_gateway(vendor.base_url, settings=settings, policies=HMAC_POLICIES)
    folder = first.folder
    signed = library_signed("POST", URL, FORM)
    assert (await send(first, signed)).status == 201
    assert (await send(first, signed)).detail == "replayed"
    await next_second()
    await first.running.stop()

    # the same process folder and config, a new process: the nonce it stored is gone
    second = await make_gateway(vendor.base_url, settings=settings, policies=HMAC_POLICIES, folder=folder)
    answer = await send(second, signed)
    assert (answer.status, answer.code, answer.detail) == (401, "unauthenticated", "signed_before_start")
    assert len(vendor.received) == 1  # the vendor got the SMS once

    # a request signed now (after the start) goes through, once
    fresh = library_signed("POST", URL, FORM)
    assert (await send(second, fresh)).status == 201
    assert (await send(second, fresh)).detail == "replayed"
    assert len(vendor.received) == 2


async def signed_send(
    pki: dict[str, Path], served: Served, headers: dict[str, str]
) -> tuple[int, str | None]:
    """One signed send to a served process: its status and the audit detail it got."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(pki))) as session:
        url = f"https://127.0.0.1:{served.port}{PATH}"
        hdrs = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        async with session.post(url, data=FORM, headers=hdrs) as response:
            await response.read()
            request_id = response.headers["X-Request-ID"]
    record = next(r for r in served.records("audit.jsonl") if r.get("request_id") == request_id)
    return response.status, record.get("detail")


async def test_replay_after_restarting_the_smsgw_serve_process_is_refused(
    serve_workers: Any, vendor: Vendor, pki: dict[str, Path], hmac_env: None
) -> None:
    """The same, with a real ``smsgw serve`` process stopped by SIGTERM and started again."""
    settings = {"server": {"public_url": PUBLIC}}
    first = serve_workers(vendor.base_url, settings, HMAC_POLICIES, name="first")
    await asyncio.to_thread(first.wait_for, "listening on")
    signed = library_signed("POST", URL, FORM)
    assert await signed_send(pki, first, signed) == (201, None)
    await next_second()
    first.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.process.wait, 30) == 0

    second = serve_workers(vendor.base_url, settings, HMAC_POLICIES, name="second")
    await asyncio.to_thread(second.wait_for, "listening on")
    assert await signed_send(pki, second, signed) == (401, "signed_before_start")
    assert len(vendor.received) == 1
    assert await signed_send(pki, second, library_signed("POST", URL, FORM)) == (201, None)


async def test_with_redis_storage_nonces_outlive_the_restart(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None, redis_server: RedisServer
) -> None:
    settings = {
        "server": {"public_url": PUBLIC},
        "storage": {"url": redis_server.url, "key_prefix": f"t{secrets.token_hex(4)}:"},
    }
    first = await make_gateway(vendor.base_url, settings=settings, policies=HMAC_POLICIES)
    folder = first.folder
    used = library_signed("POST", URL, FORM)
    unused = library_signed("POST", URL, FORM)
    assert (await send(first, used)).status == 201
    await next_second()
    await first.running.stop()

    second = await make_gateway(vendor.base_url, settings=settings, policies=HMAC_POLICIES, folder=folder)
    # Redis remembers the nonce: the replay is refused as one ...
    answer = await send(second, used)
    assert (answer.status, answer.detail) == (401, "replayed")
    # ... and a request signed before the restart but never used is still good
    assert (await send(second, unused)).status == 201
    assert len(vendor.received) == 2


# --------------------------------------------------------------------------- RFC 9421 expires


def signed_with_expires(url: str, body: bytes, expires: int, created: int | None = None) -> dict[str, str]:
    """Headers by the independent library with an ``expires`` parameter."""
    prepared = requests.Request("POST", url, data=body).prepare()
    signer = HTTPMessageSigner(
        signature_algorithm=HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={HMAC_KEY_ID: HMAC_SECRET.encode()}),
    )
    utc = datetime.UTC
    signer.sign(
        prepared,
        key_id=HMAC_KEY_ID,
        nonce=secrets.token_urlsafe(16),
        created=datetime.datetime.fromtimestamp(created if created is not None else time.time(), utc),
        expires=datetime.datetime.fromtimestamp(expires, utc),
        covered_component_ids=("@method", "@target-uri"),
        body=body,
        include_alg=True,
        label="sig1",
    )
    return {n: prepared.headers[n] for n in ("Content-Digest", "Signature-Input", "Signature")}


async def test_a_signature_past_its_expires_is_refused(
    make_gateway: GatewayFactory, vendor: Vendor, hmac_env: None
) -> None:
    gw = await make_gateway(vendor.base_url, policies=HMAC_POLICIES)
    now = int(time.time())
    url = gw.base + PATH
    # created just now, expired a minute ago (the library itself lets six minutes of skew pass)
    answer = await send(gw, signed_with_expires(url, FORM, expires=now - 60, created=now))
    assert (answer.status, answer.code, answer.detail) == (401, "unauthenticated", "expired")
    assert vendor.received == []
    # an expires still ahead is fine
    assert (await send(gw, signed_with_expires(url, FORM, expires=now + 60, created=now))).status == 201
    assert len(vendor.received) == 1


def test_time_refusal_rules() -> None:
    assert time_refusal(100, None, 150.0, None) is None  # no expires
    assert time_refusal(100, 200, 150.0, None) is None
    assert time_refusal(100, 150, 150.0, None) == "expired"
    assert time_refusal(100, "200", 150.0, None) == "malformed"
    assert time_refusal(100, 200.0, 150.0, None) == "malformed"
    assert time_refusal(99, 200, 150.0, 100) == "signed_before_start"
    assert time_refusal(100, 200, 150.0, 100) is None


# --------------------------------------------------------------------------- JWT time claims


@pytest.fixture
async def jwt_gateway(
    make_gateway: GatewayFactory, vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> Gateway:
    monkeypatch.setenv("SMSGW_TEST_JWT_SECRET", JWT_SECRET)
    issuers = [
        {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "leeway_s": 0,
            "secret": "env:SMSGW_TEST_JWT_SECRET",
            "algorithms": ["HS256"],
        }
    ]
    return await make_gateway(
        vendor.base_url, settings={"auth": {"jwt": {"issuers": issuers}}}, policies=jwt_policy()
    )


def hs(payload: dict[str, Any]) -> str:
    from joserfc.jwk import OctKey

    return token(OctKey.import_key(JWT_SECRET), "HS256", payload)


@pytest.mark.parametrize(
    ("case", "extra"),
    [
        ("exp as a string", {"exp": "EXP"}),
        ("iat as a string", {"iat": "IAT"}),
        ("nbf as a string", {"nbf": "NBF"}),
        ("nbf as true", {"nbf": True}),
        ("iat as true", {"iat": True}),
    ],
)
async def test_jwt_time_claims_must_be_numbers(
    jwt_gateway: Gateway, vendor: Vendor, case: str, extra: dict[str, Any]
) -> None:
    now = int(time.time())
    values = {"EXP": str(now + 300), "IAT": str(now), "NBF": str(now - 5)}
    payload = claims(**{k: values.get(v, v) if isinstance(v, str) else v for k, v in extra.items()})
    status, code, record = await send_token(jwt_gateway, hs(payload))
    assert (status, code, record["detail"]) == (401, "unauthenticated", "malformed_claim"), case
    assert vendor.received == []


async def test_jwt_lifetime_is_bounded(jwt_gateway: Gateway, vendor: Vendor) -> None:
    now = int(time.time())
    day = 86400
    cases = [
        ("a day exactly", claims(iat=now, exp=now + day), 201, None),
        ("two days", claims(iat=now, exp=now + 2 * day), 401, "lifetime_too_long"),
        ("no iat, a year ahead", claims(iat=None, exp=now + 365 * day), 401, "lifetime_too_long"),
        ("no iat, an hour ahead", claims(iat=None, exp=now + 3600), 201, None),
        ("issued long ago, still valid", claims(iat=now - 3 * day, exp=now + 60), 401, "lifetime_too_long"),
        ("no exp at all", claims(exp=None), 401, "missing_claim"),
    ]
    for case, payload, want_status, want_detail in cases:
        status, _, record = await send_token(jwt_gateway, hs(payload))
        assert (status, record["detail"]) == (want_status, want_detail), case
    assert len(vendor.received) == 2


async def test_max_lifetime_is_configurable_per_issuer(
    make_gateway: GatewayFactory, vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSGW_TEST_JWT_SECRET", JWT_SECRET)
    issuers = [
        {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "secret": "env:SMSGW_TEST_JWT_SECRET",
            "algorithms": ["HS256"],
            "max_lifetime_s": 600,
        }
    ]
    gw = await make_gateway(
        vendor.base_url, settings={"auth": {"jwt": {"issuers": issuers}}}, policies=jwt_policy()
    )
    now = int(time.time())
    assert (await send_token(gw, hs(claims(iat=now, exp=now + 600))))[0] == 201
    status, _, record = await send_token(gw, hs(claims(iat=now, exp=now + 601)))
    assert (status, record["detail"]) == (401, "lifetime_too_long")


def test_claim_times_refusal_rules() -> None:
    assert claim_times_refusal({"exp": 200, "iat": 100}, 150.0, 100) is None
    assert claim_times_refusal({"exp": 201, "iat": 100}, 150.0, 100) == "lifetime_too_long"
    assert claim_times_refusal({"exp": 200.5}, 150.0, 100) is None
    assert claim_times_refusal({"exp": float("inf")}, 150.0, 100) == "malformed_claim"
    assert claim_times_refusal({"exp": 200, "nbf": None}, 150.0, 100) == "malformed_claim"
    assert claim_times_refusal({"iat": 100}, 150.0, 100) == "missing_claim"
