"""Failing dependencies other than the vendor: a Redis that is killed, restarted or FROZEN
(SIGSTOP: the socket stays open and nothing answers), under every decision that uses storage
(rate limits, idempotency, RFC 9421 nonces, webhook duplicates); and a JWKS endpoint that is down
or hangs past ``jwks_timeout_s``.

What a user sees: the ``storage.on_error`` answer (503 ``limiter_unavailable``, or a pass that
is recorded) within a bounded time — every request here has a client timeout well above
``storage.timeout_s`` and far below what a hung socket would take — then recovery without a
restart once Redis answers again. Tokens signed with cached keys keep working while the JWKS
endpoint hangs, without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    Gateway,
    GatewayFactory,
    Recorder,
    RedisServer,
    Vendor,
    basic,
    error_of,
    policy,
)
from tests.test_limits import admin_ready, wait_ready
from tests.test_webhooks import Internal, Markers, Signer, deliver, internal, signer, webhook_gateway  # noqa: F401
from tests.tokens import HMAC_KEY_ID, HMAC_SECRET, SUBJECT, Keys, claims, library_signed, public_jwk, token

EE = "+37255512367"
FORM = "application/x-www-form-urlencoded"
#: Far above storage.timeout_s (0.5 s) and its retry, far below a hung socket's wait.
ANSWER_WITHIN = aiohttp.ClientTimeout(total=10)
STORAGE = {"timeout_s": 0.5}


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """SIGSTOP the redis-server this test started (its connections stay open, nothing answers),
    SIGCONT it afterwards whatever happens."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


async def send(
    gw: Gateway, to: str = EE, headers: dict[str, str] | None = None, body: str = "hello"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One send, answered within ANSWER_WITHIN (a hang fails the test): status, JSON, headers."""
    data = {"To": to, "From": "MyBank", "Body": body}
    hdrs = {"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD), **(headers or {})}
    async with gw.session.post(gw.base + gw.send_path, data=data, headers=hdrs, timeout=ANSWER_WITHIN) as r:
        payload = await r.read()
        return r.status, json.loads(payload) if payload else {}, dict(r.headers)


def code(doc: dict[str, Any]) -> str | None:
    return doc.get("error", {}).get("code")


def storage_events(gw: Gateway) -> list[str]:
    return [r["event"] for r in gw.audit() if r["event"].startswith("storage_")]


# --------------------------------------------------------------------------- rate limits


async def test_frozen_redis_closed_refuses_in_bounded_time_then_recovers(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url, "on_error": "closed", **STORAGE}},
        policy(client={"rate_limits": ["100/minute"]}),
    )
    assert (await send(gw))[0] == 201
    with frozen(redis_server):
        status, doc, _ = await send(gw)  # waits for storage.timeout_s, not for ever
        assert (status, code(doc)) == (503, "limiter_unavailable")
        for _ in range(3):  # known down: answered at once, no timeout each
            status, doc, _ = await send(gw)
            assert (status, code(doc)) == (503, "limiter_unavailable")
        assert (await admin_ready(gw))[0] == 503
    assert await wait_ready(gw) == {"status": "ready", "storage": "up"}
    assert [(await send(gw))[0] for _ in range(3)] == [201, 201, 201]
    assert len(vendor.received) == 4
    assert storage_events(gw) == ["storage_unavailable", "storage_available"]
    denied = [r for r in gw.audit() if r.get("reason") == "limiter_unavailable"]
    assert len(denied) == 4 and all(r["detail"] == "rate_limits" for r in denied)


async def test_frozen_redis_open_passes_records_and_limits_again_after(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url, "on_error": "open", **STORAGE}},
        policy(client={"rate_limits": ["3/minute"]}),
    )
    assert (await send(gw))[0] == 201
    with frozen(redis_server):
        assert [(await send(gw))[0] for _ in range(4)] == [201] * 4  # unlimited, on purpose, recorded
    await wait_ready(gw)
    statuses = [(await send(gw))[0] for _ in range(4)]
    assert 429 in statuses  # the limit holds again (the frozen window's hits may or may not count)
    skipped = [r for r in gw.audit() if r["event"] == "request" and r.get("detail") == "limits_skipped"]
    assert len(skipped) == 4
    assert storage_events(gw) == ["storage_unavailable", "storage_available"]


# --------------------------------------------------------------------------- idempotency


@pytest.mark.parametrize("outage", ["killed", "frozen"])
async def test_idempotency_key_under_an_outage_sends_once(
    make_gateway: GatewayFactory, vendors, redis_server: RedisServer, outage: str
) -> None:
    """Closed: a send with a key is refused while Redis is away and nothing reaches the vendor;
    once it is back, keys work again and every send reaches the vendor once, however often it is
    repeated."""
    recorder = Recorder()
    gw = await make_gateway(
        (await vendors(recorder)).base_url,
        {"storage": {"url": redis_server.url, "on_error": "closed", **STORAGE}},
    )
    key = {"Idempotency-Key": f"order-{outage}"}
    if outage == "killed":
        redis_server.stop()
        status, doc, _ = await send(gw, headers=key)
        redis_server.start()
    else:
        with frozen(redis_server):
            status, doc, _ = await send(gw, headers=key)
    assert (status, code(doc)) == (503, "limiter_unavailable")
    assert recorder.seen == []
    await wait_ready(gw)
    # The same key again: sent now, or (frozen) told 409 while a claim that Redis applied late,
    # after the 503, lives out its TTL. Never a send the vendor got before.
    status, doc, _ = await send(gw, headers=key)
    if outage == "killed":
        assert status == 201
    else:
        assert status == 201 or (status, code(doc)) == (409, "idempotency_in_flight")
    sent = 1 if status == 201 else 0
    assert len(recorder.seen) == sent
    # A fresh key: sent once, its repeats are the stored answer.
    fresh = {"Idempotency-Key": f"order-{outage}-2"}
    assert (await send(gw, headers=fresh))[0] == 201
    for _ in range(2):
        status, _, headers = await send(gw, headers=fresh)
        assert (status, headers.get("Idempotent-Replayed")) == (201, "true")
    assert len(recorder.seen) == sent + 1


@pytest.mark.parametrize("on_error", ["closed", "open"])
async def test_idempotency_when_redis_dies_while_the_first_is_in_flight(
    make_gateway: GatewayFactory, vendors, redis_server: RedisServer, on_error: str
) -> None:
    """The claim was taken, then Redis went away before the answer could be stored: the repeat
    never goes to the vendor a second time while the claim lives (closed: 503; open: the claim
    cannot be read either, so the repeat passes unchecked and is recorded as such)."""
    recorder = Recorder()
    parked = asyncio.Event()

    async def slow(_: web.Request, __: bytes) -> web.StreamResponse:
        parked.set()
        await asyncio.wait_for(recorder.release.wait(), 10)
        return web.json_response({"sid": "SM1", "status": "queued"}, status=201)

    recorder.behaviour = slow
    gw = await make_gateway(
        (await vendors(recorder)).base_url,
        {"storage": {"url": redis_server.url, "on_error": on_error, **STORAGE}},
    )
    key = {"Idempotency-Key": "in-flight-1"}
    first = asyncio.create_task(send(gw, headers=key))
    await asyncio.wait_for(parked.wait(), 10)
    redis_server.stop()
    recorder.release.set()
    assert (await first)[0] == 201  # the vendor's answer still reaches the client
    status, doc, _ = await send(gw, headers=key)
    if on_error == "closed":
        assert (status, code(doc)) == (503, "limiter_unavailable")
        assert len(recorder.seen) == 1
    else:
        assert status == 201
        record = [r for r in gw.audit() if r["event"] == "request"][-1]
        assert "idempotency_skipped" in record["detail"]


# --------------------------------------------------------------------------- RFC 9421 nonces


@pytest.fixture
def hmac_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSGW_TEST_OUTAGE_HMAC", HMAC_SECRET)


async def signed_send(gw: Gateway, nonce: str) -> tuple[int, dict[str, Any]]:
    body = f"To=%2B37255512367&From=MyBank&Body=n{nonce}".encode()
    url = gw.base + gw.send_path
    signed = library_signed(
        "POST", url, body, nonce=nonce, components=("@method", "@target-uri", "content-digest")
    )
    headers = {"Content-Type": FORM, **signed}
    async with gw.session.post(url, data=body, headers=headers, timeout=ANSWER_WITHIN) as r:
        return r.status, json.loads(await r.read())


async def test_frozen_redis_and_rfc9421_nonces(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer, hmac_env: None
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url, "on_error": "closed", **STORAGE}},
        policy(
            route={"auth": ["hmac"]},
            client={"hmac_keys": [{"id": HMAC_KEY_ID, "secret": "env:SMSGW_TEST_OUTAGE_HMAC"}]},
        ),
    )
    assert (await signed_send(gw, "n-before"))[0] == 201
    with frozen(redis_server):
        status, doc = await signed_send(gw, "n-frozen")
        assert (status, code(doc)) == (503, "limiter_unavailable")
    await wait_ready(gw)
    assert (await signed_send(gw, "n-after"))[0] == 201
    assert (await signed_send(gw, "n-after"))[0] == 401  # replays are refused again
    assert len(vendor.received) == 2
    details = [r["detail"] for r in gw.audit() if r["event"] == "request" and r["decision"] == "deny"]
    assert details == ["hmac_nonce", "replayed"]


# --------------------------------------------------------------------------- webhook duplicates


@pytest.mark.parametrize("outage", ["killed", "frozen"])
@pytest.mark.parametrize("on_error", ["closed", "open"])
async def test_webhook_duplicates_on_a_real_redis_outage(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    internal: Internal,  # noqa: F811 - the fixture of tests/test_webhooks.py
    signer: Signer,  # noqa: F811 - the fixture of tests/test_webhooks.py
    redis_server: RedisServer,
    outage: str,
    on_error: str,
) -> None:
    """Closed: the vendor is told 503 (it retries later) and nothing is forwarded; open: forwarded
    and recorded. After recovery a callback is forwarded once and its copy is a duplicate."""
    gw = await webhook_gateway(
        make_gateway,
        vendor,
        internal.url,
        settings={"storage": {"url": redis_server.url, "on_error": on_error, **STORAGE}},
    )
    during = signer.make("twilio", Markers())
    if outage == "killed":
        redis_server.stop()
        status, payload, _ = await asyncio.wait_for(deliver(gw, during), 10)
        redis_server.start()
    else:
        with frozen(redis_server):
            status, payload, _ = await asyncio.wait_for(deliver(gw, during), 10)
    if on_error == "closed":
        assert (status, error_of(payload)["code"]) == (503, "limiter_unavailable")
        assert internal.seen == []
    else:
        assert status == 200 and len(internal.seen) == 1
    await wait_ready(gw)
    after = signer.make("twilio", Markers())
    assert (await asyncio.wait_for(deliver(gw, after), 10))[0] == 200
    seen = len(internal.seen)
    status, payload, _ = await asyncio.wait_for(deliver(gw, after), 10)
    assert (status, payload) == (200, b"")  # the duplicate: answered, not forwarded
    assert len(internal.seen) == seen
    service = [r["event"] for r in gw.audit() if r["event"].startswith("storage_") and "request_id" not in r]
    assert service == ["storage_unavailable", "storage_available"]
    passed = [r for r in gw.audit() if r["event"] == "storage_unavailable" and "request_id" in r]
    assert len(passed) == (1 if on_error == "open" else 0)  # open: the callback that passed unchecked


# --------------------------------------------------------------------------- JWKS down or slow


class HangingJwks:
    """An issuer's JWKS endpoint over TLS that can be made to hang (bounded) and counts fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        self.hang = False
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, pki: dict[str, Path]) -> None:
        async def jwks(_: web.Request) -> web.Response:
            self.fetches += 1
            if self.hang:
                self.arrived.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 30)
            return web.json_response({"keys": self.keys})

        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki["vendor_cert"], pki["vendor_key"])
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ctx).start()
        self.url = f"https://127.0.0.1:{self.runner.addresses[0][1]}/jwks.json"

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def jwks(pki: dict[str, Path]) -> AsyncIterator[tuple[HangingJwks, Keys]]:
    keys = Keys()
    server = HangingJwks([public_jwk(keys.rsa)])
    await server.start(pki)
    yield server, keys
    await server.stop()


async def jwt_gateway(
    make_gateway: GatewayFactory, vendor: Vendor, server: HangingJwks, pki: dict[str, Path]
):
    issuer = {
        "issuer": "https://auth.example.test/",
        "audience": "smsgw",
        "leeway_s": 0,
        "algorithms": ["RS256"],
        "jwks_url": server.url,
        "jwks_ca_file": str(pki["ca"]),
        "jwks_timeout_s": 2,
    }
    return await make_gateway(
        vendor.base_url,
        settings={"auth": {"jwt": {"issuers": [issuer]}}},
        policies=policy(route={"auth": ["jwt"]}, client={"jwt_subject": SUBJECT}),
    )


async def bearer(gw: Gateway, raw: str) -> tuple[int, str | None]:
    data = {"To": EE, "From": "MyBank", "Body": "hi"}
    headers = {"Authorization": f"Bearer {raw}"}
    async with gw.session.post(
        gw.base + gw.send_path, data=data, headers=headers, timeout=ANSWER_WITHIN
    ) as r:
        payload = await r.read()
        return r.status, (error_of(payload)["code"] if r.status >= 400 else None)


async def test_jwks_hanging_cached_keys_keep_working_without_waiting(
    make_gateway: GatewayFactory, vendor: Vendor, jwks: tuple[HangingJwks, Keys], pki: dict[str, Path]
) -> None:
    server, keys = jwks
    gw = await jwt_gateway(make_gateway, vendor, server, pki)
    assert server.fetches == 1
    server.hang = True
    # A token naming a key the set lacks makes the gateway refetch, and that fetch hangs.
    unknown = asyncio.create_task(bearer(gw, token(keys.rsa, "RS256", claims(), "rotated-2")))
    await asyncio.wait_for(server.arrived.wait(), 10)
    # Meanwhile tokens signed with the cached key are answered, not queued behind the fetch
    # (which is still parked: the request naming the unknown key has no answer yet).
    for i in range(3):
        assert await bearer(gw, token(keys.rsa, "RS256", claims(jti=f"c{i}"), "rsa-1")) == (201, None)
    assert not unknown.done()
    # The fetch gives up at jwks_timeout_s: the unknown key is refused, the cached set is kept.
    assert await asyncio.wait_for(unknown, 10) == (401, "unauthenticated")
    assert await bearer(gw, token(keys.rsa, "RS256", claims(jti="after"), "rsa-1")) == (201, None)
    # More unknown keys right away cost no new fetch (at most one per 30 s), and are refused at once.
    fetches = server.fetches
    assert await bearer(gw, token(keys.rsa, "RS256", claims(), "rotated-3")) == (401, "unauthenticated")
    assert server.fetches == fetches
    assert len(vendor.received) == 4


async def test_jwks_hanging_at_start_the_gateway_starts_and_catches_up(
    make_gateway: GatewayFactory, vendor: Vendor, jwks: tuple[HangingJwks, Keys], pki: dict[str, Path]
) -> None:
    server, keys = jwks
    server.hang = True
    gw = await asyncio.wait_for(jwt_gateway(make_gateway, vendor, server, pki), 15)  # bounded start
    assert server.fetches == 1
    server.hang = False
    server.release.set()
    # The set is empty; the first token with a key id fetches on demand and then passes.
    assert await bearer(gw, token(keys.rsa, "RS256", claims(), "rsa-1")) == (201, None)
    assert server.fetches == 2


async def test_jwks_down_at_start_refuses_then_catches_up(
    make_gateway: GatewayFactory, vendor: Vendor, jwks: tuple[HangingJwks, Keys], pki: dict[str, Path]
) -> None:
    server, keys = jwks
    url = server.url
    await server.stop()  # nothing listens on the port
    server.url = url
    gw = await jwt_gateway(make_gateway, vendor, server, pki)
    assert await bearer(gw, token(keys.rsa, "RS256", claims(), "rsa-1")) == (401, "unauthenticated")
    record = [r for r in gw.audit() if r["event"] == "request"][-1]
    assert record["detail"] == "unknown_key"
