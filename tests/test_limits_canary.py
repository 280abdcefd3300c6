"""The log-leak canary over the paths of limits, OTP caps, idempotency and storage outages, and
a scan of everything Redis holds: no message text and no phone number, in any form, anywhere."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.conftest import GatewayFactory, RedisServer, error_of, policy, start_vendor
from tests.test_canary import Markers, assert_no_marker, twilio_like_vendor


def revealed(dump: dict[bytes, Any]) -> str:
    """What a reader of Redis could see: keys and values as text, URL-decoded, and every
    base64-looking run decoded too (a stored answer must be sealed, not merely encoded)."""
    text = repr(dump)
    parts = [text, unquote(text)]
    for run in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue
        parts += [decoded, unquote(decoded)]
    return "\n".join(parts)


@pytest.mark.parametrize("access_log", ["logs/access.jsonl", "-"])
async def test_no_marker_in_logs_or_redis(
    make_gateway: GatewayFactory,
    pki: dict[str, Path],
    redis_server: RedisServer,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    access_log: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    markers = Markers.fresh("hash")
    settings = {
        "storage": {"url": redis_server.url, "on_error": "closed"},
        "logging": {"body": "hash", "recipient": "hash", "level": "debug", "access_log": access_log},
    }
    route = {
        "recipient_limits": ["3/hour"],
        "otp": {"detect": "canary-", "max_sends": 2, "window": "1 hour", "min_interval": "0 seconds"},
    }
    recorder = twilio_like_vendor()
    vendor = await start_vendor(pki, recorder.app())
    form = {"To": markers.number, "From": "MyBank", "Body": markers.text}
    outcomes: list[tuple[str, int, str | None]] = []

    try:
        gw = await make_gateway(vendor.base_url, settings, policy(route, {"rate_limits": ["50/minute"]}))

        async def send(name: str, key: str | None = None, **extra: Any) -> None:
            headers = {"Idempotency-Key": key} if key else {}
            headers.update(extra.pop("headers", {}))
            response = await gw.send({**form, **extra}, headers=headers)
            payload = await response.read()
            code = error_of(payload)["code"] if response.status >= 400 else None
            if response.status >= 400:
                assert_no_marker(f"the {name} answer", payload.decode(), markers)
            outcomes.append((name, response.status, code))

        slow = asyncio.create_task(send("first", "k1", headers={"X-Test-Mode": "slow"}))
        await asyncio.wait_for(recorder.arrived.wait(), 10)
        await send("in_flight", "k1")
        recorder.release.set()
        await asyncio.wait_for(slow, 10)
        await send("replay", "k1")
        await send("mismatch", "k1", Body=markers.text + "!")
        await send("second_otp")
        await send("otp_cap")  # refused by the cap: spends none of the number's 3/hour
        await send("not_an_otp", Body="your parcel is here")  # the number's third message
        await send("rate_limited")
        stored = redis_server.dump()
        redis_server.stop()
        await send("storage_down")
        await gw.running.stop()
    finally:
        recorder.release.set()
        await vendor.runner.cleanup()

    assert outcomes == [
        ("in_flight", 409, "idempotency_in_flight"),
        ("first", 201, None),
        ("replay", 201, None),
        ("mismatch", 422, "idempotency_mismatch"),
        ("second_otp", 201, None),
        ("otp_cap", 429, "otp_retry_cap"),
        ("not_an_otp", 201, None),
        ("rate_limited", 429, "rate_limited"),
        ("storage_down", 503, "limiter_unavailable"),
    ]
    assert len(recorder.seen) == 3 and markers.leak.encode() in recorder.seen[0].body  # the markers were live

    # -- Redis: the idempotency record (the vendor's answer echoes number and text), the limit
    # and OTP counters: none holds either in any form.
    assert any(key.startswith(b"smsgw:idem:") for key in stored)
    assert any(key.startswith(b"smsgw:otp:") for key in stored)
    assert any(key.startswith(b"smsgw:rl:") for key in stored)
    scanned = revealed(stored)
    assert_no_marker("Redis", scanned, markers)
    assert markers.number[-7:] not in scanned

    # -- logs, stdout, stderr, Python logging
    files = [p for p in (gw.folder / "logs").rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert_no_marker(str(path), path.read_text(encoding="utf-8", errors="replace"), markers)
    out, err = capfd.readouterr()
    assert_no_marker("stdout", out, markers)
    assert_no_marker("stderr", err, markers)
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert_no_marker("Python logging", logged, markers)
    assert "storage redis is unavailable" in caplog.text
