"""OTP retry caps (gateway/limits/otp.py): sends per number per window, the resend interval, check
attempts; exact Retry-After; a refused or unsent attempt never costs the user a send."""

from __future__ import annotations

import asyncio
import copy
import math
import time
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import DEFAULT_POLICY, Gateway, GatewayFactory, Recorder, error_of, free_port

EE1, EE2 = "+37255512367", "+37255512368"
VERIFY = "/v2/Services/VA0001/Verifications"
CHECK = "/v2/Services/VA0001/VerificationCheck"


def routes(*extra: dict[str, Any], sms: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default sms route (with ``sms`` keys) and extra routes of other kinds."""
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["route"][0].update(sms or {})
    for i, route in enumerate(extra):
        doc["route"].append({"name": f"r{i}", "auth": ["basic"], "scopes": ["sms:send"], **route})
    return {"default": doc}


def verify(otp: dict[str, Any] | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {"path": VERIFY, "kind": "otp"}
    if otp is not None:
        route["otp"] = otp
    return route


def check(otp: dict[str, Any]) -> dict[str, Any]:
    return {"path": CHECK, "kind": "otp-check", "otp": otp}


async def start_send(gw: Gateway, to: str = EE1) -> tuple[aiohttp.ClientResponse, bytes]:
    response = await gw.send({"To": to, "Channel": "sms"}, path=VERIFY)
    return response, await response.read()


def assert_capped(response: aiohttp.ClientResponse, payload: bytes, lowest: int, highest: int) -> int:
    assert response.status == 429, payload
    assert error_of(payload)["code"] == "otp_retry_cap"
    retry_after = int(response.headers["Retry-After"])
    assert lowest <= retry_after <= highest, (lowest, retry_after, highest)
    return retry_after


async def test_fourth_send_in_the_window_is_refused(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    vendor = await vendors(Recorder())
    gw = await make_gateway(vendor.base_url, store, routes(verify({"max_sends": 3, "window": "15 minutes"})))
    started = time.monotonic()
    assert [(await start_send(gw))[0].status for _ in range(3)] == [201, 201, 201]
    response, payload = await start_send(gw)
    elapsed = time.monotonic() - started
    # Exact: the first send leaves the window 900 s after it was counted.
    assert_capped(response, payload, math.ceil(900 - elapsed), 900)
    assert (await start_send(gw, EE2))[0].status == 201  # another number has its own count
    deny = [r for r in gw.audit() if r["decision"] == "deny"]
    assert [(r["reason"], r["detail"], r["route"]) for r in deny] == [("otp_retry_cap", "sends", "r0")]


async def test_resend_before_min_interval(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    vendor = await vendors(Recorder())
    gw = await make_gateway(vendor.base_url, store, routes(verify({"min_interval": "30 seconds"})))
    started = time.monotonic()
    assert (await start_send(gw))[0].status == 201
    response, payload = await start_send(gw)
    assert_capped(response, payload, math.ceil(30 - (time.monotonic() - started)), 30)


async def test_a_refused_resend_does_not_use_up_a_send(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    otp = {"max_sends": 2, "window": "1 hour", "min_interval": "1 second"}
    gw = await make_gateway((await vendors(recorder)).base_url, store, routes(verify(otp)))
    assert (await start_send(gw))[0].status == 201
    response, payload = await start_send(gw)
    assert_capped(response, payload, 1, 1)
    await asyncio.sleep(1.05)
    assert (await start_send(gw))[0].status == 201  # the refused resend did not count
    response, payload = await start_send(gw)
    assert_capped(response, payload, 3600 - 5, 3600)  # now max_sends too: the first leaves in an hour
    assert len(recorder.seen) == 2


async def test_check_attempts_are_capped(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    vendor = await vendors(Recorder())
    gw = await make_gateway(
        vendor.base_url, store, routes(verify(), check({"max_checks": 2, "window": "10 minutes"}))
    )
    started = time.monotonic()
    for _ in range(2):
        response = await gw.send({"To": EE1, "Code": "123456"}, path=CHECK)
        assert response.status == 201
    response = await gw.send({"To": EE1, "Code": "123456"}, path=CHECK)
    assert_capped(response, await response.read(), math.ceil(600 - (time.monotonic() - started)), 600)
    # Checks and sends are counted apart: the number can still be sent a new code.
    assert (await start_send(gw))[0].status == 201
    assert [r["detail"] for r in gw.audit() if r["decision"] == "deny"] == ["checks"]


async def test_sms_route_caps_only_messages_that_match_detect(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    vendor = await vendors(Recorder())
    otp = {"detect": r"(?i)\bcode\b\D{0,10}\d{6}", "max_sends": 1, "window": "1 hour"}
    gw = await make_gateway(vendor.base_url, store, routes(sms={"otp": otp}))
    for _ in range(3):  # not an OTP: never capped
        assert (await gw.send({"To": EE1, "From": "MyBank", "Body": "your parcel is here"})).status == 201
    assert (await gw.send({"To": EE1, "From": "MyBank", "Body": "Your code: 123456"})).status == 201
    response = await gw.send({"To": EE1, "From": "MyBank", "Body": "Your CODE is 654321"})
    assert_capped(response, await response.read(), 3590, 3600)


async def test_an_unsent_attempt_gives_its_slot_back(
    make_gateway: GatewayFactory, store: dict[str, Any]
) -> None:
    """A vendor nobody listens on: the connection never opens (502), so nothing was sent."""
    gw = await make_gateway(f"https://127.0.0.1:{free_port()}", store, routes(verify({"max_sends": 1})))
    for _ in range(3):
        response, payload = await start_send(gw)
        assert (response.status, error_of(payload)["code"]) == (502, "upstream_unavailable")
    outcomes = [r for r in gw.audit() if r["event"] == "outcome"]
    assert [r["detail"] for r in outcomes] == ["not_sent"] * 3


async def test_a_vendor_refusal_still_counts(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    """The vendor had the request: whether it sent the code is its business, the attempt counts."""

    async def refuse(_: web.Request, __: bytes) -> web.StreamResponse:
        return web.json_response({"code": 60200, "message": "Invalid parameter"}, status=400)

    vendor = await vendors(Recorder(refuse))
    gw = await make_gateway(vendor.base_url, store, routes(verify({"max_sends": 1})))
    assert (await start_send(gw))[0].status == 400
    response, payload = await start_send(gw)
    assert_capped(response, payload, 800, 900)


async def test_otp_send_without_number_is_refused(make_gateway: GatewayFactory, vendors) -> None:
    recorder = Recorder()
    gw = await make_gateway((await vendors(recorder)).base_url, {}, routes(verify()))
    response = await gw.send({"Channel": "sms"}, path=VERIFY)
    assert response.status == 400
    assert recorder.seen == []
