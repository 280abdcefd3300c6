"""The reviewers' commands on real logs: verify's clear-text scan, find, report, and the events
the gateway writes about itself.

A clean log comes from a real run of the gateway (real TLS, real vendor, sends and refusals);
leaks are planted through the audit log's own writer, so the chain is intact and only the scan
can find them, as it would find a redaction bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.log import AuditLog, rotated_files
from gateway.commands.cli import main
from gateway.commands.review import report_data, scan
from gateway.core.jsonlog import JsonLinesSink
from gateway.core.redaction import hmac_hex
from tests.conftest import (
    CLIENT_USER,
    HASH_KEY,
    VENDOR_TOKEN,
    Gateway,
    GatewayFactory,
    Vendor,
    basic,
    post,
)

TIMEOUT = 30


def smsgw(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def audit_files(gw: Gateway) -> list[Path]:
    current = gw.folder / "logs" / "audit.jsonl"
    return [p for _, p in rotated_files(current)] + [current]


async def traffic(gw: Gateway) -> None:
    """Sends and refusals of several kinds, as a day of real use would have."""
    assert (
        await gw.send({"To": "+37255512367", "From": "MyBank", "Body": "Your code is 4711"})
    ).status == 201
    assert (await gw.send({"To": "+14155552671", "From": "+14155550100", "Body": "Hi Ann"})).status == 201
    assert (await gw.send({"To": "12345", "From": "MyBank", "Body": "x"})).status == 422
    assert (await gw.send(auth=basic(CLIENT_USER, "wrong-password"))).status == 401
    assert (await gw.send(auth="")).status == 401
    response, _ = await post(gw, b"To=%2B37255512367&To=%2B37255512368&Body=twice")
    assert response.status == 400
    response, _ = await post(gw, b"Body=hi", query="To=%2B37255512367&api_key=sk_live_abcdefghijklmn")
    assert response.status == 400


# -- verify --------------------------------------------------------------------------------------


async def test_verify_passes_a_clean_log_from_a_real_run(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(vendor.base_url)
    await traffic(gw)
    await gw.running.stop()
    files = audit_files(gw)
    # The real command, as a reviewer runs it.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "audit", "verify", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "chain:      intact, SHA-256" in out
    assert "findings:   none" in out
    assert "result:     OK" in out
    assert "clients:    billing 5, (none) 2" in out  # the two unauthenticated have no client
    assert "decisions:  deny 5, allow 2" in out
    assert "refusals:   unauthenticated 2, bad_request 2, invalid_recipient 1" in out
    assert "config_loaded 1" in out and "gateway_stopped 1" in out


def _plant(log: AuditLog) -> dict[int, tuple[str, str]]:
    """Leaks, each on its own line: line -> (field, what verify must say)."""
    leaks = {
        2: (
            {"recipients": ["+37255512367"]},
            ("recipients[0]", "recipient is not a masked or hashed number"),
        ),
        3: ({"sender": "+1 415 555 2671"}, ("sender", "clear-text phone number (+1415****71)")),
        4: ({"path": "/lookup?to=37255512367"}, ("path", "clear-text phone number (37255****67)")),
        5: ({"body": "Your code is 4711"}, ("body", "body is not a redacted shape")),
        6: ({"body": {"text": "hello"}}, ("body", "body is not a redacted shape (keys: text)")),
        7: ({"body": {"masked": "Your code is 4711"}}, ("body", "body masked text holds digits")),
        8: ({"path": "/x?token=abcd1234efgh"}, ("path", "looks like a credential parameter")),
        9: (
            {"detail": "Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"},
            ("detail", "looks like an Authorization"),
        ),
        10: ({"headers": {"Authorization": "Basic dXNlcjpwYXNz"}}, ("headers.Authorization", "a credential")),
        11: ({"detail": "key AKIAIOSFODNN7EXAMPLE"}, ("detail", "looks like an AWS access key id")),
    }
    for _, (fields, _) in sorted(leaks.items()):
        log.event("request", request_id="planted", decision="allow", **fields)
    return {line: expected for line, (_, expected) in leaks.items()}


def test_verify_flags_planted_clear_text_and_never_repeats_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    log.event(  # a clean record of every redacted shape first
        "request",
        recipients=["+3725****67", "a" * 64, None],
        sender="MyBank",
        body=[
            {"hmac_sha256": "b" * 64, "key_id": "k1", "length": 4},
            {"redacted": True, "length": 4},
            {"masked": "Your code is ****"},
            None,
        ],
        path="/2010-04-01/Accounts/AC00000000000000000000000000billing/Messages.json?To=REDACTED",
        ip="198.51.100.7",
        detail="bad_credentials",
    )
    expected = _plant(log)
    log.close()

    code, out, _ = smsgw("audit", "verify", str(path))
    assert code == 1
    assert "chain:      intact" in out  # the chain is fine: only the content is wrong
    findings = [line.strip() for line in out.splitlines() if line.startswith("  audit.jsonl:")]
    assert {int(f.split(":")[1]) for f in findings} == set(expected)
    for line, (field, what) in expected.items():
        assert any(f.startswith(f"audit.jsonl:{line}: {field}: ") and what in f for f in findings), (
            line,
            findings,
        )
    assert f"findings:   {len(findings)}:" in out
    assert "result:     FAILED (" in out
    for clear in (
        "37255512367",
        "415 555 2671",
        "4711",
        "abcd1234efgh",
        "dXNlcjpwYXNz",
        "eyJhbGciOi",
        "AKIAIOSF",
    ):
        assert clear not in out  # the summary can be pasted without spreading the leak


async def test_verify_passes_a_real_log_with_other_redaction_modes(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(vendor.base_url, settings={"logging": {"body": "mask", "recipient": "hash"}})
    await traffic(gw)
    code, out, _ = smsgw("audit", "verify", *map(str, audit_files(gw)))
    assert code == 0, out
    masked = next(r["body"] for r in gw.audit() if r.get("body"))
    assert masked == {"masked": "Your code is ****"}


# -- find -----------------------------------------------------------------------------------------


async def test_find_finds_exactly_the_records_of_a_body_and_a_recipient(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(vendor.base_url, settings={"logging": {"recipient": "hash"}})
    sent = {}
    for name, to, body in (
        ("a", "+37255512367", "Meet at 10"),
        ("b", "+37255512368", "Meet at 10"),
        ("c", "+37255512367", "Meet at 11"),
        ("d", "+37255512369", "meet at 10"),
    ):
        response = await gw.send({"To": to, "From": "MyBank", "Body": body})
        assert response.status == 201
        sent[name] = response.headers["X-Request-ID"]
    files = [str(p) for p in audit_files(gw)]
    config = str(gw.folder / "config.toml")

    def found(*args: str) -> tuple[int, set[str], list[dict[str, Any]], str]:
        code, out, err = smsgw("audit", "find", *args, *files)
        records = [json.loads(line) for line in out.splitlines()]
        ids = {name for name, rid in sent.items() if any(r["request_id"] == rid for r in records)}
        return code, ids, records, err

    code, ids, records, err = found("-c", config, "--body", "Meet at 10")
    assert (code, ids) == (0, {"a", "b"})
    assert sorted(r["event"] for r in records) == ["outcome", "outcome", "request", "request"]
    assert "4 matching record(s)" in err
    assert found("-c", config, "--body", "Meet at 10", "--recipient", "+372 5551 2367")[1] == {"a"}
    assert found("-c", config, "--recipient", "+37255512367")[1] == {"a", "c"}
    key_file = gw.folder / "secrets" / "hash_key"
    assert found("--hash-key-file", str(key_file), "--body", "Meet at 11")[1] == {"c"}
    code, ids, _, err = found("--hash-key-file", str(key_file), "--body", "Meet at 12")
    assert (code, ids) == (1, set())
    assert "0 matching record(s)" in err
    # A different key finds nothing, and says why.
    other = gw.folder / "other_key"
    other.write_text("Zq3x8PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Y-")
    code, ids, _, err = found("--hash-key-file", str(other), "--body", "Meet at 10")
    assert (code, ids) == (1, set())
    assert "hashed with other keys" in err
    code, _, err = smsgw("audit", "find", "--body", "Meet at 10", *files)
    assert code == 2 and "needs the log hash key" in err


def test_find_takes_the_key_from_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    for rid, text in (("r1", "hello"), ("r2", "hello!")):
        log.event(
            "request",
            request_id=rid,
            body={"hmac_sha256": hmac_hex(HASH_KEY.encode(), text), "key_id": None, "length": len(text)},
        )
    log.close()
    monkeypatch.setenv("REVIEW_HASH_KEY", HASH_KEY)
    code, out, _ = smsgw("audit", "find", "--hash-key-env", "REVIEW_HASH_KEY", "--body", "hello", str(path))
    assert code == 0
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == ["r1"]


# -- report ---------------------------------------------------------------------------------------


def _report_log(path: Path) -> None:
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    plan = [
        ("2027-01-15T08:00:10.000Z", "billing", "deny", "unauthenticated"),
        ("2027-01-15T08:03:00.000Z", "billing", "allow", None),
        ("2027-01-15T08:20:00.000Z", None, "deny", "unauthenticated"),
        ("2027-01-15T09:59:00.000Z", "marketing", "deny", "destination_not_allowed"),
        ("2027-01-15T10:30:00.000Z", "<b>x</b>&", "deny", "unauthenticated"),
    ]
    for ts, client, decision, reason in plan:
        log.event("request", ts=ts, client=client, route="twilio-send", decision=decision, reason=reason)
    log.close()


def test_report_json_counts_and_timeline(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _report_log(path)
    code, out, _ = smsgw("audit", "report", "--format", "json", str(path))
    assert code == 0
    data = json.loads(out)
    assert data == report_data(scan([path]))
    assert data["records"] == 5 and data["chain"]["intact"] is True
    assert data["decisions"] == {"deny": 4, "allow": 1}
    assert data["refusal_reasons"] == {"unauthenticated": 3, "destination_not_allowed": 1}
    assert {c["name"]: (c["allow"], c["deny"]) for c in data["clients"]} == {
        "billing": (1, 1),
        "(none)": (0, 1),
        "marketing": (0, 1),
        "<b>x</b>&": (0, 1),
    }
    timeline = data["timeline"]
    assert timeline["bucket_minutes"] == 5  # 151 minutes in at most 48 rows
    rows = timeline["rows"]
    assert rows[0] == {"start": "2027-01-15T08:00Z", "refusals": 1, "reasons": {"unauthenticated": 1}}
    assert rows[-1]["start"] == "2027-01-15T10:30Z"
    assert sum(r["refusals"] for r in rows) == 4
    assert len(rows) == 31  # every bucket from the first refusal to the last, empty ones too


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is missing: `make test` installs it (Debian package chromium)")
    return found


def test_html_report_opens_in_headless_chromium(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _report_log(path)
    page = tmp_path / "report.html"
    code, _, err = smsgw("audit", "report", str(path), "-o", str(page))
    assert code == 0, err
    html_text = page.read_text()
    assert "<script" not in html_text and "http" not in html_text.replace("http-equiv", "")  # self-contained
    result = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    dom = result.stdout
    assert result.returncode == 0 and "<h1>smsgw audit report</h1>" in dom, result.stderr[-2000:]
    text = " ".join(_text(dom).split())
    assert "5 records from 2027-01-15T08:00:10.000Z to 2027-01-15T10:30:00.000Z" in text
    assert "Chain: intact" in text
    assert "none: no clear-text number, body or credential" in text
    assert "unauthenticated 3" in text and "destination_not_allowed 1" in text
    assert "billing 1 1 2" in text  # client, allowed, refused, total
    assert "per 5 minute(s), UTC" in text
    assert "2027-01-15T08:00Z 1 unauthenticated 1" in text
    # The client name is shown as text, never run as markup.
    assert "<b>x</b>&amp;" not in dom and "&lt;b&gt;x&lt;/b&gt;&amp;" in dom
    assert "<b>x</b>& 0 1 1" in text


def _text(dom: str) -> str:
    """The page's visible text: tags dropped, entities decoded."""
    body = dom.split("<body>", 1)[1]
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


# -- the gateway's own events ---------------------------------------------------------------------


async def test_config_loads_are_audited_by_hash_without_secrets(
    make_gateway: GatewayFactory, vendor: Vendor, tmp_path: Path
) -> None:
    folder = tmp_path / "gw"
    gw = await make_gateway(vendor.base_url, settings={"admin": {"listen": "0.0.0.0:0"}}, folder=folder)
    loaded = next(r for r in gw.audit_all() if r["event"] == "config_loaded")
    assert loaded["trigger"] == "start"
    assert len(loaded["config_sha256"]) == 64
    assert (loaded["body_mode"], loaded["recipient_mode"], loaded["chain_mode"]) == ("hash", "mask", "sha256")
    assert loaded["clients"] == 1 and loaded["routes"] == 1
    assert loaded["hash_key_id"].startswith("k")
    warnings = [r for r in gw.audit_all() if r["event"] == "config_warning"]
    (warning,) = [
        r for r in warnings if r["key"] == "admin.listen"
    ]  # the default policy has no rate limit too
    assert "not a loopback address" in warning["message"]
    gw.running.reload_certificate()
    assert gw.audit_all()[-1]["event"] == "certificate_reloaded" and gw.audit_all()[-1]["ok"] is True
    await gw.running.stop()
    assert gw.audit_all()[-1]["event"] == "gateway_stopped"
    text = (folder / "logs" / "audit.jsonl").read_text()
    assert HASH_KEY not in text and VENDOR_TOKEN not in text

    # The same config hashes the same; a changed policy does not.
    again = await make_gateway(vendor.base_url, settings={"admin": {"listen": "0.0.0.0:0"}}, folder=folder)
    loads = [r for r in again.audit_all() if r["event"] == "config_loaded"]
    assert loads[1]["config_sha256"] == loaded["config_sha256"]
    changed = await make_gateway(vendor.base_url, settings={"server": {"max_body_bytes": 4096}})
    other = next(r for r in changed.audit_all() if r["event"] == "config_loaded")
    assert other["config_sha256"] != loaded["config_sha256"]


async def test_verify_takes_the_chain_key_from_the_gateway_config(
    make_gateway: GatewayFactory, vendor: Vendor, tmp_path: Path
) -> None:
    key_file = tmp_path / "chain_key"
    key_file.write_text("Wc7yRm2sLd9fHg6aKe1uXo5iBw_Y-Vq3x8PZJ0kTn4b\n")
    key_file.chmod(0o600)
    gw = await make_gateway(vendor.base_url, settings={"logging": {"chain_key": f"file:{key_file}"}})
    await traffic(gw)
    files = [str(p) for p in audit_files(gw)]
    code, out, _ = smsgw("audit", "verify", "-c", str(gw.folder / "config.toml"), *files)
    assert code == 0, out
    assert "chain:      intact, HMAC-SHA256 (chain key given)" in out
    code, _, err = smsgw("audit", "verify", *files)
    assert code == 1 and "if logging.chain_key was set, give it" in err
    code, _, err = smsgw("audit", "verify", str(gw.folder / "logs" / "missing.jsonl"))
    assert code == 2 and "missing.jsonl cannot be read" in err
