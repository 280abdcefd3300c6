"""``smsgw explain`` (gateway/commands/explain.py): the stage that would refuse a request, and why, for the
same requests the real server refuses — without calling the vendor or spending a limit — and
``--cases`` files that fail a CI run when a policy change alters a verdict."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from gateway.commands.explain import Case, Explainer
from gateway.server.config import load_config
from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    DEFAULT_POLICY,
    GatewayFactory,
    Recorder,
    basic,
    error_of,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent
SMSGW = [sys.executable, "-m", "gateway"]
SEND = f"https://gw.example/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
AUTH = {"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)}


def policies() -> dict[str, Any]:
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["client"][0].update(
        countries=["EE", "LV"],
        senders=["MyBank"],
        rate_limits=["1/hour"],
        ip_allow=["127.0.0.0/8", "10.0.0.0/8"],
    )
    return {"default": doc}


def case(body: str = "To=%2B37255512367&From=MyBank&Body=hello", **changes: Any) -> Case:
    fields: dict[str, Any] = {
        "method": "POST",
        "url": SEND,
        "headers": tuple({**FORM, **AUTH}.items()),
        "body": body.encode(),
    }
    fields.update(changes)
    return Case(**fields)


#: Requests the server refuses, with the stage and reason explain must name for each.
REFUSED: list[tuple[str, Case, int, str, str]] = [
    ("wrong password", case(headers=tuple({**FORM, "Authorization": basic(CLIENT_USER, "nope")}.items())),
     401, "unauthenticated", "authenticate"),
    ("no such route", case(url="https://gw.example/v1/other"), 404, "route_not_found", "route"),
    ("GET on a POST route", case(method="GET", body=""), 405, "method_not_allowed", "route"),
    ("address outside the allowlist", case(peer="192.0.2.7"), 403, "ip_not_allowed", "authenticate"),
    ("country not allowed", case("To=%2B4915123456789&From=MyBank&Body=hi"), 403, "destination_not_allowed",
     "recipients"),
    ("sender not allowed", case("To=%2B37255512367&From=Other&Body=hi"), 403, "sender_not_allowed",
     "recipients"),
    ("not a number", case("To=12345&From=MyBank&Body=hi"), 422, "invalid_recipient", "recipients"),
    ("plain HTTP", case(tls=False), 403, "tls_required", "https"),
]  # fmt: skip


@pytest.fixture
def config_path(tmp_path: Path, pki: dict[str, Path]) -> Path:
    return write_config(tmp_path / "gw", pki, "https://127.0.0.1:9", policies=policies())


async def test_explain_names_the_stage_the_server_refuses_at(
    make_gateway: GatewayFactory, vendors: Any, tmp_path: Path
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    gw = await make_gateway(vendor.base_url, policies=policies())
    explainer = await Explainer.open(load_config(gw.folder / "config.toml"))
    try:
        for name, request, status, reason, stage in REFUSED:
            got = await explainer.explain(request)
            refused = [v for v in got.stages if v.outcome == "refused"]
            assert (got.status, got.reason, refused[0].stage) == (status, reason, stage), name
            if request.tls and request.peer.startswith("127."):  # what the server says to the same request
                path = request.url.removeprefix("https://gw.example")
                response = await gw.session.request(
                    request.method, gw.base + path, data=request.body, headers=dict(request.headers)
                )
                payload = await response.read()
                assert (response.status, error_of(payload)["code"]) == (status, reason), name
        allowed = await explainer.explain(case())
        assert (allowed.status, allowed.reason, allowed.route, allowed.client) == (
            200,
            None,
            "twilio-send",
            "billing",
        )
        assert allowed.audit is not None and allowed.audit["decision"] == "allow"
        assert "+37255512367" not in json.dumps(allowed.audit)  # the record as the log would hold it
        # 1/hour: explain spends nothing, so the real gateway still has its one send ...
        assert (await explainer.explain(case())).reason is None
    finally:
        await explainer.close()
    assert recorder.seen == []  # ... and explain never reached the vendor
    assert (await gw.send()).status == 201
    assert (await gw.send()).status == 429


async def test_as_a_client_skips_the_credential(config_path: Path) -> None:
    explainer = await Explainer.open(load_config(config_path))
    try:
        got = await explainer.explain(case(headers=tuple(FORM.items()), as_client="billing"))
        assert got.reason is None and got.client == "billing"
        assert [v.outcome for v in got.stages if v.stage == "authenticate"] == ["passed"]
        got = await explainer.explain(case("To=%2B4915123456789&From=MyBank&Body=x", as_client="billing"))
        assert got.reason == "destination_not_allowed"
    finally:
        await explainer.close()


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMSGW, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


async def test_the_command_prints_every_stage_and_exits_by_verdict(config_path: Path) -> None:
    done = await asyncio.to_thread(
        run, "explain", "-c", str(config_path), "--as", "billing",
        "-d", "To=%2B4915123456789&From=MyBank&Body=secret-body-marker", SEND,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "route: twilio-send (sms)   client: billing"
    assert any(line.split()[:2] == ["route", "passed"] for line in lines)
    assert lines[-1] == "verdict: 403 destination_not_allowed (detail: country:DE)"
    assert "secret-body-marker" not in done.stdout + done.stderr
    assert "4915123456789" not in done.stdout + done.stderr
    ok = await asyncio.to_thread(
        run, "explain", "-c", str(config_path), "--as", "billing", "--format", "json",
        "-d", "To=%2B37255512367&From=MyBank&Body=hi", SEND,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert (doc["decision"], doc["route"], doc["audit_record"]["event"]) == (
        "allow",
        "twilio-send",
        "request",
    )


def write_cases(path: Path, cases: list[dict[str, Any]]) -> Path:
    path.write_text(tomli_w.dumps({"case": cases}))
    return path


async def test_cases_pass_and_a_changed_policy_fails_them(config_path: Path, tmp_path: Path) -> None:
    cases = write_cases(
        tmp_path / "cases.toml",
        [
            {"name": "Estonia is allowed", "method": "POST", "url": SEND, "as": "billing",
             "headers": FORM, "body": "To=%2B37255512367&From=MyBank&Body=hi",
             "expect": {"decision": "allow", "route": "twilio-send"}},
            {"name": "Germany is not", "method": "POST", "url": SEND, "as": "billing",
             "headers": FORM, "body": "To=%2B4915123456789&From=MyBank&Body=hi",
             "expect": {"status": 403, "reason": "destination_not_allowed", "stage": "recipients"}},
        ],
    )  # fmt: skip
    done = await asyncio.to_thread(run, "explain", "-c", str(config_path), "--cases", str(cases))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 0 failed" in done.stderr
    # A policy change that opens Germany fails the second case.
    opened = policies()
    opened["default"]["client"][0]["countries"] = ["EE", "LV", "DE"]
    (config_path.parent / "policies" / "default.toml").write_text(tomli_w.dumps(opened["default"]))
    done = await asyncio.to_thread(run, "explain", "-c", str(config_path), "--cases", str(cases))
    assert done.returncode == 1
    assert "FAIL Germany is not: allow" in done.stdout
    assert "reason: expected 'destination_not_allowed', got None" in done.stdout


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ([{"method": "POST"}], "case[0].url: required text"),
        ([{"method": "POST", "url": SEND, "colour": "red"}], "case[0].colour: unknown key"),
        ([{"method": "POST", "url": SEND, "from": "not-an-ip"}], "case[0].from: not an IP address"),
        ([{"method": "POST", "url": SEND, "expect": {"verdict": "allow"}}], "case[0].expect"),
        ([], "case: at least one [[case]] table"),
    ],
)
async def test_bad_cases_files_name_the_key(
    config_path: Path, tmp_path: Path, cases: list[dict[str, Any]], message: str
) -> None:
    path = tmp_path / "cases.toml"
    path.write_text(tomli_w.dumps({"case": cases}) if cases else "")
    done = await asyncio.to_thread(run, "explain", "-c", str(config_path), "--cases", str(path))
    assert done.returncode == 2
    assert message in done.stderr and str(path) in done.stderr


async def test_the_shipped_policy_cases_pass(tmp_path: Path, pki: dict[str, Path]) -> None:
    """``cases/policies.toml`` holds the verdicts of the shipped ``policies/``; a change that alters
    one fails here, as it would in a platform team's CI."""
    shutil.copy(ROOT / "config.example.toml", tmp_path / "config.example.toml")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (tmp_path / "tls").mkdir()
    shutil.copy(pki["gateway_cert"], tmp_path / "tls" / "cert.pem")
    shutil.copy(pki["gateway_key"], tmp_path / "tls" / "key.pem")
    env = {
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "example-auth-token-3f9a1c7e5b2d8046",
        "SMSGW_LOG_HASH_KEY": "example-hash-key-0123456789abcdef0123456789abcdef",
    }
    cases = str(ROOT / "cases" / "policies.toml")
    done = await asyncio.to_thread(
        subprocess.run,
        [*SMSGW, "explain", "-c", str(tmp_path / "config.example.toml"), "--cases", cases],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failed" in done.stderr


async def test_a_country_refusal_names_the_region_the_number_is_in(config_path: Path) -> None:
    """+44 7911 is Guernsey to phonenumbers (and to the policy), not GB: the detail says so."""
    explainer = await Explainer.open(load_config(config_path))
    try:
        got = await explainer.explain(case("To=%2B447911123456&From=MyBank&Body=hi", as_client="billing"))
        assert (got.reason, got.detail) == ("destination_not_allowed", "country:GG")
        assert got.audit is not None and got.audit["countries"] == ["GG"]
    finally:
        await explainer.close()
