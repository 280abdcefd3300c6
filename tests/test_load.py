"""Load with accounting: a bounded loopback run against ``smsgw serve`` (its own process) and the
sandbox vendor (this process), with allowed, refused, malformed and replayed requests mixed.

Every request carries a unique marker in its text. After the run: every allowed send reached the
vendor exactly once and no refused one did; idempotent repeats and replayed RFC 9421 nonces
reached it once in all; the audit log holds exactly one decision record per request (every
request here matches a route) and ``smsgw audit verify`` finds the chain intact and no clear text;
no 5xx but 502/503/504; and no marker, number or credential is in any log, stdout or stderr.

Size: ``SMSGW_LOAD_REQUESTS`` (20,000) at ``SMSGW_LOAD_CONCURRENCY`` connections (64): about 45 s on
the 2-core development machine, so it runs in the suite (marker ``load``: ``-m "not load"`` skips it
in a quick local run; ``make test`` and CI run it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest

from gateway.core.signing import Signer
from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    HASH_KEY,
    VENDOR_TOKEN,
    Vendor,
    basic,
    client_ssl,
    free_port,
    policy,
    write_config,
)
from tests.test_cli import SMSGW
from tests.tokens import HMAC_KEY_ID, HMAC_SECRET

REQUESTS = int(os.environ.get("SMSGW_LOAD_REQUESTS", "20000"))
CONCURRENCY = int(os.environ.get("SMSGW_LOAD_CONCURRENCY", "64"))
DEADLINE_S = max(240, REQUESTS // 50)  # the whole run is bounded; far above what it takes
RUN = secrets.token_hex(8)  # in every text: must never show up in a log
EE, US, SHORT = "+37255512367", "+12015550123", "+3725551"
FORM = "application/x-www-form-urlencoded"

#: One cycle of the mix (20 requests): what each request is and what the client must be told.
MIX: tuple[str, ...] = (
    *("allowed",) * 10,
    *("hmac",) * 2,
    "bad_password",
    "country",
    "invalid_recipient",
    "malformed",
    "idempotent",
    "idempotent_repeat",
    "nonce",
    "nonce_replay",
)
EXPECTED: dict[str, set[int]] = {
    "allowed": {201},
    "hmac": {201},
    "bad_password": {401},
    "country": {403},
    "invalid_recipient": {422},
    "malformed": {400},
    "idempotent": {201},
    "idempotent_repeat": {201},  # the stored answer, Idempotent-Replayed: true
    "nonce": {201},
    "nonce_replay": {401},
}
#: Gateway answers a send may get under load besides its expected one (the vendor is on loopback:
#: they are not expected here, but are no failure of accounting either).
TOLERATED = {502, 503, 504}


@dataclass
class Sent:
    kind: str
    marker: str
    status: int = 0
    replayed: bool = False


@dataclass
class Run:
    sent: list[Sent] = field(default_factory=list)


def text_of(marker: str) -> str:
    return f"Your code {RUN} {marker}"


def build(i: int, base: str) -> list[tuple[str, dict[str, str], bytes, Sent]]:
    """The request(s) of mix slot ``i``: a pair for the replay kinds, sent one after the other."""
    kind = MIX[i % len(MIX)]
    marker = f"m{i:07d}"
    url = f"{base}/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
    auth = {"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)}
    body = urlencode({"To": EE, "From": "MyBank", "Body": text_of(marker)}).encode()
    if kind in ("idempotent_repeat", "nonce_replay"):
        return []  # made with their first half
    if kind == "bad_password":
        auth = {"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD + "x")}
    elif kind == "country":
        body = urlencode({"To": US, "From": "MyBank", "Body": text_of(marker)}).encode()
    elif kind == "invalid_recipient":
        body = urlencode({"To": SHORT, "From": "MyBank", "Body": text_of(marker)}).encode()
    elif kind == "malformed":
        body = body + b"&To=%2B37255512368"  # To given twice
    headers = {"Content-Type": FORM, **auth}
    if kind in ("hmac", "nonce"):
        headers = {"Content-Type": FORM, **Signer(HMAC_KEY_ID, HMAC_SECRET).headers("POST", url, body)}
    if kind == "idempotent":
        headers["Idempotency-Key"] = f"load-{RUN}-{i}"
    first = (url, headers, body, Sent(kind, marker))
    if kind == "idempotent":
        return [first, (url, headers, body, Sent("idempotent_repeat", marker))]
    if kind == "nonce":
        return [first, (url, headers, body, Sent("nonce_replay", marker))]
    return [first]


@pytest.fixture
async def served(tmp_path: Path, pki: dict[str, Path], vendor: Vendor) -> Any:
    """``smsgw serve`` in its own process, as an operator runs it; stopped with SIGTERM."""
    port, admin_port = free_port(), free_port()
    doc = policy(
        route={"auth": ["hmac", "basic"]},
        client={
            "countries": ["EE"],
            "senders": ["MyBank"],
            "hmac_keys": [{"id": HMAC_KEY_ID, "secret": "env:SMSGW_TEST_LOAD_HMAC"}],
        },
    )
    config = write_config(
        tmp_path / "gw",
        pki,
        vendor.base_url,
        {
            "server": {"listen": f"127.0.0.1:{port}", "max_connections_per_ip": 1024},
            "admin": {"listen": f"127.0.0.1:{admin_port}"},
            "upstream": {"timeout_s": 30},
        },
        doc,
    )
    out, err = tmp_path / "serve.stdout", tmp_path / "serve.stderr"
    env = {**os.environ, "SMSGW_TEST_LOAD_HMAC": HMAC_SECRET}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *SMSGW, "serve", "-c", str(config), stdout=stdout, stderr=stderr, env=env
        )
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(30):
            while True:
                assert proc.returncode is None, err.read_text()
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"http://127.0.0.1:{admin_port}/healthz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield f"https://127.0.0.1:{port}", config, out, err
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def drive(base: str, pki: dict[str, Path]) -> list[Sent]:
    """REQUESTS requests at CONCURRENCY connections, bounded by DEADLINE_S."""
    slots = iter(range(REQUESTS * 2))
    sent: list[Sent] = []
    budget = REQUESTS
    connector = aiohttp.TCPConnector(ssl=client_ssl(pki), limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal budget
            for i in slots:
                requests = build(i, base)
                if not requests:
                    continue
                if budget <= 0:
                    return
                budget -= len(requests)
                for url, headers, body, record in requests:  # a pair goes in order, on one worker
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        record.status = response.status
                        record.replayed = response.headers.get("Idempotent-Replayed") == "true"
                    sent.append(record)

        async with asyncio.timeout(DEADLINE_S):
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return sent


@pytest.mark.load
async def test_load_with_accounting(served: Any, vendor: Vendor, pki: dict[str, Path]) -> None:
    base, config, out, err = served
    sent = await drive(base, pki)
    assert len(sent) >= REQUESTS - 1

    statuses = Counter(s.status for s in sent)
    assert set(statuses) <= {s for e in EXPECTED.values() for s in e} | TOLERATED, statuses
    for s in sent:
        assert s.status in EXPECTED[s.kind] | TOLERATED, (s, statuses)
    assert all(s.replayed for s in sent if s.kind == "idempotent_repeat" and s.status == 201)

    # -- the vendor: every allowed text exactly once, no refused one
    at_vendor = Counter()
    for received in vendor.received:
        fields = dict(parse_qsl(received.body.decode("utf-8")))
        at_vendor[fields["Body"].rsplit(" ", 1)[1]] += 1
    assert max(at_vendor.values(), default=0) == 1, "a send reached the vendor twice"
    for s in sent:
        if s.kind in ("idempotent_repeat", "nonce_replay"):
            continue  # their first half decides
        if s.status == 201:
            assert at_vendor[s.marker] == 1, s
        elif s.status not in TOLERATED:
            assert at_vendor[s.marker] == 0, s
    forwarded = sum(1 for s in sent if s.status == 201 and s.kind not in ("idempotent_repeat",))
    assert len(vendor.received) == forwarded

    # -- the audit log: one decision per request, allow for each send and replay
    logs = config.parent / "logs"
    records = [json.loads(line) for line in (logs / "audit.jsonl").read_text().splitlines()]
    decisions = [r for r in records if r["event"] == "request"]
    assert len(decisions) == len(sent)
    assert len({r["request_id"] for r in decisions}) == len(sent)
    allowed = Counter(r["decision"] for r in decisions)["allow"]
    assert allowed == sum(1 for s in sent if s.status == 201 or s.status in TOLERATED)
    outcomes = [r for r in records if r["event"] == "outcome"]
    assert len(outcomes) == len(vendor.received) + sum(1 for s in sent if s.status in TOLERATED)
    verify = subprocess.run(  # noqa: ASYNC221 - the run is over; a bounded child process
        [*SMSGW, "audit", "verify", "-c", str(config), str(logs / "audit.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "chain:      intact" in verify.stdout and "findings:   none" in verify.stdout

    # -- the canary: nothing a request carried is in any log or output of the gateway
    written = "".join(p.read_text() for p in sorted(logs.glob("*")) if p.is_file())
    written += out.read_text() + err.read_text()
    for marker in (
        RUN,
        EE[1:],
        US[1:],
        SHORT[1:] + '"',
        CLIENT_PASSWORD,
        HMAC_SECRET,
        VENDOR_TOKEN,
        HASH_KEY,
    ):
        assert marker not in written
    summary = dict(sorted(statuses.items()))
    print(f"load: {len(sent)} requests at {CONCURRENCY} connections: {summary}", file=sys.stderr)
