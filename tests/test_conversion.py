"""The pumping guard (``[alerts.conversion]``, gateway/alerts/conversion.py): OTP sends against approved
checks per country, prefix and client address, through real gateways, a stand-in Verify vendor
that approves or not, and a real redis-server shared by two replicas."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.alerts.conversion import check_approved, is_low
from gateway.server.config import ConfigError, load_config
from tests.conftest import (
    DEFAULT_POLICY,
    Gateway,
    GatewayFactory,
    Recorder,
    RedisServer,
    error_of,
    write_config,
)

VERIFY = "/v2/Services/VA0001/Verifications"
CHECK = "/v2/Services/VA0001/VerificationCheck"
CODE = "482913"
#: Two number ranges of one country (Estonia), and another country's numbers.
PUMPED = [f"+3725551{n:04d}" for n in range(40)]
NORMAL = [f"+3725552{n:04d}" for n in range(40)]
LATVIA = [f"+3712000{n:04d}" for n in range(40)]
SMSGW = [sys.executable, "-m", "gateway"]


class VerifyVendor:
    """Twilio Verify, as far as the guard sees it: a started verification answers 201 and names
    its number; a check answers 200 ``approved`` for the right code and ``pending`` otherwise."""

    def __init__(self, refuse_sends: bool = False) -> None:
        self.refuse_sends = refuse_sends
        self.sids: dict[str, str] = {}

    async def __call__(self, request: web.Request, body: bytes) -> web.StreamResponse:
        form = dict(pair.split("=", 1) for pair in body.decode().split("&") if "=" in pair)
        to = form.get("To", "").replace("%2B", "+")
        if request.path.endswith("/Verifications"):
            if self.refuse_sends:
                return web.json_response({"code": 60200, "message": "Invalid parameter"}, status=400)
            sid = "VE" + secrets.token_hex(16)
            self.sids[sid] = to
            return web.json_response({"sid": sid, "to": to, "status": "pending"}, status=201)
        to = to or self.sids.get(form.get("VerificationSid", ""), "")
        approved = form.get("Code") == CODE
        return web.json_response(
            {
                "sid": "VE" + secrets.token_hex(16),
                "to": to,
                "valid": approved,
                "status": "approved" if approved else "pending",
            }
        )


def policies(route_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["client"][0].update(
        scopes=["otp:send", "otp:check"], countries=["EE", "LV"], rate_limits=["1000/minute"]
    )
    doc["route"] = [
        {"name": "verify", "path": VERIFY, "kind": "otp", "auth": ["basic"], "scopes": ["otp:send"],
         **(route_extra or {})},
        {"name": "check", "path": CHECK, "kind": "otp-check", "auth": ["basic"], "scopes": ["otp:check"]},
    ]  # fmt: skip
    return {"default": doc}


def rule(**overrides: Any) -> dict[str, Any]:
    base = {
        "action": "block",
        "check_window": "1 second",
        "window": "40 seconds",
        "min_sends": 8,
        "threshold": 0.5,
        "by": ["prefix"],
    }
    return {**base, **overrides}


async def send(gw: Gateway, to: str) -> tuple[int, str]:
    response = await gw.send({"To": to}, path=VERIFY)
    payload = await response.read()
    return response.status, error_of(payload)["code"] if response.status >= 400 else ""


async def check(gw: Gateway, to: str | None = None, code: str = CODE, sid: str | None = None) -> int:
    form = {"Code": code}
    if to is not None:
        form["To"] = to
    if sid is not None:
        form["VerificationSid"] = sid
    response = await gw.send(form, path=CHECK)
    await response.read()
    return response.status


async def until_due() -> None:
    """Sends become due once their check window (1 s buckets here) has passed: wait until every
    send made so far is (two whole buckets on)."""
    last = time.time()
    await asyncio.sleep(int(last) + 2 - last + 0.05)


async def smsgw(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, run in a thread so the gateway in this loop keeps serving."""
    return await asyncio.to_thread(
        subprocess.run, [*SMSGW, *args], capture_output=True, text=True, timeout=60, check=False
    )


async def clear(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await smsgw("alerts", "clear", "-c", str(config), *args)


def alerts(*gws: Gateway) -> list[dict[str, Any]]:
    return [r for gw in gws for r in gw.audit_all() if r["event"] == "alert" and r["rule"] == "conversion"]


def requests_of(gw: Gateway, route: str) -> list[dict[str, Any]]:
    return [r for r in gw.audit() if r.get("event") == "request" and r.get("route") == route]


# --------------------------------------------------------------------------- decisions


def test_low_needs_enough_sends_and_too_few_converted() -> None:
    assert not is_low(7, 0, 8, 0.5)  # not enough sends to judge
    assert is_low(8, 3, 8, 0.5)
    assert not is_low(8, 4, 8, 0.5)
    assert not is_low(10, 8, 8, 0.2)


@pytest.mark.parametrize(
    ("status", "answer", "approved"),
    [
        (200, {"status": "approved", "valid": True}, True),  # Twilio, right code
        (200, {"status": "pending", "valid": False}, False),  # Twilio, wrong code
        (200, {"request_id": "x", "status": "completed"}, True),  # Vonage Verify v2
        (200, {"request_id": "x", "status": "16", "error_text": "wrong code"}, False),  # Vonage legacy
        (200, {"request_id": "x", "status": "0"}, True),
        (404, {"status": "approved"}, False),  # no 2xx, no approval
        (204, None, True),  # a client's own check route: 2xx alone
    ],
)
def test_check_verdicts_as_vendors_answer(status: int, answer: Any, approved: bool) -> None:
    body = json.dumps(answer).encode() if answer is not None else b""
    assert check_approved(status, body) is approved


# --------------------------------------------------------------------------- through the gateway


async def test_pumped_prefix_blocked_normal_prefix_untouched_across_replicas(
    make_gateway: GatewayFactory, vendors: Any, redis_server: RedisServer
) -> None:
    recorder = Recorder(VerifyVendor())
    vendor = await vendors(recorder)
    settings = {"storage": {"url": redis_server.url}, "alerts": {"conversion": rule()}}
    gw1 = await make_gateway(vendor.base_url, settings, policies())
    gw2 = await make_gateway(vendor.base_url, settings, policies())
    for i in range(10):  # the same volume to both ranges, through both replicas
        gw = (gw1, gw2)[i % 2]
        assert await send(gw, PUMPED[i]) == (201, "")
        assert await send(gw, NORMAL[i]) == (201, "")
        if i < 8:  # 80 % of the normal range's codes are entered; none of the pumped range's
            assert await check(gw, NORMAL[i]) == 200
    await until_due()
    seen = len(recorder.seen)
    assert await send(gw2, PUMPED[10]) == (429, "anomaly_blocked")
    assert await send(gw1, PUMPED[11]) == (429, "anomaly_blocked")
    for i in range(10, 20):  # the normal range is never touched
        assert await send((gw1, gw2)[i % 2], NORMAL[i]) == (201, "")
    assert len(recorder.seen) == seen + 10  # refused sends never reached the vendor
    refused = [r for r in requests_of(gw1, "verify") + requests_of(gw2, "verify") if r["decision"] == "deny"]
    assert [(r["reason"], r["detail"], r["conversion"]["low"]) for r in refused] == [
        ("anomaly_blocked", "conversion", "prefix")
    ] * 2
    (alert,) = alerts(gw1, gw2)  # once per prefix and window, across the replicas
    assert (alert["subject"], alert["action"], alert["sends"], alert["converted"]) == (
        "prefix",
        "block",
        10,
        0,
    )
    assert alert["prefix"] == "+3725****" and len(alert["prefix_id"]) == 16
    # The pumped codes are entered after all: the range recovers.
    for i in range(10):
        assert await check((gw1, gw2)[i % 2], PUMPED[i]) == 200
    assert await send(gw1, PUMPED[12]) == (201, "")
    assert len(alerts(gw1, gw2)) == 1


async def test_wrong_codes_do_not_convert(make_gateway: GatewayFactory, vendors: Any) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    gw = await make_gateway(vendor.base_url, {"alerts": {"conversion": rule()}}, policies())
    for number in PUMPED[:10]:
        assert await send(gw, number) == (201, "")
        assert await check(gw, number, code="000000") == 200  # the vendor says pending
    await until_due()
    assert await send(gw, PUMPED[10]) == (429, "anomaly_blocked")
    checks = requests_of(gw, "check")
    outcomes = [r for r in gw.audit() if r.get("event") == "outcome" and r.get("route") == "check"]
    assert checks and outcomes and all(r["conversion"]["approved"] is False for r in outcomes)


async def test_learn_mode_records_what_it_would_block(make_gateway: GatewayFactory, vendors: Any) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    gw = await make_gateway(vendor.base_url, {"alerts": {"conversion": rule(action="learn")}}, policies())
    for number in PUMPED[:10]:
        assert await send(gw, number) == (201, "")
    await until_due()
    assert await send(gw, PUMPED[10]) == (201, "")  # learning: nothing refused
    last = requests_of(gw, "verify")[-1]
    assert last["decision"] == "allow" and last["conversion"]["low"] == "prefix"
    assert alerts(gw) == []  # nor alerted


async def test_alert_mode_alerts_once_and_sends_on(make_gateway: GatewayFactory, vendors: Any) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    gw = await make_gateway(vendor.base_url, {"alerts": {"conversion": rule(action="alert")}}, policies())
    for number in PUMPED[:10]:
        assert await send(gw, number) == (201, "")
    await until_due()
    for number in PUMPED[10:14]:
        assert await send(gw, number) == (201, "")
    (alert,) = alerts(gw)
    assert (alert["action"], alert["subject"]) == ("alert", "prefix")


async def test_one_address_spreading_over_prefixes_is_seen(
    make_gateway: GatewayFactory, vendors: Any
) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    gw = await make_gateway(
        vendor.base_url, {"alerts": {"conversion": rule(by=["prefix", "address"])}}, policies()
    )
    spread = [f"+37255{p}{n:04d}" for p in range(53, 58) for n in range(2)]  # 5 ranges, 2 each
    for number in spread:
        assert await send(gw, number) == (201, "")
    await until_due()
    assert await send(gw, "+3725559" + "0001") == (429, "anomaly_blocked")  # a fresh range
    assert requests_of(gw, "verify")[-1]["conversion"]["low"] == "address"


async def test_a_country_is_judged_apart_from_others(make_gateway: GatewayFactory, vendors: Any) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    gw = await make_gateway(vendor.base_url, {"alerts": {"conversion": rule(by=["country"])}}, policies())
    for i in range(10):
        assert await send(gw, LATVIA[i]) == (201, "")
        assert await send(gw, NORMAL[i]) == (201, "")
        assert await check(gw, NORMAL[i]) == 200
    await until_due()
    assert await send(gw, LATVIA[10]) == (429, "anomaly_blocked")
    assert await send(gw, NORMAL[10]) == (201, "")
    assert requests_of(gw, "verify")[-2]["conversion"] == {"country": "LV", "low": "country"}


async def test_a_check_by_verification_id_converts(make_gateway: GatewayFactory, vendors: Any) -> None:
    verify_vendor = VerifyVendor()
    vendor = await vendors(Recorder(verify_vendor))
    gw = await make_gateway(vendor.base_url, {"alerts": {"conversion": rule()}}, policies())
    for number in PUMPED[:10]:
        assert await send(gw, number) == (201, "")
    for sid in list(verify_vendor.sids):  # the client names the verification, not the number
        assert await check(gw, sid=sid) == 200
    await until_due()
    assert await send(gw, PUMPED[10]) == (201, "")


async def test_sends_the_vendor_refused_are_not_counted(make_gateway: GatewayFactory, vendors: Any) -> None:
    verify_vendor = VerifyVendor(refuse_sends=True)
    vendor = await vendors(Recorder(verify_vendor))
    gw = await make_gateway(vendor.base_url, {"alerts": {"conversion": rule()}}, policies())
    for number in PUMPED[:10]:
        response = await gw.send({"To": number}, path=VERIFY)
        assert response.status == 400  # the vendor's own refusal, passed on
    await until_due()
    verify_vendor.refuse_sends = False
    assert await send(gw, PUMPED[10]) == (201, "")  # an outage at the vendor blocks nobody later


async def test_alerts_clear_lifts_a_block(
    make_gateway: GatewayFactory, vendors: Any, redis_server: RedisServer
) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    settings = {"storage": {"url": redis_server.url}, "alerts": {"conversion": rule()}}
    gw = await make_gateway(vendor.base_url, settings, policies())
    for number in PUMPED[:10]:
        assert await send(gw, number) == (201, "")
    await until_due()
    assert await send(gw, PUMPED[10]) == (429, "anomaly_blocked")
    config = gw.folder / "config.toml"
    done = await clear(config, "--prefix", PUMPED[0])
    assert done.returncode == 0, done.stderr
    assert PUMPED[0] not in done.stdout + done.stderr  # the number is not echoed back
    assert await send(gw, PUMPED[11]) == (201, "")
    # By the id the alert named, too (the operator need not know a number).
    for number in PUMPED[12:22]:
        assert await send(gw, number) == (201, "")
    await until_due()
    assert await send(gw, PUMPED[22]) == (429, "anomaly_blocked")
    prefix_id = alerts(gw)[-1]["prefix_id"]
    done = await clear(config, "--prefix", prefix_id)
    assert done.returncode == 0, done.stderr
    assert await send(gw, PUMPED[23]) == (201, "")


def test_alerts_clear_explains_memory_storage(tmp_path: Path, pki: dict[str, Path]) -> None:
    path = write_config(tmp_path, pki, "https://127.0.0.1:9", {"alerts": {"conversion": rule()}}, policies())
    done = subprocess.run(
        [*SMSGW, "alerts", "clear", "-c", str(path), "--country", "EE"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "storage.url" in done.stderr and "memory://" in done.stderr


async def test_no_number_in_logs_storage_or_alerts(
    make_gateway: GatewayFactory, vendors: Any, redis_server: RedisServer
) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    settings = {
        "storage": {"url": redis_server.url},
        "alerts": {"conversion": rule(by=["country", "prefix", "address"])},
    }
    gw = await make_gateway(vendor.base_url, settings, policies())
    for number in PUMPED[:10]:
        await send(gw, number)
    await until_due()
    assert await send(gw, PUMPED[10]) == (429, "anomaly_blocked")
    logs = gw.logs()
    stored = repr(redis_server.dump())
    for number in PUMPED[:11]:
        digits = number[1:]
        assert number not in logs and digits not in logs
        assert digits not in stored
        assert number[:-4] not in stored  # nor the prefix


@pytest.mark.parametrize(
    ("conversion", "key"),
    [
        ({"window": "50 seconds", "check_window": "20 seconds"}, "alerts.conversion.window"),
        ({"window": "1 hour", "check_window": "59 minutes"}, "alerts.conversion.window"),
        ({"threshold": 1.5}, "alerts.conversion.threshold"),
        ({"by": []}, "alerts.conversion.by"),
        ({"by": ["prefix", "prefix"]}, "alerts.conversion.by"),
        ({"action": "refuse"}, "alerts.conversion.action"),
    ],
)
def test_bad_rules_name_their_key(
    tmp_path: Path, pki: dict[str, Path], conversion: dict[str, Any], key: str
) -> None:
    path = write_config(
        tmp_path, pki, "https://127.0.0.1:9", {"alerts": {"conversion": conversion}}, policies()
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert key in str(caught.value)


def test_the_rule_needs_the_hash_key(tmp_path: Path, pki: dict[str, Path]) -> None:
    path = write_config(
        tmp_path, pki, "https://127.0.0.1:9",
        {"alerts": {"conversion": {}}, "logging": {"hash_key": "", "body": "redact"}}, policies(),
    )  # fmt: skip
    text = path.read_text().replace('hash_key = ""\n', "")
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "alerts.conversion" in str(caught.value) and "hash_key" in str(caught.value)


async def test_dry_run_and_report_show_conversion_worst_first(
    make_gateway: GatewayFactory, vendors: Any
) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    gw = await make_gateway(
        vendor.base_url,
        {"alerts": {"conversion": rule(action="learn", by=["country", "prefix"])}},
        policies(),
    )
    for i in range(10):
        assert await send(gw, PUMPED[i]) == (201, "")
        assert await send(gw, NORMAL[i]) == (201, "")
        if i < 8:
            assert await check(gw, NORMAL[i]) == 200
    audit = str(gw.folder / "logs" / "audit.jsonl")
    dry = await smsgw("alerts", "conversion", "--threshold", "0.3", "--min-sends", "8", audit)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    prefixes = [line.split() for line in lines[1:] if line.startswith("prefix")]
    assert [(p[2], p[3], p[4], p[-1]) for p in prefixes] == [
        ("10", "0", "0%", "yes"),
        ("10", "8", "80%", "0"),
    ]
    assert "1 subject(s) under 30% conversion" in dry.stderr
    report = await smsgw("audit", "report", "--format", "json", audit)
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["conversion"]
    country = [r for r in rows if r["kind"] == "country"]
    assert [(r["subject"], r["sends"], r["converted"]) for r in country] == [("EE", 20, 8)]
    assert rows[0]["kind"] == "prefix" and rows[0]["conversion"] == 0.0  # worst first
    for number in PUMPED[:10] + NORMAL[:10]:
        assert number not in dry.stdout + report.stdout


async def test_one_storage_call_a_send_and_one_a_converted_check(
    make_gateway: GatewayFactory, vendors: Any, redis_server: RedisServer
) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    settings = {
        "storage": {"url": redis_server.url},
        "alerts": {"conversion": rule(by=["country", "prefix", "address"])},
    }
    policy = policies()
    policy["default"]["client"][0]["rate_limits"] = []  # the OTP caps are the only other storage user
    gw = await make_gateway(vendor.base_url, settings, policy)
    assert await send(gw, NORMAL[0]) == (201, "")  # scripts loaded
    base = await guard_calls(gw)
    assert await send(gw, NORMAL[1]) == (201, "")
    assert await guard_calls(gw) == base + 1
    assert await check(gw, NORMAL[1]) == 200
    assert await guard_calls(gw) == base + 2
    assert await check(gw, NORMAL[1], code="000000") == 200  # a wrong code costs the guard nothing
    assert await guard_calls(gw) == base + 2


async def guard_calls(gw: Gateway) -> int:
    """Storage round trips the gateway made, less the OTP caps' (one a request here)."""
    storage = gw.running.services.storage
    return storage.round_trips - len([r for r in gw.audit() if r.get("event") == "request"])


@pytest.mark.parametrize(
    ("on_error", "answer"), [("closed", (503, "limiter_unavailable")), ("open", (201, ""))]
)
async def test_block_mode_follows_on_error_when_storage_is_down(
    make_gateway: GatewayFactory,
    vendors: Any,
    redis_server: RedisServer,
    on_error: str,
    answer: tuple[int, str],
) -> None:
    vendor = await vendors(Recorder(VerifyVendor()))
    settings = {
        "storage": {"url": redis_server.url, "on_error": on_error, "timeout_s": 0.5},
        "alerts": {"conversion": rule()},
    }
    gw = await make_gateway(vendor.base_url, settings, policies())
    assert await send(gw, NORMAL[0]) == (201, "")
    redis_server.stop()
    assert await send(gw, NORMAL[1]) == answer
    if on_error == "open":  # passed, and the record says which checks were skipped
        assert "alerts_skipped" in requests_of(gw, "verify")[-1]["detail"]
