"""What a security reviewer sees in ``smsgw audit report`` beyond the counts, from a real gateway's
logs: sends and refusals by destination country, config generations and their hashes, where
failed authentications came from, which client and route got the vendor's 4xx, probes from the
access log, and an amber chain state when the chain is not keyed — checked in headless Chromium."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.conftest import DEFAULT_POLICY, GatewayFactory, Recorder, basic
from tests.test_audit_review import _chromium, _text

SMSGW = [sys.executable, "-m", "gateway"]


async def vendor_refusing_latvia(request: web.Request, body: bytes) -> web.StreamResponse:
    if b"%2B371" in body:
        return web.json_response({"code": 21211, "message": "Invalid 'To' Phone Number"}, status=400)
    return web.json_response({"sid": "SM" + "0" * 32, "status": "queued"}, status=201)


async def test_report_tables_from_a_real_gateway(
    make_gateway: GatewayFactory, vendors: Any, tmp_path: Path
) -> None:
    vendor = await vendors(Recorder(vendor_refusing_latvia))
    doc = copy.deepcopy(DEFAULT_POLICY)
    doc["client"][0]["countries"] = ["EE", "LV"]
    gw = await make_gateway(vendor.base_url, policies={"default": doc})
    for to in ("+37255512367", "+37255512368", "+37120000001"):
        assert (await gw.send({"To": to, "From": "MyBank", "Body": "hi"})).status in (201, 400)
    assert (await gw.send({"To": "+4915123456789", "From": "MyBank", "Body": "hi"})).status == 403
    for _ in range(2):
        assert (await gw.send(auth=basic("nobody", "wrong"))).status == 401
    probe = await gw.session.get(gw.base + "/wp-login.php")
    assert probe.status == 404
    await gw.running.stop()
    logs = gw.folder / "logs"
    out = tmp_path / "report.json"
    done = await asyncio.to_thread(
        subprocess.run,
        [*SMSGW, "audit", "report", "--format", "json", "--access", str(logs / "access.jsonl"),
         str(logs / "audit.jsonl"), "-o", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tables = json.loads(out.read_text())["tables"]
    assert {c["country"]: (c["allow"], c["deny"]) for c in tables["countries"]} == {
        "EE": (2, 0),
        "LV": (1, 0),
        "DE": (0, 1),
    }
    (generation,) = tables["config_generations"]
    assert generation["generation"] == 1 and len(generation["config_sha256"]) == 64
    assert tables["auth_failures_by_address"] == [{"ip": "127.0.0.1", "failures": 2}]
    assert tables["vendor_4xx"] == [
        {"client": "billing", "route": "twilio-send", "status": 400, "answers": 1}
    ]
    assert tables["probes"] == [{"ip": "127.0.0.1", "status": 404, "requests": 1}]
    # The page, as a reviewer opens it.
    page = tmp_path / "report.html"
    done = await asyncio.to_thread(
        subprocess.run,
        [*SMSGW, "audit", "report", "--access", str(logs / "access.jsonl"), str(logs / "audit.jsonl"),
         "-o", str(page)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = await asyncio.to_thread(
        subprocess.run,
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    dom = shown.stdout
    text = " ".join(_text(dom).split())
    assert "By destination country" in text and "EE 2 0" in text and "DE 0 1" in text
    assert "Failed authentications by address 127.0.0.1 2" in text.replace("address failures ", "")
    assert "billing twilio-send 400 1" in text
    assert '<span class="warn">intact, not keyed</span>' in dom  # amber, not green: no chain key
    assert "No reload weakened the policy." in text
    for number in ("+37255512367", "37255512367", "+4915123456789"):
        assert number not in dom
