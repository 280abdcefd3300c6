"""Limits count what is really sent (gateway/limits/stage.py, gateway/limits/otp.py,
gateway/storage/counters.py):
every limit of a request is checked before any is counted, so a refused request spends no quota;
a number listed twice cannot take one OTP slot for two codes; verification checks are capped per
verification; a storage outage tells the client when to come back; a strategy change on reload
keeps limiting."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import (
    DEFAULT_POLICY,
    Gateway,
    GatewayFactory,
    Recorder,
    RedisServer,
    Vendor,
    basic,
    error_of,
    free_port,
    post,
    sha,
    write_config,
)
from tests.test_limits import round_trips, wait_cluster_ok
from tests.test_vendors import SHAPES, open_shape, vendor_env  # noqa: F401 (a fixture, used by name)
from tests.test_vendors import send as vendor_send

OPS_USER = "AC00000000000000000000000000000ops"
OPS_PASSWORD = "ops-password-5d2c9b1a0f8e7d6c"
OPS = basic(OPS_USER, OPS_PASSWORD)
EE1, EE2 = "+37255512367", "+37255512368"
UK1 = "+447700900123"
VERIFY = "/v2/Services/VA0001/Verifications"
CHECK = "/v2/Services/VA0001/VerificationCheck"


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


# -- a number listed twice: counted per occurrence, refused where it is an OTP ------------------------


@pytest.mark.usefixtures("vendor_env")
@pytest.mark.parametrize("name", ["sinch", "plivo", "infobip"])
async def test_a_number_listed_twice_cannot_share_one_otp_slot(
    make_gateway: GatewayFactory, vendor: Vendor, name: str
) -> None:
    shape = SHAPES[name]
    otp = {"detect": r"code \d{6}", "max_sends": 1, "window": "1 hour"}
    gw = await open_shape(make_gateway, vendor, shape, {"otp": otp})
    # "+3725..." and "3725..." are one number to the vendor (it reads bare digits as international)
    for twice in ([EE1, EE1], [EE1, EE1[1:]], [EE2, EE1, EE1[1:]]):
        status, doc = await vendor_send(gw, shape, twice, text="your code 123456")
        assert (status, doc["error"]["code"]) == (400, "bad_request"), twice
        assert EE1[1:] not in json.dumps(doc)
    assert vendor.received == []
    # the refused requests took no slot: the number still gets its one code, and one only
    assert (await vendor_send(gw, shape, [EE1], text="your code 123456"))[0] in (200, 201, 202)
    status, doc = await vendor_send(gw, shape, [EE1], text="your code 654321")
    assert (status, doc["error"]["code"]) == (429, "otp_retry_cap")
    assert len(vendor.received) == 1
    # not an OTP: each occurrence is a message, and each one counts
    assert (await vendor_send(gw, shape, [EE2, EE2[1:]], text="your parcel is here"))[0] in (200, 201, 202)
    assert [r for r in gw.audit() if r["event"] == "request"][-1]["recipient_count"] == 2


async def test_generic_pointers_duplicates_count_per_occurrence_and_refuse_an_otp(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any]
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    generic = {"format": "json", "recipient": "/to/*", "body": "/text", "sender": "/from"}
    settings = {**store, "upstream": {"provider": "generic", "generic": generic}}
    route = {"recipient_limits": ["2/hour"], "otp": {"detect": r"code \d{6}", "max_sends": 3}}
    gw = await make_gateway(vendor.base_url, settings, two_clients(route))

    async def send(to: list[str], text: str) -> tuple[int, str]:
        body = json.dumps({"to": to, "from": "MyBank", "text": text}).encode()
        response, payload = await post(gw, body, content_type="application/json")
        return response.status, error_of(payload)["code"] if response.status >= 400 else ""

    assert await send([EE1, EE2, EE1], "code 123456") == (400, "bad_request")
    assert await send([EE1, EE1], "hello") == (201, "")  # two messages to one number: its 2/hour
    assert await send([EE1], "hello") == (429, "rate_limited")
    assert await send([EE2, EE2, EE2], "hello") == (429, "rate_limited")  # three asked, two allowed
    assert await send([EE2], "code 123456") == (201, "")  # the refused OTP request took no slot
    assert len(recorder.seen) == 2


# -- verification checks capped per verification ------------------------------------------------------

SID1, SID2 = "VE" + "1f" * 16, "VE" + "2e" * 16


async def test_checks_by_verification_id_are_capped_per_verification(
    make_gateway: GatewayFactory, vendors, store: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    check = {"path": CHECK, "kind": "otp-check", "otp": {"max_checks": 2, "window": "10 minutes"}}
    gw = await make_gateway(vendor.base_url, store, two_clients({}, check))
    by_sid = {"VerificationSid": SID1, "Code": "123456"}
    assert [await status(gw, by_sid, path=CHECK) for _ in range(2)] == [201, 201]
    response = await gw.send(by_sid, path=CHECK)
    assert (response.status, error_of(await response.read())["code"]) == (429, "otp_retry_cap")
    assert 590 <= int(response.headers["Retry-After"]) <= 600
    # another verification has its own cap; so does a number
    assert await status(gw, {"VerificationSid": SID2, "Code": "123456"}, path=CHECK) == 201
    assert await status(gw, {"To": EE1, "Code": "123456"}, path=CHECK) == 201
    assert len(recorder.seen) == 4
    assert denials(gw) == [("otp_retry_cap", "checks")]
    if store["storage"]["url"].startswith("redis"):  # the id is keyed by its HMAC, never in clear
        dump = repr(request.getfixturevalue("redis_server").dump())
        assert "smsgw:otp:checks:" in dump and SID1 not in dump and SID1[2:] not in dump


async def test_a_check_naming_both_number_and_verification_id_is_refused(
    make_gateway: GatewayFactory, vendors
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    check = {"path": CHECK, "kind": "otp-check", "otp": {"max_checks": 1}}
    gw = await make_gateway(vendor.base_url, {}, two_clients({}, check))
    assert await status(gw, {"VerificationSid": SID1, "Code": "123456"}, path=CHECK) == 201
    # a new number each time must not buy new attempts at the same verification
    for number in (EE1, EE2):
        response = await gw.send({"To": number, "VerificationSid": SID1, "Code": "123456"}, path=CHECK)
        payload = await response.read()
        assert (response.status, error_of(payload)["code"]) == (400, "bad_request")
        assert SID1 not in payload.decode() and number[1:] not in payload.decode()
    assert len(recorder.seen) == 1


# -- a strategy changed by reload keeps limiting ------------------------------------------------------


async def test_a_strategy_change_by_reload_keeps_the_limits(
    make_gateway: GatewayFactory, vendors, redis_server: RedisServer
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    policies = two_clients(client={"rate_limits": ["2/minute"]})
    settings: dict[str, Any] = {"storage": {"url": redis_server.url}, "limits": {"strategy": "fixed-window"}}
    gw = await make_gateway(vendor.base_url, settings, policies)
    assert [await status(gw, form()) for _ in range(3)] == [201, 201, 429]
    for strategy in ("moving-window", "sliding-window-counter"):
        changed = {**settings, "limits": {"strategy": strategy}}
        write_config(gw.folder, gw.pki, vendor.base_url, changed, policies)
        assert await gw.running.reload()
        # counters of its own: the old keys are of another Redis type, never read as this one's
        assert [await status(gw, form()) for _ in range(3)] == [201, 201, 429], strategy
    # back to the first strategy within the minute: its own counters still hold the client
    write_config(gw.folder, gw.pki, vendor.base_url, settings, policies)
    assert await gw.running.reload()
    assert await status(gw, form()) == 429
    assert denials(gw) == [("rate_limited", "client")] * 4
    assert [r["event"] for r in gw.audit() if r["event"].startswith("storage_")] == []
    assert len(recorder.seen) == 6


async def test_cluster_checks_then_counts_too(make_gateway: GatewayFactory, vendors, tmp_path) -> None:
    """Redis Cluster: the limits are tested, the OTP slots taken, then the limits counted."""
    port = next(p for p in iter(free_port, None) if p + 10000 <= 65535)  # the bus is port + 10000
    node = RedisServer(tmp_path, port=port)
    node.start("--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"))
    try:
        node.client().execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        await wait_cluster_ok(node)
        recorder = Recorder()
        vendor = await vendors(recorder)
        verify = {"path": VERIFY, "kind": "otp", "otp": {"max_sends": 1, "window": "1 hour"}}
        gw = await make_gateway(
            vendor.base_url,
            {"storage": {"url": f"redis+cluster://127.0.0.1:{node.port}"}},
            two_clients({"rate_limits": ["3/minute"]}, verify, client={"rate_limits": ["2/minute"]}),
        )
        assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY) == 201
        for _ in range(3):  # the OTP cap refuses: the client's and the route's limits are not spent
            assert await status(gw, {"To": EE1, "Channel": "sms"}, path=VERIFY) == 429
        assert await status(gw, form()) == 201
        assert [await status(gw, form()) for _ in range(3)] == [429] * 3  # billing's own 2/minute
        assert await status(gw, {"To": EE2, "Channel": "sms"}, path=VERIFY) == 429  # ... takes no slot
        # billing's refused sends did not spend the route's 3/minute: ops has the other two
        assert [await status(gw, form(), auth=OPS) for _ in range(3)] == [201, 201, 429]
        assert await status(gw, {"To": EE2, "Channel": "sms"}, path=VERIFY, auth=OPS) == 201
        assert denials(gw) == [("otp_retry_cap", "sends")] * 3 + [("rate_limited", "client")] * 4 + [
            ("rate_limited", "route")
        ]
        assert len(recorder.seen) == 5
    finally:
        node.stop()
