"""Idempotency-Key (gateway/idempotency/stage.py): forwarded once, replayed after, 422 for another
request under the same key, 409 while the first is in flight; what is kept for failures."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    DEFAULT_POLICY,
    Gateway,
    GatewayFactory,
    Recorder,
    RedisServer,
    basic,
    error_of,
    free_port,
    policy,
    sha,
)

EE1, EE2 = "+37255512367", "+37255512368"
OPS_USER = "AC00000000000000000000000000000ops"
OPS_PASSWORD = "ops-password-5d2c9b1a0f8e7d6c"


def two_clients() -> dict[str, Any]:
    doc = policy()["default"]
    doc["client"].append(
        {
            **DEFAULT_POLICY["client"][0],
            "id": "ops",
            "basic": [{"username": OPS_USER, "password_sha256": sha(OPS_PASSWORD)}],
        }
    )
    return {"default": doc}


async def send(
    gw: Gateway, key: str | None, to: str = EE1, body: str = "hello", auth: str | None = None
) -> tuple[aiohttp.ClientResponse, bytes]:
    headers = {"Idempotency-Key": key} if key is not None else {}
    response = await gw.send({"To": to, "From": "MyBank", "Body": body}, headers=headers, auth=auth)
    return response, await response.read()


async def test_a_repeat_gets_the_stored_answer(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    gw = await make_gateway((await vendors(recorder)).base_url, store, two_clients())
    first, first_body = await send(gw, "order-1842")
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    for _ in range(2):
        again, again_body = await send(gw, "order-1842")
        assert (again.status, again_body) == (201, first_body)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Content-Type"] == first.headers["Content-Type"]
        assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]
        assert again.headers["Strict-Transport-Security"]  # the gateway's headers as on any answer
    assert len(recorder.seen) == 1
    assert "idempotency-key" not in {k.lower() for k in recorder.seen[0].headers}  # the client's own
    # Keys are per client: another client's same key is another request.
    other, _ = await send(gw, "order-1842", auth=basic(OPS_USER, OPS_PASSWORD))
    assert other.status == 201 and "Idempotent-Replayed" not in other.headers
    assert len(recorder.seen) == 2
    replays = [r for r in gw.audit() if r["event"] == "request" and r["detail"] == "idempotent_replay"]
    assert [(r["decision"], r["status"], r["client"]) for r in replays] == [("allow", 201, "billing")] * 2


async def test_a_different_request_under_the_same_key_is_422(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    gw = await make_gateway((await vendors(recorder)).base_url, store)
    assert (await send(gw, "k-1"))[0].status == 201
    for changed in ({"body": "hello!"}, {"to": EE2}):
        response, payload = await send(gw, "k-1", **changed)
        assert (response.status, error_of(payload)["code"]) == (422, "idempotency_mismatch")
    assert len(recorder.seen) == 1


async def test_a_repeat_while_the_first_is_in_flight_is_409(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()

    async def slow(request: web.Request, body: bytes) -> web.StreamResponse:
        await asyncio.wait_for(recorder.release.wait(), 10)
        return web.json_response({"sid": "SM1"}, status=201)

    recorder.behaviour = slow
    gw = await make_gateway((await vendors(recorder)).base_url, store)
    first = asyncio.create_task(send(gw, "k-2"))
    await asyncio.wait_for(recorder.arrived.wait(), 10)
    response, payload = await send(gw, "k-2")
    assert (response.status, error_of(payload)["code"]) == (409, "idempotency_in_flight")
    response, payload = await send(gw, "k-2", body="other")  # in flight, and not the same request
    assert (response.status, error_of(payload)["code"]) == (422, "idempotency_mismatch")
    recorder.release.set()
    done, _ = await asyncio.wait_for(first, 10)
    assert done.status == 201
    response, _ = await send(gw, "k-2")
    assert (response.status, response.headers["Idempotent-Replayed"]) == (201, "true")
    assert len(recorder.seen) == 1


async def test_nothing_sent_frees_the_key(make_gateway: GatewayFactory, store: dict[str, Any]) -> None:
    """The vendor's connection never opened (502): a repeat is forwarded again, not replayed."""
    gw = await make_gateway(f"https://127.0.0.1:{free_port()}", store)
    for _ in range(2):
        response, payload = await send(gw, "k-3")
        assert (response.status, error_of(payload)["code"]) == (502, "upstream_unavailable")
        assert "Idempotent-Replayed" not in response.headers


async def test_a_refusal_before_sending_frees_the_key(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    gw = await make_gateway(
        (await vendors(recorder)).base_url, store, policy(client={"rate_limits": ["1/minute"]})
    )
    assert (await send(gw, None))[0].status == 201
    for _ in range(2):  # refused by the limit each time; never replayed, never 409
        response, payload = await send(gw, "k-4")
        assert (response.status, error_of(payload)["code"]) == (429, "rate_limited")
        assert "Idempotent-Replayed" not in response.headers


async def test_a_timeout_is_kept_because_the_vendor_may_have_sent(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()

    async def never(request: web.Request, body: bytes) -> web.StreamResponse:
        await asyncio.wait_for(recorder.release.wait(), 10)
        return web.json_response({"sid": "SM1"}, status=201)

    recorder.behaviour = never
    gw = await make_gateway((await vendors(recorder)).base_url, {**store, "upstream": {"timeout_s": 0.5}})
    first, first_payload = await send(gw, "k-5")
    assert (first.status, error_of(first_payload)["code"]) == (504, "upstream_timeout")
    again, payload = await send(gw, "k-5")
    assert (again.status, error_of(payload)["code"]) == (504, "upstream_timeout")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(recorder.seen) == 1  # never a second send


@pytest.mark.parametrize(
    "headers",
    [
        [("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
        [("Idempotency-Key", "x" * 256)],
        [("Idempotency-Key", "")],
        [("Idempotency-Key", "has space")],
    ],
    ids=["twice", "too-long", "empty", "space"],
)
async def test_bad_keys_are_400(
    make_gateway: GatewayFactory, vendors, headers: list[tuple[str, str]]
) -> None:
    recorder = Recorder()
    gw = await make_gateway((await vendors(recorder)).base_url)
    async with gw.session.post(
        gw.base + gw.send_path,
        data={"To": EE1, "From": "MyBank", "Body": "hi"},
        headers=[("Authorization", basic(CLIENT_USER, CLIENT_PASSWORD)), *headers],
    ) as response:
        payload = await response.read()
    assert (response.status, error_of(payload)["code"]) == (400, "bad_request")
    assert recorder.seen == []


async def test_without_hash_key_a_key_is_refused(make_gateway: GatewayFactory, vendors) -> None:
    recorder = Recorder()
    settings = {"logging": {"body": "redact", "recipient": "mask", "hash_key": ""}}
    gw = await make_gateway((await vendors(recorder)).base_url, settings)
    response, payload = await send(gw, "k-6")
    assert (response.status, error_of(payload)["code"]) == (400, "bad_request")
    assert (await send(gw, None))[0].status == 201  # without the header nothing changes
    assert len(recorder.seen) == 1


async def test_storage_down(make_gateway: GatewayFactory, vendors, redis_server: RedisServer) -> None:
    recorder = Recorder()
    base = (await vendors(recorder)).base_url
    closed = await make_gateway(base, {"storage": {"url": redis_server.url, "on_error": "closed"}})
    opened = await make_gateway(
        base,
        {"storage": {"url": redis_server.url, "on_error": "open"}},
        policy(client={"rate_limits": ["9/hour"]}),
    )
    redis_server.stop()
    response, payload = await send(closed, "k-7")
    assert (response.status, error_of(payload)["code"]) == (503, "limiter_unavailable")
    assert [(await send(opened, "k-7"))[0].status for _ in range(2)] == [201, 201]  # open: no dedupe
    assert len(recorder.seen) == 2
    skipped = [r["detail"] for r in opened.audit() if r["event"] == "request"]
    assert skipped == ["idempotency_skipped,limits_skipped"] * 2  # every check that was skipped
