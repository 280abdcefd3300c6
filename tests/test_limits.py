"""Rate limits (gateway/limits/stage.py): every kind, on memory and on a real Redis, with the answers a
client sees (429 rate_limited, Retry-After, RateLimit-*), their cost in Redis commands, and what
happens when Redis goes away and comes back."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from typing import Any

import aiohttp
import pytest

from tests.conftest import (
    DEFAULT_POLICY,
    Gateway,
    GatewayFactory,
    RedisServer,
    Vendor,
    basic,
    error_of,
    free_port,
    policy,
    post,
    sha,
)
from tests.test_metrics import parse, scrape, value

OPS_USER = "AC00000000000000000000000000000ops"
OPS_PASSWORD = "ops-password-5d2c9b1a0f8e7d6c"

EE1, EE2, EE3 = "+37255512367", "+37255512368", "+37255512369"
US1, US2, US3 = "+12025550123", "+12025550124", "+12015550123"
LV1 = "+37120012345"
NG1 = "+2348031234567"


def limited(route: dict[str, Any] | None = None, client: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default policy with limits on its route/client, and a second client ``ops``."""
    doc = policy(route, client)["default"]
    ops = copy.deepcopy(DEFAULT_POLICY["client"][0])
    ops.update(id="ops", basic=[{"username": OPS_USER, "password_sha256": sha(OPS_PASSWORD)}])
    doc["client"].append(ops)
    return {"default": doc}


def form(to: str = EE1, body: str = "hello") -> dict[str, str]:
    return {"To": to, "From": "MyBank", "Body": body}


OPS = basic(OPS_USER, OPS_PASSWORD)


def assert_limited(
    response: aiohttp.ClientResponse, payload: bytes, limit: int, most_wait: int, remaining: int = 0
) -> int:
    """A 429 rate_limited with sane headers; returns Retry-After."""
    assert response.status == 429, payload
    assert error_of(payload)["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= most_wait
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == str(remaining)
    assert int(response.headers["RateLimit-Reset"]) == retry_after
    return retry_after


async def send(gw: Gateway, to: str = EE1, auth: str | None = None) -> tuple[aiohttp.ClientResponse, bytes]:
    response = await gw.send(form(to), auth=auth)
    return response, await response.read()


# -- every kind of limit, on memory and on Redis --------------------------------------------------


async def test_client_limit(make_gateway: GatewayFactory, vendor: Vendor, store: dict[str, Any]) -> None:
    gw = await make_gateway(vendor.base_url, store, limited(client={"rate_limits": ["3/minute"]}))
    remaining = []
    for _ in range(3):
        response, _ = await send(gw)
        assert response.status == 201
        assert response.headers["RateLimit-Limit"] == "3"
        remaining.append(response.headers["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    response, payload = await send(gw)
    assert_limited(response, payload, 3, 60)
    # The other client is not limited, and gets no RateLimit headers (no limit applies to it).
    other, _ = await send(gw, auth=OPS)
    assert other.status == 201 and "RateLimit-Limit" not in other.headers
    assert len(vendor.received) == 4
    deny = [r for r in gw.audit() if r["decision"] == "deny"]
    assert [(r["reason"], r["detail"], r["client"]) for r in deny] == [("rate_limited", "client", "billing")]


async def test_route_limit_counts_every_client(
    make_gateway: GatewayFactory, vendor: Vendor, store: dict[str, Any]
) -> None:
    gw = await make_gateway(vendor.base_url, store, limited(route={"rate_limits": ["2/minute"]}))
    assert (await send(gw))[0].status == 201
    assert (await send(gw, auth=OPS))[0].status == 201
    response, payload = await send(gw, auth=OPS)
    assert_limited(response, payload, 2, 60)
    response, payload = await send(gw)
    assert_limited(response, payload, 2, 60)
    assert len(vendor.received) == 2


async def test_recipient_limit_is_per_number(
    make_gateway: GatewayFactory, vendor: Vendor, store: dict[str, Any]
) -> None:
    gw = await make_gateway(vendor.base_url, store, limited(route={"recipient_limits": ["2/hour"]}))
    assert [(await send(gw, EE1))[0].status for _ in range(2)] == [201, 201]
    response, payload = await send(gw, EE1)
    assert_limited(response, payload, 2, 3600)
    # Another number, and the same number from another client, are counted apart from / with it.
    assert (await send(gw, EE2))[0].status == 201
    response, payload = await send(gw, EE1, auth=OPS)
    assert_limited(response, payload, 2, 3600)
    assert [r["detail"] for r in gw.audit() if r["decision"] == "deny"] == ["number", "number"]


async def test_country_limits(make_gateway: GatewayFactory, vendor: Vendor, store: dict[str, Any]) -> None:
    limits = {"EE": ["1/hour"], "*": ["2/hour"]}
    gw = await make_gateway(vendor.base_url, store, limited(route={"country_limits": limits}))
    assert (await send(gw, EE1))[0].status == 201
    response, payload = await send(gw, EE2)  # another Estonian number: the country's 1/hour is used up
    assert_limited(response, payload, 1, 3600)
    assert [(await send(gw, number))[0].status for number in (US1, US2)] == [201, 201]
    response, payload = await send(gw, US3)
    assert_limited(response, payload, 2, 3600)
    # "*" counts each unlisted country by itself: Latvia and Nigeria still have theirs.
    assert [(await send(gw, number))[0].status for number in (LV1, NG1)] == [201, 201]
    assert [r["detail"] for r in gw.audit() if r["decision"] == "deny"] == ["country", "country"]


@pytest.mark.parametrize("strategy", ["moving-window", "fixed-window", "sliding-window-counter"])
async def test_each_strategy_holds(
    make_gateway: GatewayFactory, vendor: Vendor, store: dict[str, Any], strategy: str
) -> None:
    settings = {**store, "limits": {"strategy": strategy}}
    gw = await make_gateway(vendor.base_url, settings, limited(client={"rate_limits": ["2/minute"]}))
    statuses = [(await send(gw))[0].status for _ in range(3)]
    assert statuses == [201, 201, 429]
    response, payload = await send(gw)
    assert_limited(response, payload, 2, 60)


async def test_allowed_answers_carry_the_tightest_limit(
    make_gateway: GatewayFactory, vendor: Vendor, store: dict[str, Any]
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        store,
        limited(
            route={"rate_limits": ["1000/minute"], "recipient_limits": ["3/hour"]},
            client={"rate_limits": ["50/hour"]},
        ),
    )
    response, _ = await send(gw)
    assert response.status == 201
    assert (response.headers["RateLimit-Limit"], response.headers["RateLimit-Remaining"]) == ("3", "2")
    assert 1 <= int(response.headers["RateLimit-Reset"]) <= 3600


async def test_refusal_names_the_longest_wait(
    make_gateway: GatewayFactory, vendor: Vendor, store: dict[str, Any]
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        store,
        limited(route={"rate_limits": ["1/minute"], "recipient_limits": ["1/day"]}),
    )
    assert (await send(gw))[0].status == 201
    response, payload = await send(gw)  # both refuse: the day's wait is the one to honour
    retry_after = assert_limited(response, payload, 1, 86400)
    assert retry_after > 60


async def test_a_request_to_several_numbers_counts_each_message(
    make_gateway: GatewayFactory, vendor: Vendor, store: dict[str, Any]
) -> None:
    settings = {
        **store,
        "upstream": {
            "provider": "generic",
            "generic": {"format": "json", "recipient": "/to/*", "body": "/text", "sender": "/from"},
        },
    }
    gw = await make_gateway(vendor.base_url, settings, limited(client={"rate_limits": ["3/minute"]}))
    body = json.dumps({"to": [EE1, EE2], "from": "MyBank", "text": "hi"}).encode()
    first, _ = await post(gw, body, content_type="application/json")
    assert first.status != 429 and first.headers["RateLimit-Remaining"] == "1"
    second, payload = await post(gw, body, content_type="application/json")
    assert_limited(second, payload, 3, 60, remaining=1)  # one message left, two asked for
    single = json.dumps({"to": [EE3], "from": "MyBank", "text": "hi"}).encode()
    third, _ = await post(gw, single, content_type="application/json")
    assert third.status != 429 and third.headers["RateLimit-Remaining"] == "0"


# -- cost: every limit of a request in one script call, figures included -------------------------


async def round_trips(gw: Gateway) -> float:
    """``smsgw_storage_round_trips_total`` from the admin listener's /metrics."""
    _, text = await scrape(gw.admin)
    return value(parse(text), "smsgw_storage_round_trips_total")


async def test_redis_commands_per_request(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url}},
        limited(
            route={"rate_limits": ["1000/minute"], "recipient_limits": ["5/hour"]},
            client={"rate_limits": ["100/minute"]},
        ),
    )
    assert (await send(gw, EE2))[0].status == 201  # loads the script (NOSCRIPT, EVAL) once
    redis_server.reset_calls()
    trips = await round_trips(gw)
    for number in (EE1, EE3, US1, US2, LV1):
        response, _ = await send(gw, number)
        assert response.status == 201
        assert response.headers["RateLimit-Limit"] == "5"  # the tightest limit's figures came along
    # Per request: one round trip, one EVALSHA counting all three limits and reading their
    # figures; everything else counted ran inside that script.
    assert await round_trips(gw) - trips == 5
    calls = redis_server.calls()
    assert calls.pop("evalsha") == 5
    inside_script = {"get", "pttl", "exists", "incrby", "set", "rename"}
    assert set(calls) <= inside_script | {"hello", "info", "config|resetstat"}  # hello: this test's client


async def test_a_refusal_costs_one_round_trip_too(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url}},
        limited(route={"rate_limits": ["1000/minute"], "recipient_limits": ["1/hour"]}),
    )
    assert (await send(gw, EE2))[0].status == 201
    trips = await round_trips(gw)
    response, payload = await send(gw, EE2)
    assert_limited(response, payload, 1, 3600, remaining=0)
    assert await round_trips(gw) - trips == 1


async def test_redis_keys_hold_no_number(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url}, "limits": {"strategy": "moving-window"}},
        limited(
            route={"recipient_limits": ["5/hour"], "country_limits": {"*": ["9/hour"]}},
            client={"rate_limits": ["10/minute"]},
        ),
    )
    for number in (EE1, US1, LV1):
        assert (await send(gw, number))[0].status == 201
    dump = redis_server.dump()
    assert len(dump) >= 6
    text = repr(dump)
    for number in (EE1, US1, LV1):
        for form_ in (number, number[1:], number[-8:]):
            assert form_ not in text
    assert all(key.startswith(b"smsgw:") for key in dump)


# -- outages ------------------------------------------------------------------------------------------


async def admin_ready(gw: Gateway) -> tuple[int, dict[str, Any]]:
    """Status and readiness, without the config generation and hash (tests/test_reload.py)."""
    async with aiohttp.ClientSession() as session, session.get(gw.admin + "/readyz") as response:
        body = json.loads(await response.read())
        return response.status, {k: v for k, v in body.items() if not k.startswith("config_")}


async def wait_ready(gw: Gateway, timeout_s: float = 10) -> dict[str, Any]:
    """Poll /readyz until the storage is up again (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        _, body = await admin_ready(gw)
        if body.get("storage") == "up":
            return body
        assert loop.time() < deadline, body
        await asyncio.sleep(0.1)


async def test_outage_closed_refuses_then_recovers(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "smsgw")
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url, "on_error": "closed", "timeout_s": 0.5}},
        limited(client={"rate_limits": ["2/minute"]}),
    )
    assert (await send(gw))[0].status == 201
    redis_server.stop()
    for _ in range(3):
        response, payload = await send(gw)
        assert response.status == 503
        assert error_of(payload)["code"] == "limiter_unavailable"
    assert await admin_ready(gw) == (503, {"status": "not ready", "storage": "down"})
    assert len(vendor.received) == 1
    redis_server.start()  # empty: its counters start again
    assert await wait_ready(gw) == {"status": "ready", "storage": "up"}
    assert [(await send(gw))[0].status for _ in range(3)] == [201, 201, 429]
    events = [r["event"] for r in gw.audit() if r["event"].startswith("storage_")]
    assert events == ["storage_unavailable", "storage_available"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("storage redis is unavailable" in w and "on_error = closed" in w for w in warnings)
    assert any("available again" in w for w in warnings)
    denied = [r for r in gw.audit() if r.get("reason") == "limiter_unavailable"]
    assert len(denied) == 3 and all(r["detail"] == "rate_limits" for r in denied)


async def test_outage_open_passes_and_records(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    gw = await make_gateway(
        vendor.base_url,
        {"storage": {"url": redis_server.url, "on_error": "open"}},
        limited(client={"rate_limits": ["2/minute"]}),
    )
    assert [(await send(gw))[0].status for _ in range(3)] == [201, 201, 429]
    redis_server.stop()
    assert [(await send(gw))[0].status for _ in range(3)] == [201, 201, 201]  # unlimited, on purpose
    assert await admin_ready(gw) == (200, {"status": "ready", "storage": "down"})
    skipped = [r for r in gw.audit() if r["event"] == "request" and r["detail"] == "limits_skipped"]
    assert len(skipped) == 3 and all(r["decision"] == "allow" for r in skipped)
    redis_server.start()
    await wait_ready(gw)
    assert [(await send(gw))[0].status for _ in range(3)] == [201, 201, 429]
    events = [r for r in gw.audit() if r["event"].startswith("storage_")]
    assert [(e["event"], e["on_error"], e["backend"]) for e in events] == [
        ("storage_unavailable", "open", "redis"),
        ("storage_available", "open", "redis"),
    ]


async def test_redis_down_at_start(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    redis_server.stop()
    gw = await make_gateway(
        vendor.base_url, {"storage": {"url": redis_server.url}}, limited(client={"rate_limits": ["1/minute"]})
    )
    assert (await admin_ready(gw))[0] == 503
    response, payload = await send(gw)
    assert (response.status, error_of(payload)["code"]) == (503, "limiter_unavailable")
    redis_server.start()
    await wait_ready(gw)
    assert [(await send(gw))[0].status for _ in range(2)] == [201, 429]


# -- the other Redis deployments -------------------------------------------------------------------


async def test_sentinel(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer, tmp_path
) -> None:
    sentinel = RedisServer(tmp_path)
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"sentinel monitor gw 127.0.0.1 {redis_server.port} 1\n")
    sentinel.start("--sentinel", config=conf)
    try:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/gw"
        gw = await make_gateway(
            vendor.base_url, {"storage": {"url": url}}, limited(client={"rate_limits": ["2/minute"]})
        )
        assert [(await send(gw))[0].status for _ in range(3)] == [201, 201, 429]
        assert any(k.startswith(b"smsgw:rl:") for k in redis_server.dump())
    finally:
        sentinel.stop()


async def test_cluster(make_gateway: GatewayFactory, vendor: Vendor, tmp_path) -> None:
    # A cluster node also listens on its port + 10000 (the cluster bus), which must be a valid port.
    port = next(p for p in iter(free_port, None) if p + 10000 <= 65535)
    node = RedisServer(tmp_path, port=port)
    node.start("--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"))
    try:
        node.client().execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        await wait_cluster_ok(node)
        url = f"redis+cluster://127.0.0.1:{node.port}"
        gw = await make_gateway(
            vendor.base_url,
            {"storage": {"url": url}},
            limited(route={"recipient_limits": ["2/hour"]}, client={"rate_limits": ["5/minute"]}),
        )
        assert [(await send(gw))[0].status for _ in range(3)] == [201, 201, 429]
    finally:
        node.stop()


async def wait_cluster_ok(node: RedisServer) -> None:
    for _ in range(200):
        if b"cluster_state:ok" in node.client().execute_command("CLUSTER", "INFO"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the one-node cluster did not come up")
