"""The log-leak canary, and the audit chain.

Every run sends fresh, unique markers (a message text, a recipient number, the client's password)
through the gateway in every outcome it has: accepted, refused at each step, vendor down, vendor
slow. Then no marker may show up in anything the gateway wrote: its log folder, its stdout and
stderr, and Python logging. The positive side is checked too: the audit record holds what a
reviewer needs (the keyed hash of the text, the masked number).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web

from gateway.audit.log import GENESIS, chain_value
from gateway.recipients.phone import parse_recipient
from tests.conftest import (
    BEARER_TOKEN,
    CLIENT_PASSWORD,
    CLIENT_USER,
    DEFAULT_POLICY,
    HASH_KEY,
    VENDOR_SID,
    VENDOR_TOKEN,
    Gateway,
    GatewayFactory,
    Recorder,
    Vendor,
    basic,
    deep_merge,
    error_of,
    free_port,
    policy,
    start_vendor,
)

REMOTE_USER = "AC00000000000000000000000000remote"
ABROAD_USER = "AC00000000000000000000000000abroad"


def policies() -> dict[str, dict[str, Any]]:
    """billing may send anywhere; remote only from 10/8; abroad only to Latvia. Same password."""
    policy = deep_merge(DEFAULT_POLICY, {})
    password_sha256 = policy["client"][0]["basic"][0]["password_sha256"]
    policy["client"] += [
        {
            "id": "remote",
            "scopes": ["sms:send"],
            "countries": ["*"],
            "ip_allow": ["10.0.0.0/8"],
            "basic": [{"username": REMOTE_USER, "password_sha256": password_sha256}],
        },
        {
            "id": "abroad",
            "scopes": ["sms:send"],
            "countries": ["LV"],
            "basic": [{"username": ABROAD_USER, "password_sha256": password_sha256}],
        },
    ]
    return {"default": policy}


def fresh_number() -> str:
    """A valid Estonian mobile number nobody else in this run uses."""
    while True:
        candidate = "+3725" + "".join(secrets.choice("0123456789") for _ in range(7))
        try:
            destination = parse_recipient(candidate)
        except Exception:  # noqa: S112 - not a valid number, draw again
            continue
        if destination.region == "EE" and destination.e164 == candidate:
            return candidate


@dataclass(frozen=True)
class Markers:
    text: str  # the message body
    leak: str  # the part of the body that must never be logged
    number: str  # E.164 recipient

    @classmethod
    def fresh(cls, body_mode: str) -> Markers:
        if body_mode == "mask":  # mask keeps the words and hides digits: the marker is digits only
            digits = "".join(secrets.choice("0123456789") for _ in range(14))
            return cls(f"Your code is {digits}", digits, fresh_number())
        text = "canary-" + uuid.uuid4().hex
        return cls(text, text, fresh_number())

    def forbidden(self) -> dict[str, str]:
        return {
            "body": self.leak,
            "recipient": self.number,
            "recipient digits": self.number[1:],
            "recipient url-encoded": quote(self.number, safe=""),
            "client password": CLIENT_PASSWORD,
            "client basic": basic(CLIENT_USER, CLIENT_PASSWORD).split()[1],
            "vendor token": VENDOR_TOKEN,
            "vendor basic": basic(VENDOR_SID, VENDOR_TOKEN).split()[1],
            "bearer token": BEARER_TOKEN,
        }


def assert_no_marker(where: str, text: str, markers: Markers) -> None:
    for what, value in markers.forbidden().items():
        assert value not in text, f"{what} leaked into {where}"


def twilio_like_vendor() -> Recorder:
    """Answers like Twilio (echoing recipient and text back), or never when asked to be slow."""
    recorder = Recorder()

    async def behaviour(request: web.Request, body: bytes) -> web.StreamResponse:
        if request.headers.get("X-Test-Mode") == "slow":
            await recorder.release.wait()
        form = dict(pair.split("=", 1) for pair in body.decode().split("&"))
        return web.json_response(
            {"sid": "SM" + secrets.token_hex(16), "to": form.get("To"), "body": form.get("Body")}, status=201
        )

    recorder.behaviour = behaviour
    return recorder


async def run_matrix(gw: Gateway, down: Gateway, markers: Markers) -> dict[str, tuple[int, str | None]]:
    """Every outcome once, all carrying the markers; returns name -> (status, reason code)."""
    form = {"To": markers.number, "From": "MyBank", "Body": markers.text}
    client = basic(CLIENT_USER, CLIENT_PASSWORD)
    encoded = urlencode(form).encode()

    async def raw(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        headers = {"Authorization": client, "Content-Type": "application/x-www-form-urlencoded"}
        async with gw.session.request(method, gw.base + path, data=body, headers=headers) as response:
            return response.status, await response.read()

    async def send(via: Gateway, data: dict[str, str], **kwargs: Any) -> tuple[int, bytes]:
        response = await via.send(data, **kwargs)
        return response.status, await response.read()

    cases = {
        "success": send(gw, form),
        "unauthenticated": send(gw, form, auth=basic(CLIENT_USER, "wrong-" + CLIENT_PASSWORD)),
        "ip_not_allowed": send(gw, form, auth=basic(REMOTE_USER, CLIENT_PASSWORD)),
        "destination_not_allowed": send(gw, form, auth=basic(ABROAD_USER, CLIENT_PASSWORD)),
        "invalid_recipient": send(gw, {**form, "To": markers.number + "000000"}),
        "bad_request": raw("POST", gw.send_path, encoded + b"&To=" + quote(markers.number).encode()),
        "bad_escape": raw("POST", gw.send_path, encoded + b"%ZZ"),
        "body_too_large": raw("POST", gw.send_path, encoded + b"&Pad=" + b"x" * 70_000),
        "upstream_unavailable": send(down, form),
        "upstream_timeout": send(gw, form, headers={"X-Test-Mode": "slow"}),
        "route_not_found": raw("POST", "/2010-04-01/Accounts/x/Calls.json", encoded),
    }
    answers = await asyncio.gather(*cases.values())
    out: dict[str, tuple[int, str | None]] = {}
    for name, (status, payload) in zip(cases, answers, strict=True):
        if status >= 400:  # gateway-made errors never echo; the vendor's answer may
            assert_no_marker(f"the {name} response", payload.decode("utf-8", "replace"), markers)
        out[name] = (status, error_of(payload)["code"] if status >= 400 else None)
    return out


EXPECTED = {
    "success": (201, None),
    "unauthenticated": (401, "unauthenticated"),
    "ip_not_allowed": (403, "ip_not_allowed"),
    "destination_not_allowed": (403, "destination_not_allowed"),
    "invalid_recipient": (422, "invalid_recipient"),
    "bad_request": (400, "bad_request"),
    "bad_escape": (400, "bad_request"),
    "body_too_large": (413, "body_too_large"),
    "upstream_unavailable": (502, "upstream_unavailable"),
    "upstream_timeout": (504, "upstream_timeout"),
    "route_not_found": (404, "route_not_found"),
}


@pytest.mark.parametrize(
    ("body_mode", "recipient_mode", "level", "access_log"),
    [
        ("hash", "mask", "info", "logs/access.jsonl"),
        ("redact", "hash", "debug", "logs/access.jsonl"),
        ("drop", "drop", "debug", "-"),
        ("mask", "mask", "debug", "logs/access.jsonl"),
        ("hash", "hash", "debug", "-"),
    ],
)
async def test_no_marker_in_any_log(
    make_gateway: GatewayFactory,
    pki: dict[str, Path],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    body_mode: str,
    recipient_mode: str,
    level: str,
    access_log: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    markers = Markers.fresh(body_mode)
    settings = {
        "upstream": {"timeout_s": 1},
        "logging": {"body": body_mode, "recipient": recipient_mode, "level": level, "access_log": access_log},
    }
    recorder = twilio_like_vendor()
    vendor: Vendor = await start_vendor(pki, recorder.app())
    try:
        gw = await make_gateway(vendor.base_url, settings=settings, policies=policies())
        down = await make_gateway(f"https://127.0.0.1:{free_port()}", settings=settings, policies=policies())
        outcomes = await run_matrix(gw, down, markers)
        await gw.running.stop()
        await down.running.stop()
    finally:
        recorder.release.set()
        await vendor.runner.cleanup()
    assert outcomes == EXPECTED
    # the vendor did get the real thing (so the markers were live, not lost on the way)
    assert any(markers.leak.encode() in seen.body for seen in recorder.seen)

    # -- nothing leaked anywhere
    for folder in (gw.folder / "logs", down.folder / "logs"):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert_no_marker(str(path), path.read_text(encoding="utf-8", errors="replace"), markers)
    out, err = capfd.readouterr()
    assert_no_marker("stdout", out, markers)
    assert_no_marker("stderr", err, markers)
    logged = caplog.text + "".join(repr(r.args) + repr(r.__dict__.get("exc_text")) for r in caplog.records)
    assert_no_marker("Python logging", logged, markers)

    # -- and what reviewers need is there
    audit = gw.audit()
    success = next(r for r in audit if r["event"] == "outcome" and r["status"] == 201)
    key = HASH_KEY.encode()
    expected_body = {
        "hash": {
            "hmac_sha256": hmac.new(key, markers.text.encode(), hashlib.sha256).hexdigest(),
            "length": len(markers.text),
        },
        "redact": {"redacted": True, "length": len(markers.text)},
        "mask": {"masked": "Your code is " + "*" * len(markers.leak)},
        "drop": None,
    }[body_mode]
    if body_mode == "hash":
        key_id = success["body"].pop("key_id")
        assert isinstance(key_id, str) and key_id
    assert success["body"] == expected_body
    expected_recipients = {
        "mask": [markers.number[:5] + "****" + markers.number[-2:]],
        "hash": [hmac.new(key, markers.number.encode(), hashlib.sha256).hexdigest()],
        "drop": None,
    }[recipient_mode]
    assert success["recipients"] == expected_recipients
    if recipient_mode == "mask":
        assert expected_recipients == [f"+3725****{markers.number[-2:]}"]
    reasons = {r["reason"] for r in audit + down.audit()}
    assert {
        "invalid_recipient",
        "destination_not_allowed",
        "upstream_unavailable",
        "upstream_timeout",
    } <= reasons

    if access_log == "-":
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert gw.access() == []
    else:
        records = gw.access() + down.access()
    assert sorted(r["status"] for r in records) == sorted(s for s, _ in EXPECTED.values())
    if level == "debug":
        authorizations = {r["headers"].get("Authorization") for r in records}
        assert authorizations == {"REDACTED"}
    else:
        assert all("headers" not in r for r in records)


async def test_no_marker_from_the_query_string_in_logs(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    markers = Markers.fresh("hash")
    gw = await make_gateway(vendor.base_url)
    query = urlencode({"To": markers.number, "Body": markers.text})
    auth = {"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)}
    async with gw.session.get(f"{gw.base}{gw.send_path}?{query}", headers=auth) as response:
        assert response.status == 405
    async with gw.session.post(f"{gw.base}{gw.send_path}?{query}", headers=auth, data=b"") as response:
        assert response.status == 400
    assert vendor.received == []
    assert_no_marker("the log folder", gw.logs(), markers)


# --------------------------------------------------------------------------- the audit chain


def relink(lines: list[str], key: bytes | None = None) -> list[int]:
    """Indexes of records whose ``chain`` does not follow from the previous line."""
    broken, previous = [], GENESIS
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record["chain"] != chain_value(previous, record, key):
            broken.append(i)
        previous = record["chain"]
    return broken


#: The default policy with a rate limit, so that no config_warning joins the events listed below.
LIMITED = policy(client={"rate_limits": ["600/minute"]})


async def send_a_few(gw: Gateway) -> None:
    assert (await gw.send()).status == 201
    assert (await gw.send({"To": "12345", "From": "MyBank", "Body": "x"})).status == 422
    assert (await gw.send(auth=basic(CLIENT_USER, "nope"))).status == 401


async def test_audit_chain_links_and_shows_an_edit(make_gateway: GatewayFactory, vendor: Vendor) -> None:
    gateway = await make_gateway(vendor.base_url, policies=LIMITED)
    await send_a_few(gateway)
    path = gateway.folder / "logs" / "audit.jsonl"
    lines = path.read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events == ["config_loaded", "request", "outcome", "request", "request"]  # allow, deny, deny
    assert all(len(json.loads(line)["chain"]) == 64 for line in lines)
    assert relink(lines) == []

    edited = json.loads(lines[2])
    edited["status"] = 200  # someone "fixes" the outcome, keeping its chain value
    tampered = [*lines[:2], json.dumps(edited), *lines[3:]]
    assert relink(tampered) == [2]

    removed = [*lines[:2], *lines[3:]]  # a line taken out: the next one no longer links
    assert relink(removed) == [2]


async def test_audit_chain_with_a_key_and_across_a_restart(
    make_gateway: GatewayFactory, vendor: Vendor, tmp_path: Path
) -> None:
    chain_key = "chain-key-" + secrets.token_hex(16)
    key_file = tmp_path / "chain_key"
    key_file.write_text(chain_key)
    key_file.chmod(0o600)
    settings = {"logging": {"chain_key": f"file:{key_file}"}}
    folder = tmp_path / "gw"
    first = await make_gateway(vendor.base_url, settings=settings, policies=LIMITED, folder=folder)
    await send_a_few(first)
    await first.running.stop()
    second = await make_gateway(vendor.base_url, settings=settings, policies=LIMITED, folder=folder)
    assert (await second.send()).status == 201

    lines = (folder / "logs" / "audit.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    first_run = ["config_loaded", "request", "outcome", "request", "request", "gateway_stopped"]
    assert events == [*first_run, "config_loaded", "request", "outcome"]
    assert relink(lines, chain_key.encode()) == []  # one chain over both runs
    assert relink(lines) == list(range(len(lines)))  # without the key nobody can recompute it
    assert chain_key not in second.logs()


# --------------------------------------------------------------------------- tokens and signatures


async def test_no_token_or_signature_in_any_log(
    make_gateway: GatewayFactory,
    vendor: Vendor,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JWTs and RFC 9421 signatures, accepted and refused, at debug level: none of their parts, nor
    the secrets behind them, nor a marker carried in a claim or a nonce, appears anywhere."""
    from joserfc.jwk import OctKey

    from gateway.core.signing import sign
    from tests.tokens import AUDIENCE, ISSUER, SUBJECT, claims, token

    caplog.set_level(logging.DEBUG)
    jwt_secret = "jwt-" + secrets.token_urlsafe(32)
    hmac_secret = "hmac-" + secrets.token_urlsafe(32)
    marker = "canary-" + uuid.uuid4().hex
    monkeypatch.setenv("SMSGW_TEST_JWT", jwt_secret)
    monkeypatch.setenv("SMSGW_TEST_HMAC", hmac_secret)
    settings = {
        "logging": {"level": "debug"},
        "auth": {
            "jwt": {
                "issuers": [
                    {
                        "issuer": ISSUER,
                        "audience": AUDIENCE,
                        "secret": "env:SMSGW_TEST_JWT",
                        "algorithms": ["HS256"],
                    }
                ]
            }
        },
    }
    key = {"id": "canary-key", "secret": "env:SMSGW_TEST_HMAC", "created": datetime.now(UTC).date()}
    gw = await make_gateway(
        vendor.base_url,
        settings=settings,
        policies={
            "default": deep_merge(
                DEFAULT_POLICY,
                {
                    "client": [{**DEFAULT_POLICY["client"][0], "jwt_subject": SUBJECT, "hmac_keys": [key]}],
                    "route": [{**DEFAULT_POLICY["route"][0], "auth": ["jwt", "hmac"]}],
                },
            )
        },
    )
    hs = OctKey.import_key(jwt_secret)
    good = token(hs, "HS256", claims(jti=marker))
    expired = token(hs, "HS256", claims(jti=marker + "x", exp=1))
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    form = {"To": "+37255512367", "From": "MyBank", "Body": "hello"}
    body = urlencode(form).encode()
    url = gw.base + gw.send_path
    signed = sign("POST", url, body, key_id="canary-key", secret=hmac_secret, nonce=marker)
    forged = sign("POST", url, body, key_id="canary-key", secret="not-" + hmac_secret, nonce=marker + "f")
    statuses = []
    for bearer in (good, expired, tampered, "garbage." + marker):
        statuses.append((await gw.send(form, auth=f"Bearer {bearer}")).status)
    for headers in (signed, signed, forged):  # accepted, replayed, forged
        hdrs = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        async with gw.session.post(url, data=body, headers=hdrs) as response:
            statuses.append(response.status)
    assert statuses == [201, 401, 401, 401, 201, 401, 401]
    await gw.running.stop()

    forbidden = {
        "jwt secret": jwt_secret,
        "hmac secret": hmac_secret,
        "claim marker": marker,
        "token": good,
        "token signature": good.rsplit(".", 1)[1],
        "token payload": good.split(".")[1],
        "refused token": tampered.rsplit(".", 1)[1],
        "signature": signed["Signature"].split(":")[1],
        "forged signature": forged["Signature"].split(":")[1],
    }
    out, err = capfd.readouterr()
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    for where, text in (("the log folder", gw.logs()), ("stdout", out), ("stderr", err), ("logging", logged)):
        for what, value in forbidden.items():
            assert value not in text, f"{what} leaked into {where}"
    records = gw.access()
    assert {r["headers"].get("Authorization") for r in records if "Authorization" in r["headers"]} == {
        "REDACTED"
    }
    assert {r["headers"].get("Signature") for r in records if "Signature" in r["headers"]} == {"REDACTED"}
    details = [r["detail"] for r in gw.audit() if r["decision"] == "deny"]
    assert details == ["expired", "bad_signature", "malformed", "replayed", "bad_signature"]
