"""Anomaly alerts (``[alerts]``, gateway/alerts/anomalies.py): each rule fires on crafted traffic and not on
normal traffic, block mode refuses (429 ``anomaly_blocked``), and the alert webhook receives a
signed POST that an independent RFC 9421 library verifies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from aiohttp import web
from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256
from multidict import CIMultiDict

from gateway.server.config import ConfigError, load_config
from tests.conftest import (
    CLIENT_USER,
    Gateway,
    GatewayFactory,
    RedisServer,
    Vendor,
    basic,
    error_of,
    write_config,
)
from tests.test_audit_review import smsgw
from tests.test_metrics import parse, scrape, value

ALERT_SECRET = "alert-secret-4f1e9b2c7d3a8e6f0b5c1d9a2e7f3b8c"
WRONG = basic(CLIENT_USER, "wrong-password")


def form(to: str = "+37255512367") -> dict[str, str]:
    return {"To": to, "From": "MyBank", "Body": "hello"}


def example(region: str) -> str:
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def alerts_of(gw: Gateway) -> list[dict[str, Any]]:
    return [r for r in gw.audit_all() if r["event"] == "alert"]


async def status_of(
    gw: Gateway, data: dict[str, str] | None = None, auth: str | None = None
) -> tuple[int, str]:
    response = await gw.send(data or form(), auth=auth)
    payload = await response.read()
    return response.status, error_of(payload)["code"] if response.status >= 400 else ""


# --------------------------------------------------------------------------- auth failures


async def test_auth_failures_alert_once_over_the_threshold(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(
        vendor.base_url, settings={"alerts": {"auth_failures": {"threshold": 3, "window": "1 hour"}}}
    )
    for _ in range(10):  # normal traffic
        assert (await status_of(gw))[0] == 201
    for _ in range(3):
        assert await status_of(gw, auth=WRONG) == (401, "unauthenticated")
    assert alerts_of(gw) == []  # at the threshold, not over it
    for _ in range(2):
        assert (await status_of(gw, auth=WRONG))[0] == 401
    (alert,) = alerts_of(gw)  # once, however many follow
    assert (alert["rule"], alert["action"], alert["ip"]) == ("auth_failures", "alert", "127.0.0.1")
    assert (alert["count"], alert["threshold"], alert["route"]) == (4, 3, "twilio-send")
    assert (await status_of(gw))[0] == 201  # alert mode refuses nothing
    m = parse((await scrape(gw.admin))[1])
    assert value(m, "smsgw_alerts_total", rule="auth_failures", action="alert") == 1


async def test_auth_failures_block_the_address(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    gw = await make_gateway(
        vendor.base_url,
        settings={"alerts": {"auth_failures": {"threshold": 2, "window": "1 hour", "action": "block"}}},
    )
    for _ in range(2):
        assert (await status_of(gw, auth=WRONG))[0] == 401
    assert (await status_of(gw))[0] == 201  # not over the threshold yet
    assert (await status_of(gw, auth=WRONG))[0] == 401  # the third failure blocks
    response = await gw.send(form())  # even with the right password
    assert response.status == 429
    assert error_of(await response.read())["code"] == "anomaly_blocked"
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    record = gw.audit()[-1]
    assert (record["decision"], record["reason"], record["detail"]) == (
        "deny",
        "anomaly_blocked",
        "auth_failures",
    )
    (alert,) = alerts_of(gw)
    assert alert["action"] == "block"


# --------------------------------------------------------------------------- client volume


def volume_bucket(window_s: int = 3600) -> int:
    return int(time.time() // window_s)


async def test_client_volume_against_its_own_recent_rate(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    """Baseline: 10 messages in the two windows before -> 5 per window; 2 x 5 = 10 is the limit."""
    rule = {"multiple": 2.0, "min_messages": 3, "window": "1 hour", "baseline": "2 hours"}
    redis_server.client().set(f"smsgw:al:vol:{{billing}}:{volume_bucket() - 1}", 10, ex=7200)
    gw = await make_gateway(
        vendor.base_url, settings={"storage": {"url": redis_server.url}, "alerts": {"client_volume": rule}}
    )
    for _ in range(10):
        assert (await status_of(gw))[0] == 201
    assert alerts_of(gw) == []  # up to twice its usual rate is normal
    assert (await status_of(gw))[0] == 201
    (alert,) = alerts_of(gw)
    assert (alert["rule"], alert["client"], alert["count"], alert["threshold"]) == (
        "client_volume",
        "billing",
        11,
        10,
    )
    assert alert["baseline"] == 5.0


async def test_client_volume_block_refuses_without_counting(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    """No history: ``min_messages`` is the limit. Blocked messages do not raise the baseline."""
    rule = {"multiple": 2.0, "min_messages": 3, "window": "1 hour", "baseline": "2 hours", "action": "block"}
    gw = await make_gateway(
        vendor.base_url, settings={"storage": {"url": redis_server.url}, "alerts": {"client_volume": rule}}
    )
    for _ in range(3):
        assert (await status_of(gw))[0] == 201
    for _ in range(2):
        response = await gw.send(form())
        assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    assert int(redis_server.client().get(f"smsgw:al:vol:{{billing}}:{volume_bucket()}")) == 3
    (alert,) = alerts_of(gw)
    assert (alert["action"], alert["count"], alert["threshold"]) == ("block", 4, 3)


# --------------------------------------------------------------------------- number prefixes


async def test_number_prefix_alert_on_many_numbers_in_one_range(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(vendor.base_url, settings={"alerts": {"number_prefix": {"threshold": 3}}})
    # normal traffic: the same numbers again and again, and numbers in many different ranges
    for number in (
        "+37255510001",
        "+37255510002",
        "+37255510003",
        "+37255510001",
        "+37255520001",
        "+37255530001",
    ):
        assert (await status_of(gw, form(number)))[0] == 201
    assert alerts_of(gw) == []
    assert (await status_of(gw, form("+37255510004")))[0] == 201  # a 4th number in +3725551....
    assert (await status_of(gw, form("+37255510005")))[0] == 201
    (alert,) = alerts_of(gw)  # once per prefix and window
    assert (alert["rule"], alert["country"], alert["count"], alert["threshold"]) == (
        "number_prefix",
        "EE",
        4,
        3,
    )
    assert alert["prefix"] == "+3725****" and len(alert["prefix_id"]) == 12
    text = (gw.folder / "logs" / "audit.jsonl").read_text()
    assert "3725551000" not in text and "+3725551" not in text  # no number or range in clear
    code, out, err = smsgw(
        "audit", "verify", "-c", str(gw.folder / "config.toml"), str(gw.folder / "logs" / "audit.jsonl")
    )
    assert code == 0, out + err


async def test_number_prefix_block_refuses_new_numbers_only(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(
        vendor.base_url, settings={"alerts": {"number_prefix": {"threshold": 2, "action": "block"}}}
    )
    for number in ("+37255510001", "+37255510002"):
        assert (await status_of(gw, form(number)))[0] == 201
    assert await status_of(gw, form("+37255510003")) == (429, "anomaly_blocked")
    assert (await status_of(gw, form("+37255510001")))[0] == 201  # a number already counted passes
    assert (await status_of(gw, form("+37255520001")))[0] == 201  # another range is not affected
    assert [a["action"] for a in alerts_of(gw)] == ["block"]


# --------------------------------------------------------------------------- new countries


async def test_new_country_learns_then_alerts(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    settings = {"storage": {"url": redis_server.url}, "alerts": {"new_country": {"learn": "7 days"}}}
    us, gb, de = example("US"), example("GB"), example("DE")
    learning = await make_gateway(vendor.base_url, settings=settings)
    for to in ("+37255512367", us):
        assert (await status_of(learning, form(to)))[0] == 201
    assert alerts_of(learning) == []  # the client's first days teach its usual countries
    # eight days later (the client's start moved back), in a process that knows nothing yet
    redis_server.client().set("smsgw:al:since:billing", repr(time.time() - 8 * 86400))
    later = await make_gateway(vendor.base_url, settings=settings)
    for to in ("+37255512367", us, "+37255510001"):
        assert (await status_of(later, form(to)))[0] == 201
    assert alerts_of(later) == []
    assert (await status_of(later, form(gb)))[0] == 201
    assert (await status_of(later, form(gb)))[0] == 201  # raised once, then usual
    assert [(a["rule"], a["country"], a["client"]) for a in alerts_of(later)] == [
        ("new_country", "GB", "billing")
    ]
    blocking = await make_gateway(
        vendor.base_url,
        settings={"storage": {"url": redis_server.url}, "alerts": {"new_country": {"action": "block"}}},
    )
    assert (await status_of(blocking, form(us)))[0] == 201
    assert await status_of(blocking, form(de)) == (429, "anomaly_blocked")
    assert await status_of(blocking, form(de)) == (429, "anomaly_blocked")  # stays refused
    assert [(a["country"], a["action"]) for a in alerts_of(blocking)] == [("DE", "block")]


# --------------------------------------------------------------------------- the webhook


@dataclass
class _Message:
    method: str
    url: str
    headers: CIMultiDict[str]


@dataclass
class AlertReceiver:
    """An internal service on loopback that takes alert POSTs (the first ``fail`` get 503)."""

    fail: int = 0
    received: list[tuple[CIMultiDict[str], bytes, str]] | None = None
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        self.received = []

        async def take(request: web.Request) -> web.Response:
            body = await request.read()
            assert self.received is not None
            self.received.append((CIMultiDict(request.headers), body, str(request.url)))
            if len(self.received) <= self.fail:
                return web.Response(status=503)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/alerts", take)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/alerts"

    async def wait_for(self, count: int, timeout_s: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.received or []) < count:
            assert asyncio.get_running_loop().time() < deadline, self.received
            await asyncio.sleep(0.05)


@pytest.fixture
async def receiver() -> Any:
    r = AlertReceiver(fail=1)
    await r.start()
    yield r
    assert r.runner is not None
    await r.runner.cleanup()


async def test_alert_webhook_gets_a_signed_post_retried_after_a_failure(
    make_gateway: GatewayFactory, vendor: Vendor, receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSGW_TEST_ALERT_SECRET", ALERT_SECRET)
    hook = {"url": receiver.url, "secret": "env:SMSGW_TEST_ALERT_SECRET", "key_id": "gw-alerts"}
    gw = await make_gateway(
        vendor.base_url,
        settings={"alerts": {"webhook": hook, "auth_failures": {"threshold": 1, "window": "1 hour"}}},
    )
    for _ in range(2):
        await status_of(gw, auth=WRONG)
    await receiver.wait_for(2)  # 503 first, then a retry (after 0.5 s) that is taken
    assert receiver.received is not None
    (first_headers, first_body, _), (headers, body, url) = receiver.received
    assert first_body == body  # the same alert, signed again
    assert first_headers["Signature"] != headers["Signature"]  # fresh created/nonce per attempt
    verifier = HTTPMessageVerifier(
        signature_algorithm=HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={"gw-alerts": ALERT_SECRET.encode()}, private_keys={}),
    )
    (verified,) = verifier.verify(_Message("POST", url, headers), body=body)  # an independent library
    assert verified.parameters["keyid"] == "gw-alerts" and verified.parameters["alg"] == "hmac-sha256"
    assert {'"@method"', '"@target-uri"', '"content-digest"'} <= set(verified.covered_components)
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert headers["Content-Digest"] == f"sha-256=:{digest}:"
    assert headers["Content-Type"] == "application/json"
    alert = json.loads(body)
    assert (alert["event"], alert["rule"], alert["action"], alert["ip"]) == (
        "alert",
        "auth_failures",
        "alert",
        "127.0.0.1",
    )
    assert len(alert["id"]) == 32 and alert["ts"].endswith("Z")
    # a forged signature does not verify (the check is not vacuous)
    forged = CIMultiDict(headers)
    forged["Signature"] = "sig1=:" + base64.b64encode(b"x" * 32).decode() + ":"
    with pytest.raises(Exception):  # noqa: B017 (the library raises its own error types)
        verifier.verify(_Message("POST", url, forged), body=body)
    m = parse((await scrape(gw.admin))[1])
    assert value(m, "smsgw_alert_webhook_total", result="retried") == 1
    assert value(m, "smsgw_alert_webhook_total", result="delivered") == 1


async def test_a_reload_turns_alerts_on(
    make_gateway: GatewayFactory, vendor: Vendor, receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSGW_TEST_ALERT_SECRET", ALERT_SECRET)
    receiver.fail = 0
    gw = await make_gateway(vendor.base_url)
    await status_of(gw, auth=WRONG)
    settings = {
        "alerts": {
            "webhook": {"url": receiver.url, "secret": "env:SMSGW_TEST_ALERT_SECRET"},
            "auth_failures": {"threshold": 1, "window": "1 hour", "action": "block"},
        }
    }
    write_config(gw.folder, gw.pki, vendor.base_url, settings)
    assert await gw.running.reload()
    for _ in range(2):
        await status_of(gw, auth=WRONG)
    assert (await status_of(gw))[1] == "anomaly_blocked"
    await receiver.wait_for(1)
    assert json.loads(receiver.received[0][1])["rule"] == "auth_failures"  # type: ignore[index]


# --------------------------------------------------------------------------- storage failures


async def test_storage_down_alert_rules_pass_block_rules_follow_on_error(
    make_gateway: GatewayFactory, vendor: Vendor, redis_server: RedisServer
) -> None:
    watching = await make_gateway(
        vendor.base_url,
        settings={"storage": {"url": redis_server.url}, "alerts": {"number_prefix": {"threshold": 5}}},
    )
    blocking = await make_gateway(
        vendor.base_url,
        settings={
            "storage": {"url": redis_server.url, "on_error": "closed"},
            "alerts": {"number_prefix": {"threshold": 5, "action": "block"}},
        },
    )
    redis_server.stop()
    assert (await status_of(watching))[0] == 201  # an alert rule never refuses
    assert await status_of(blocking) == (503, "limiter_unavailable")  # a block rule fails closed
    m = parse((await scrape(watching.admin))[1])
    assert value(m, "smsgw_storage_errors_total", during="alerts") == 1


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("alerts", "key", "fragment"),
    [
        ({"webhook": {"url": "http://alerts.example.com/x", "secret": "env:SMSGW_TEST_ALERT_SECRET"}},
         "alerts.webhook.url", "plain http is allowed only"),
        ({"webhook": {"url": "https://alerts.example.com/x", "secret": ALERT_SECRET}},
         "alerts.webhook.secret", "secrets must not be written inline"),
        ({"webhook": {"url": "https://alerts.example.com/x"}}, "alerts.webhook.secret", "required"),
        ({"client_volume": {"window": "1 hour", "baseline": "90 minutes"}}, "alerts.client_volume.baseline",
         "whole number of windows"),
        ({"auth_failures": {"action": "ban"}}, "alerts.auth_failures.action", "'alert' or 'block'"),
        ({"number_prefix": {"window": "0 seconds"}}, "alerts.number_prefix.window", "longer than 0"),
        ({"new_country": {"learn": "30 days", "remember": "7 days"}}, "alerts.new_country.remember",
         "shorter"),
    ],
)  # fmt: skip
def test_alert_config_problems_name_the_key(
    tmp_path: Path,
    pki: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    alerts: dict,
    key: str,
    fragment: str,
) -> None:
    monkeypatch.setenv("SMSGW_TEST_ALERT_SECRET", ALERT_SECRET)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, pki, "https://127.0.0.1:1", {"alerts": alerts}))
    (problem,) = info.value.problems
    assert (problem.key, fragment in problem.message) == (key, True), str(problem)


def test_number_prefix_needs_the_hash_key(tmp_path: Path, pki: dict[str, Path]) -> None:
    settings = {
        "logging": {"body": "redact", "recipient": "mask", "hash_key": ""},
        "alerts": {"number_prefix": {}},
    }
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, pki, "https://127.0.0.1:1", settings))
    assert [p.key for p in info.value.problems] == ["alerts.number_prefix"]
