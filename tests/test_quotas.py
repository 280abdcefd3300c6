"""Limits count what is really sent (gateway/limits.py, gateway/otp.py, gateway/counters.py):
every limit of a request is checked before any is counted, so a refused request spends no quota;
a number listed twice cannot take one OTP slot for two codes; verification checks are capped per
verification; a storage outage tells the client when to come back; a strategy change on reload
keeps limiting."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import (
    DEFAULT_POLICY,
    Gateway,
    GatewayFactory,
    Recorder,
    RedisServer,
    basic,
    error_of,
    sha,
)
from tests.test_limits import round_trips

OPS_USER = "AC00000000000000000000000000000ops"
OPS_PASSWORD = "ops-password-5d2c9b1a0f8e7d6c"
OPS = basic(OPS_USER, OPS_PASSWORD)
EE1, EE2 = "+37255512367", "+37255512368"
UK1 = "+447700900123"
VERIFY = "/v2/Services/VA0001/Verifications"
CHECK = "/v2/Services/VA0001/VerificationCheck"


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"storage": {"url": "memory://"}}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"storage": {"url": server.url}}


def two_clients(*routes: dict[str, Any], client: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default policy with extra keys on its route (and extra routes), plus a client ``ops``."""
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["route"][0].update(routes[0] if routes else {})
    for i, route in enumerate(routes[1:]):
        doc["route"].append({"name": f"r{i}", "auth": ["basic"], "scopes": ["sms:send"], **route})
    doc["client"][0].update(client or {})
    ops = copy.deepcopy(DEFAULT_POLICY["client"][0])
    ops.update(id="ops", basic=[{"username": OPS_USER, "password_sha256": sha(OPS_PASSWORD)}])
    doc["client"].append(ops)
    return {"default": doc}


def form(to: str = EE1, body: str = "hello") -> dict[str, str]:
    return {"To": to, "From": "MyBank", "Body": body}


async def status(
    gw: Gateway, data: dict[str, str], *, auth: str | None = None, path: str | None = None
) -> int:
    response = await gw.send(data, auth=auth, path=path)
    return response.status


def denials(gw: Gateway) -> list[tuple[str, str]]:
    return [
        (r["reason"], r["detail"]) for r in gw.audit() if r["event"] == "request" and r["decision"] == "deny"
    ]


# -- a refusal spends no other limit's quota --------------------------------------------------------


async def test_a_client_refused_by_its_own_limit_spends_no_route_quota(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    gw = await make_gateway(
        vendor.base_url,
        store,
        two_clients({"rate_limits": ["5/minute"]}, client={"rate_limits": ["2/minute"]}),
    )
    assert [await status(gw, form()) for _ in range(2)] == [201, 201]
    # billing keeps sending past its own limit: every one refused, none counted on the route
    assert [await status(gw, form()) for _ in range(6)] == [429] * 6
    # so the other client still has the route's other three sends
    assert [await status(gw, form(EE2), auth=OPS) for _ in range(4)] == [201, 201, 201, 429]
    assert len(recorder.seen) == 5
    assert denials(gw) == [("rate_limited", "client")] * 6 + [("rate_limited", "route")]


async def test_a_client_refused_by_its_own_limit_spends_no_number_quota(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    gw = await make_gateway(
        vendor.base_url,
        store,
        two_clients({"recipient_limits": ["3/hour"], "country_limits": {"*": ["3/hour"]}},
                    client={"rate_limits": ["1/minute"]}),
    )  # fmt: skip
    assert await status(gw, form()) == 201
    assert [await status(gw, form()) for _ in range(5)] == [429] * 5  # billing floods one number
    # the victim number (and its country) can still be sent to by another client
    assert [await status(gw, form(), auth=OPS) for _ in range(3)] == [201, 201, 429]
    assert len(recorder.seen) == 3


async def test_a_request_refused_by_a_rate_limit_takes_no_otp_slot(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    verify = {"path": VERIFY, "kind": "otp", "otp": {"max_sends": 2, "window": "1 hour"}}
    gw = await make_gateway(
        vendor.base_url, store, two_clients({}, verify, client={"rate_limits": ["1/minute"]})
    )
    assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY) == 201
    for _ in range(3):  # refused by the client's limit: no OTP slot of the number goes with it
        assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY) == 429
    assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY, auth=OPS) == 201
    assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY, auth=OPS) == 429
    assert denials(gw)[-1] == ("otp_retry_cap", "sends")
    assert len(recorder.seen) == 2


async def test_a_request_refused_by_an_otp_cap_spends_no_rate_limit(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    verify = {"path": VERIFY, "kind": "otp", "otp": {"max_sends": 1, "window": "1 hour"}}
    gw = await make_gateway(
        vendor.base_url, store, two_clients({}, verify, client={"rate_limits": ["3/minute"]})
    )
    assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY) == 201
    for _ in range(4):  # the number's cap refuses: the client's own limit is not spent
        assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY) == 429
    assert denials(gw) == [("otp_retry_cap", "sends")] * 4
    assert [await status(gw, {"To": EE2, "Channel": "sms"}, path=VERIFY)] == [201]
    response = await gw.send(form())
    assert (response.status, response.headers["RateLimit-Remaining"]) == (201, "0")
    assert len(recorder.seen) == 3


async def test_check_all_then_count_all_is_still_one_round_trip(
    make_gateway: GatewayFactory, vendors, redis_server: RedisServer
) -> None:
    vendor = await vendors(Recorder())
    verify = {
        "path": VERIFY,
        "kind": "otp",
        "rate_limits": ["100/minute"],
        "recipient_limits": ["3/hour"],
        "otp": {"max_sends": 5, "window": "1 hour"},
    }
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url}},
        two_clients({}, verify, client={"rate_limits": ["100/minute"]}),
    )
    assert await status(gw, {"To": EE2, "Channel": "sms"}, path=VERIFY) == 201  # loads the script
    trips = await round_trips(gw)
    redis_server.reset_calls()
    for _ in range(3):  # three rate limits and the OTP cap: one script call each
        assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY) == 201
    assert await round_trips(gw) - trips == 3
    assert redis_server.calls()["evalsha"] == 3
    trips = await round_trips(gw)
    for _ in range(2):  # refused (the number's 3/hour): one round trip too, nothing else
        assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY) == 429
    assert await round_trips(gw) - trips == 2


# -- storage outages tell the client when to retry ---------------------------------------------------


async def test_limiter_unavailable_carries_retry_after(
    make_gateway: GatewayFactory, vendors, redis_server: RedisServer
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    verify = {"path": VERIFY, "kind": "otp"}
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url, "timeout_s": 0.5}},
        two_clients({}, verify, client={"rate_limits": ["5/minute"]}),
    )
    redis_server.stop()
    for data, path in ((form(), None), ({"To": EE1, "Channel": "sms"}, VERIFY)):
        for _ in range(2):  # the first waits for the timeout, the next is answered at once
            response = await gw.send(data, path=path)
            assert (response.status, error_of(await response.read())["code"]) == (503, "limiter_unavailable")
            assert response.headers["Retry-After"] == "1"
    assert recorder.seen == []
