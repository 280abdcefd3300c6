"""A config that loosens the one it replaces is named: ``weakenings(old, new)`` (pure), the
``policy_weakened`` audit event and warning of a reload of a real ``smsgw serve`` (SIGHUP), and
``smsgw check-config --against OLD``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config.weakening import BODY_STRENGTH, RECIPIENT_STRENGTH, Weakening, weakenings
from gateway.server.config import Config, load_config
from tests.conftest import DEFAULT_POLICY, GatewayFactory, Vendor, deep_merge, free_port, write_config
from tests.test_reload import _wait_for

ROOT = Path(__file__).resolve().parent.parent
SMSGW = [sys.executable, "-m", "gateway"]
VENDOR_URL = "https://127.0.0.1:1"
POLICY_FILE = "new/policies/default.toml"  # as the compared config writes it (cwd: the two folders)


def doc(client: dict[str, Any] | None = None, route: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default policy, closed down: addresses, countries, limits, senders, number types."""
    base = deep_merge(DEFAULT_POLICY, {})
    base["client"][0].update(
        {
            "ip_allow": ["10.20.0.0/16"],
            "countries": ["EE", "LV"],
            "senders": ["MyBank"],
            "rate_limits": ["600/minute", "20000/day"],
        }
    )
    base["route"][0].update(
        {
            "ip_allow": ["10.0.0.0/8"],
            "rate_limits": ["100/second"],
            "recipient_limits": ["5/hour"],
            "country_limits": {"EE": ["1000/hour"], "*": ["100/hour"]},
            "number_types": ["mobile"],
            "scopes": ["sms:send"],
        }
    )
    base["client"][0].update(client or {})
    base["route"][0].update(route or {})
    return base


class Pair:
    """Two config folders; ``compare`` loads both and returns what the second loosens."""

    def __init__(self, root: Path, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.pki = root, pki
        monkeypatch.chdir(root)

    def write(self, name: str, settings: dict[str, Any] | None, policy: dict[str, Any]) -> Path:
        return write_config(self.root / name, self.pki, VENDOR_URL, settings, {"default": policy})

    def load(self, name: str, settings: dict[str, Any] | None, policy: dict[str, Any]) -> Config:
        return load_config(self.write(name, settings, policy))

    def compare(
        self,
        new_policy: dict[str, Any] | None = None,
        new_settings: dict[str, Any] | None = None,
        old_policy: dict[str, Any] | None = None,
        old_settings: dict[str, Any] | None = None,
    ) -> list[Weakening]:
        old = self.load("old", old_settings, old_policy or doc())
        new = self.load("new", new_settings, new_policy or doc())
        return weakenings(old, new)


@pytest.fixture
def pair(tmp_path: Path, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Pair:
    return Pair(tmp_path, pki, monkeypatch)


def keyed(found: list[Weakening]) -> dict[str, str]:
    return {w.key: w.message for w in found}


def test_the_same_config_weakens_nothing(pair: Pair) -> None:
    assert pair.compare() == []


@pytest.mark.parametrize(
    ("client", "route", "key", "message"),
    [
        pytest.param(
            {"ip_allow": []},
            {},
            "client[0].ip_allow",
            "dropped (was 10.20.0.0/16): any address",
            id="client-ip-dropped",
        ),
        pytest.param(
            {"ip_allow": ["10.20.0.0/15"]},
            {},
            "client[0].ip_allow",
            "widened by 10.20.0.0/15",
            id="client-ip-widened",
        ),
        pytest.param(
            {},
            {"ip_allow": []},
            "route[0].ip_allow",
            "dropped (was 10.0.0.0/8): any address",
            id="route-ip-dropped",
        ),
        pytest.param(
            {},
            {"ip_allow": ["10.0.0.0/8", "::1"]},
            "route[0].ip_allow",
            "widened by ::1/128",
            id="route-ip-widened",
        ),
        pytest.param(
            {"countries": ["EE", "LV", "US"]},
            {},
            "client[0].countries",
            "countries added: US",
            id="country-added",
        ),
        pytest.param(
            {"countries": ["*"]},
            {},
            "client[0].countries",
            'widened to "*" (every country)',
            id="countries-any",
        ),
        pytest.param(
            {"countries": ["EE", "LV", "+881"]},
            {},
            "client[0].countries",
            "countries added: +881",
            id="satellite",
        ),
        pytest.param(
            {"rate_limits": []},
            {},
            "client[0].rate_limits",
            "removed (was 600/minute, 20000/day)",
            id="client-rates-removed",
        ),
        pytest.param(
            {"rate_limits": ["6000/minute", "20000/day"]},
            {},
            "client[0].rate_limits",
            "600/minute raised to 6000/minute",
            id="client-rate-raised",
        ),
        pytest.param(
            {"rate_limits": ["600/minute"]},
            {},
            "client[0].rate_limits",
            "20000/day removed",
            id="client-rate-one-removed",
        ),
        pytest.param(
            {},
            {"rate_limits": []},
            "route[0].rate_limits",
            "removed (was 100/second)",
            id="route-rates-removed",
        ),
        pytest.param(
            {},
            {"recipient_limits": ["50/hour"]},
            "route[0].recipient_limits",
            "5/hour raised to 50/hour",
            id="recipient-raised",
        ),
        pytest.param(
            {},
            {"country_limits": {"*": ["100/hour"]}},
            "route[0].country_limits.EE",
            "removed (was 1000/hour)",
            id="country-limit-removed",
        ),
        pytest.param(
            {},
            {"country_limits": {"EE": ["1000/hour"], "*": ["101/hour"]}},
            'route[0].country_limits."*"',
            "100/hour raised to 101/hour",
            id="country-limit-raised",
        ),
        pytest.param(
            {"scopes": ["sms:send", "otp:send"]},
            {},
            "client[0].scopes",
            "scopes added: otp:send",
            id="client-scope-added",
        ),
        pytest.param(
            {},
            {"scopes": []},
            "route[0].scopes",
            "scopes no longer required: sms:send",
            id="route-scope-removed",
        ),
        pytest.param(
            {}, {"auth": ["basic", "hmac"]}, "route[0].auth", "credential kinds added: hmac", id="auth-added"
        ),
        pytest.param(
            {"senders": []}, {}, "client[0].senders", "dropped: any sender ID", id="senders-dropped"
        ),
        pytest.param(
            {},
            {"number_types": ["mobile", "premium_rate"]},
            "route[0].number_types",
            "number types added: premium_rate",
            id="number-type-added",
        ),
    ],
)
def test_each_loosening_of_a_client_or_route_is_named(
    pair: Pair, client: dict[str, Any], route: dict[str, Any], key: str, message: str
) -> None:
    found = pair.compare(doc(client, route))
    assert [(w.file, w.key, w.message) for w in found] == [(POLICY_FILE, key, message)]
    (weakening,) = found
    kind, name = ("client", "billing") if key.startswith("client") else ("route", "twilio-send")
    assert weakening.as_record() == {"file": POLICY_FILE, "key": key, kind: name, "change": message}
    assert str(weakening) == f"{POLICY_FILE}: {key}: weakened: {message}"


@pytest.mark.parametrize(
    ("client", "route"),
    [
        pytest.param({"ip_allow": ["10.20.1.0/24"]}, {"ip_allow": ["10.1.0.0/16"]}, id="narrower-addresses"),
        pytest.param({"countries": ["EE"]}, {}, id="fewer-countries"),
        pytest.param({"rate_limits": ["60/minute", "2000/day", "1/second"]}, {}, id="lower-and-more-rates"),
        pytest.param({"scopes": []}, {"scopes": ["sms:send", "sms:extra"]}, id="scope-changes-that-close"),
        pytest.param({"senders": ["MyBank"]}, {"number_types": ["mobile"]}, id="same-lists"),
    ],
)  # fmt: skip
def test_tightening_is_not_a_weakening(pair: Pair, client: dict[str, Any], route: dict[str, Any]) -> None:
    assert pair.compare(doc(client, route)) == []


def test_an_emptied_number_types_is_every_type(pair: Pair) -> None:
    found = pair.compare(doc({}, {"number_types": []}))
    assert keyed(found) == {"route[0].number_types": "dropped: any number type"}


def test_any_country_before_widens_only_by_a_calling_code(pair: Pair) -> None:
    old = doc({"countries": ["*"]})
    assert pair.compare(doc({"countries": ["*", "US"]}), old_policy=old) == []
    assert keyed(pair.compare(doc({"countries": ["*", "+870"]}), old_policy=old)) == {
        "client[0].countries": "countries added: +870"
    }


def test_settings_loosened(pair: Pair) -> None:
    old = {
        "server": {"trusted_proxies": ["10.0.0.1/32"]},
        "storage": {"on_error": "closed"},
        "logging": {"body": "hash", "recipient": "hash"},
    }
    new = {
        "server": {"trusted_proxies": ["10.0.0.0/24"]},
        "storage": {"on_error": "open"},
        "logging": {"body": "mask", "recipient": "mask"},
    }
    found = pair.compare(new_settings=new, old_settings=old)
    assert {w.file for w in found} == {"new/config.toml"}
    assert all(w.kind == "settings" and w.name == "" for w in found)
    assert keyed(found) == {
        "storage.on_error": "closed -> open: requests pass unlimited while the limiter storage is down",
        "logging.body": "hash -> mask: message texts are kept more readably",
        "logging.recipient": "hash -> mask: numbers are kept more readably",
        "server.trusted_proxies": "now also trusts X-Forwarded-For from 10.0.0.0/24",
    }
    # the other way round tightens everything
    assert pair.compare(new_settings=old, old_settings=new) == []


@pytest.mark.parametrize(("before", "after"), [("drop", "redact"), ("redact", "hash"), ("hash", "mask")])
def test_body_modes_in_order(pair: Pair, before: str, after: str) -> None:
    assert BODY_STRENGTH.index(before) < BODY_STRENGTH.index(after)
    found = pair.compare(
        new_settings={"logging": {"body": after}}, old_settings={"logging": {"body": before}}
    )
    assert [w.key for w in found] == ["logging.body"]
    back = pair.compare(new_settings={"logging": {"body": before}}, old_settings={"logging": {"body": after}})
    assert back == []


def test_recipient_order() -> None:
    assert RECIPIENT_STRENGTH == ("drop", "hash", "mask")


def test_clients_and_routes_are_matched_by_id_and_name_not_position(pair: Pair) -> None:
    old = doc()
    other = {**old["client"][0], "id": "other", "basic": [], "ip_allow": []}
    new = deep_merge(old, {})
    new["client"] = [other, new["client"][0]]  # billing moved to client[1]; other is new
    new["client"][1]["countries"] = ["EE", "LV", "DE"]
    assert keyed(pair.compare(new)) == {"client[1].countries": "countries added: DE"}


# --------------------------------------------------------------------------- through the CLI


def smsgw(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*SMSGW, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_check_config_against_prints_the_weakenings_and_exits_0(pair: Pair) -> None:
    old = pair.write("old", None, doc())
    new = pair.write("new", {"storage": {"on_error": "open"}}, doc({"countries": ["*"]}, {"ip_allow": []}))
    result = smsgw("check-config", "-c", "new/config.toml", "--against", "old/config.toml", cwd=pair.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "new/config.toml: storage.on_error: weakened: closed -> open: requests pass unlimited while the "
        "limiter storage is down",
        'new/policies/default.toml: client[0].countries: weakened: widened to "*" (every country)',
        "new/policies/default.toml: route[0].ip_allow: weakened: dropped (was 10.0.0.0/8): any address",
        "new/config.toml: OK (1 clients, 1 routes, 3 weakening(s) against old/config.toml)",
    ]
    same = smsgw("check-config", "-c", str(old), "--against", str(old), cwd=pair.root)
    assert same.returncode == 0 and f"0 weakening(s) against {old}" in same.stdout
    assert new.exists()


def test_check_config_against_a_broken_old_config_exits_2(pair: Pair) -> None:
    pair.write("new", None, doc())
    broken = doc()
    broken["route"][0]["kind"] = "nope"
    pair.write("old", None, broken)
    result = smsgw("check-config", "-c", "new/config.toml", "--against", "old/config.toml", cwd=pair.root)
    assert result.returncode == 2
    assert "old/policies/default.toml: route[0].kind" in result.stderr
    assert "nothing compared" in result.stderr


# --------------------------------------------------------------------------- through a reload


async def test_an_in_process_reload_records_nothing_when_nothing_loosens(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(vendor.base_url, policies={"default": doc()})
    write_config(gw.folder, gw.pki, vendor.base_url, None, {"default": doc({"countries": ["EE"]})})
    assert await gw.running.reload() is True
    assert [r for r in gw.audit_all() if r["event"] == "policy_weakened"] == []


def test_a_sighup_reload_that_weakens_writes_an_audit_event_and_a_warning(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    port, admin_port = free_port(), free_port()
    settings: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
    }
    config = write_config(tmp_path, pki, VENDOR_URL, settings, {"default": doc()})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stderr = (tmp_path / "stderr.txt").open("wb")
    process = subprocess.Popen([*SMSGW, "serve", "-c", str(config)], cwd=tmp_path, stderr=stderr, env=env)
    stderr.close()
    try:
        _wait_for(tmp_path / "stderr.txt", "listening on", process)
        weaker = doc({"ip_allow": [], "countries": ["*"], "rate_limits": []}, {"auth": ["basic", "hmac"]})
        write_config(
            tmp_path, pki, VENDOR_URL, {**settings, "storage": {"on_error": "open"}}, {"default": weaker}
        )
        process.send_signal(signal.SIGHUP)
        _wait_for(tmp_path / "stderr.txt", "config reloaded: generation 2", process)
        log = (tmp_path / "stderr.txt").read_text()
        prefix = "WARNING smsgw: reload weakens the policy: "
        assert f"{prefix}config.toml: storage.on_error: weakened: closed -> open" in log
        assert f"{prefix}policies/default.toml: client[0].ip_allow: weakened: dropped (was 10.20" in log
        assert f'{prefix}policies/default.toml: client[0].countries: weakened: widened to "*"' in log
        assert f"{prefix}policies/default.toml: client[0].rate_limits: weakened: removed" in log
        assert f"{prefix}policies/default.toml: route[0].auth: weakened: credential kinds added: hmac" in log
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    records = [json.loads(line) for line in (tmp_path / "logs" / "audit.jsonl").read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events.count("policy_weakened") == 1
    assert events.index("policy_weakened") > events.index("config_loaded", 1)  # after the reload's
    (event,) = [r for r in records if r["event"] == "policy_weakened"]
    assert (event["trigger"], event["generation"]) == ("reload", 2)
    assert event["weakened"] == [
        {
            "file": "config.toml",
            "key": "storage.on_error",
            "change": "closed -> open: requests pass unlimited while the limiter storage is down",
        },
        {
            "file": "policies/default.toml",
            "key": "client[0].ip_allow",
            "client": "billing",
            "change": "dropped (was 10.20.0.0/16): any address",
        },
        {
            "file": "policies/default.toml",
            "key": "client[0].countries",
            "client": "billing",
            "change": 'widened to "*" (every country)',
        },
        {
            "file": "policies/default.toml",
            "key": "client[0].rate_limits",
            "client": "billing",
            "change": "removed (was 600/minute, 20000/day)",
        },
        {
            "file": "policies/default.toml",
            "key": "route[0].auth",
            "route": "twilio-send",
            "change": "credential kinds added: hmac",
        },
    ]
    # no secret in the event (the vendor token, the hash key, the client's password hash)
    text = json.dumps(event)
    assert DEFAULT_POLICY["client"][0]["basic"][0]["password_sha256"] not in text
