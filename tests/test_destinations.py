"""Destinations are closed by default: a client that may send names its countries (``["*"]`` for
every one, in as many words), satellite and other non-geographic numbers pass only where their
calling code is named, and a client no rate limit counts is a warning. Through the real gateway
and the real ``smsgw`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.server.config import ConfigError, load_config
from tests.conftest import GatewayFactory, Vendor, error_of, free_port, policy, write_config

ROOT = Path(__file__).resolve().parent.parent
SMSGW = [sys.executable, "-m", "gateway"]
IRIDIUM = "+881612345678"  # +881 6: Iridium satellite phones (phonenumbers: region 001, mobile)
INMARSAT = "+870301234567"  # +870: Inmarsat
NO_COUNTRIES = policy(client={"countries": [], "rate_limits": ["600/minute"]})


def form(to: str, body: str = "hello") -> dict[str, str]:
    return {"To": to, "From": "MyBank", "Body": body}


def smsgw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*SMSGW, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env, check=False
    )


# --------------------------------------------------------------------------- non-geographic numbers


@pytest.mark.parametrize("number", [IRIDIUM, INMARSAT])
async def test_satellite_numbers_are_refused_under_any_country_and_number_type_mobile(
    make_gateway: GatewayFactory, vendor: Vendor, number: str
) -> None:
    """``countries = ["*"]`` and ``number_types = ["mobile"]`` let them through before."""
    gw = await make_gateway(
        vendor.base_url,
        policies=policy(route={"number_types": ["mobile"]}, client={"countries": ["*"]}),
    )
    marker = "satellite-marker-7c1d"
    answer = await gw.send(form(number, marker))
    assert answer.status == 403
    error = error_of(await answer.read())
    assert error["code"] == "destination_not_allowed"
    assert "non-geographic number" in error["message"] and number[:4] in error["message"]
    assert number not in error["message"]
    assert vendor.received == []  # nothing reached the vendor
    (record,) = gw.audit()
    assert (record["decision"], record["reason"]) == ("deny", "destination_not_allowed")
    assert record["detail"] == f"non_geographic:{number[:4]}"
    logs = gw.logs()
    assert number not in logs and number[1:] not in logs and marker not in logs
    # a geographic mobile number still goes through
    assert (await gw.send(form("+37255512367"))).status == 201


async def test_a_named_calling_code_allows_its_numbers_and_no_other(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(vendor.base_url, policies=policy(client={"countries": ["EE", "+881"]}))
    assert (await gw.send(form(IRIDIUM))).status == 201
    assert len(vendor.received) == 1
    answer = await gw.send(form(INMARSAT))
    assert answer.status == 403
    assert error_of(await answer.read())["code"] == "destination_not_allowed"
    assert len(vendor.received) == 1


def test_a_calling_code_of_a_country_is_refused_with_the_key(tmp_path: Path, pki: dict[str, Path]) -> None:
    write_config(tmp_path, pki, "https://127.0.0.1:1", policies=policy(client={"countries": ["+44"]}))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.toml")
    (problem,) = info.value.problems
    assert problem.key == "client[0].countries[0]"
    assert "'+44' is not a non-geographic calling code" in problem.message
    assert "+881" in problem.message and "ISO 3166" in problem.message


# --------------------------------------------------------------------------- countries required


def test_check_config_refuses_a_sending_client_without_countries(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    config = write_config(tmp_path, pki, "https://127.0.0.1:1", policies=NO_COUNTRIES)
    result = smsgw("check-config", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    line = "policies/default.toml: client[0].countries: client 'billing' may send"
    assert line in result.stderr
    assert 'countries = ["*"]' in result.stderr
    assert "1 problem(s); nothing was started." in result.stderr


def test_serve_refuses_a_sending_client_without_countries_and_never_listens(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    port = free_port()
    settings = {"server": {"listen": f"127.0.0.1:{port}"}, "admin": {"listen": f"127.0.0.1:{free_port()}"}}
    config = write_config(tmp_path, pki, "https://127.0.0.1:1", settings, NO_COUNTRIES)
    result = smsgw("serve", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "client[0].countries" in result.stderr and 'countries = ["*"]' in result.stderr
    assert not (tmp_path / "logs" / "audit.jsonl").exists()  # nothing started


async def test_a_reload_that_drops_countries_is_refused(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    gw = await make_gateway(vendor.base_url)
    write_config(gw.folder, gw.pki, vendor.base_url, None, NO_COUNTRIES)
    assert await gw.running.reload() is False
    (rejected,) = [r for r in gw.audit_all() if r["event"] == "config_rejected"]
    assert [p["key"] for p in rejected["problems"]] == ["client[0].countries"]
    assert (await gw.send()).status == 201  # the old policy keeps serving


def client_only(**changes: Any) -> dict[str, dict[str, Any]]:
    """The default policy with a client ``other`` besides billing."""
    doc = policy()
    doc["default"]["client"].append({"id": "other", **changes})
    return doc


@pytest.mark.parametrize(
    ("other", "refused"),
    [
        pytest.param({"scopes": ["sms:send"]}, True, id="same-scopes"),
        pytest.param({"scopes": ["sms:send", "admin"]}, True, id="more-scopes"),
        pytest.param({"scopes": ["reports:read"]}, False, id="no-send-route"),
    ],
)
def test_countries_are_required_where_the_scopes_reach_a_send_route(
    tmp_path: Path, pki: dict[str, Path], other: dict[str, Any], refused: bool
) -> None:
    write_config(tmp_path, pki, "https://127.0.0.1:1", policies=client_only(**other))
    if not refused:
        load_config(tmp_path / "config.toml")
        return
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.toml")
    assert [p.key for p in info.value.problems] == ["client[1].countries"]


# --------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize(
    ("route", "client", "warned"),
    [
        pytest.param({}, {}, True, id="none"),
        pytest.param({}, {"rate_limits": ["600/minute"]}, False, id="client"),
        pytest.param({"rate_limits": ["100/second"]}, {}, False, id="route"),
        pytest.param({"recipient_limits": ["5/hour"]}, {}, False, id="recipient"),
        pytest.param({"country_limits": {"*": ["100/hour"]}}, {}, False, id="country"),
    ],
)
def test_a_client_no_rate_limit_counts_is_a_warning(
    tmp_path: Path, pki: dict[str, Path], route: dict[str, Any], client: dict[str, Any], warned: bool
) -> None:
    config = write_config(tmp_path, pki, "https://127.0.0.1:1", policies=policy(route=route, client=client))
    result = smsgw("check-config", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warning = "client[0].rate_limits: warning: client 'billing' has no rate limit on route 'twilio-send'"
    assert (warning in result.stderr) is warned
    assert ("1 warning(s)" in result.stdout) is warned
