"""Hot reload (``Running.reload``: SIGHUP, ``smsgw reload``): config, policies and certificate are
swapped whole; requests in flight finish under the old policy; a broken config changes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    Gateway,
    GatewayFactory,
    Recorder,
    Vendor,
    basic,
    client_ssl,
    error_of,
    free_port,
    policy,
    post,
    write_config,
)
from tests.test_metrics import parse, scrape, value

ROOT = Path(__file__).resolve().parent.parent
SMSGW = [sys.executable, "-m", "gateway"]
EE = {"To": "+37255512367", "From": "MyBank", "Body": "hello"}
US = {"To": "+14155550100", "From": "MyBank", "Body": "hello"}


async def readyz(gw: Gateway) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(gw.admin + "/readyz") as response:
        return json.loads(await response.read())


def rewrite(gw: Gateway, vendor_url: str, settings: dict | None = None, policies: dict | None = None) -> None:
    """The operator edits the files (the gateway's ports stay ``:0`` as they were written)."""
    write_config(gw.folder, gw.pki, vendor_url, settings, policies)


async def test_reload_under_load_swaps_the_policy_with_no_failed_request(
    make_gateway: GatewayFactory, vendor: Vendor
) -> None:
    gw = await make_gateway(vendor.base_url, policies=policy(client={"countries": ["EE", "US"]}))
    assert (await gw.send(US)).status == 201
    before = await readyz(gw)
    statuses: Counter[int] = Counter()
    started = asyncio.Event()

    async def load() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(gw.pki))) as session:
            for _ in range(40):  # bounded: 4 x 40 sends, each client on its own keep-alive connection
                started.set()
                response, _ = await post(gw, urlencode(EE).encode(), session=session)
                statuses[response.status] += 1

    tasks = [asyncio.create_task(load()) for _ in range(4)]
    await asyncio.wait_for(started.wait(), 5)
    rewrite(gw, vendor.base_url, policies=policy(client={"countries": ["EE"]}))
    assert await gw.running.reload()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert statuses == {201: 160}  # not one request failed across the swap
    refused = await gw.send(US)  # the new policy is in force
    assert refused.status == 403
    assert error_of(await refused.read())["code"] == "destination_not_allowed"
    after = await readyz(gw)
    assert (before["config_generation"], after["config_generation"]) == (1, 2)
    assert after["config_sha256"] != before["config_sha256"] and len(after["config_sha256"]) == 64
    loads = [r for r in gw.audit_all() if r["event"] == "config_loaded"]
    assert [(r["trigger"], r["generation"]) for r in loads] == [("start", 1), ("reload", 2)]
    assert loads[1]["config_sha256"] == after["config_sha256"]
    m = parse((await scrape(gw.admin))[1])
    assert value(m, "smsgw_config_generation") == 2
    assert value(m, "smsgw_config_reloads_total", result="ok") == 1


async def test_a_request_in_flight_finishes_under_the_policy_it_started_with(
    make_gateway: GatewayFactory, vendors
) -> None:
    recorder = Recorder()

    async def hold(_: web.Request, __: bytes) -> web.StreamResponse:
        await recorder.release.wait()
        return web.json_response({"sid": "SM" + "1" * 32}, status=201)

    recorder.behaviour = hold
    vendor = await vendors(recorder)
    gw = await make_gateway(vendor.base_url)
    in_flight = asyncio.create_task(gw.send())
    await asyncio.wait_for(recorder.arrived.wait(), 5)
    # the new policy no longer grants the scope the send needs
    rewrite(gw, vendor.base_url, policies=policy(client={"scopes": []}))
    assert await gw.running.reload()
    refused = await gw.send()
    assert refused.status == 403 and error_of(await refused.read())["code"] == "forbidden"
    recorder.release.set()
    assert (await asyncio.wait_for(in_flight, 10)).status == 201


async def test_a_broken_config_is_refused_and_the_old_one_keeps_serving(
    make_gateway: GatewayFactory, vendor: Vendor, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await make_gateway(vendor.base_url)
    sha = gw.running.config_sha256
    broken = policy(route={"kind": "sms-ish"})
    rewrite(gw, vendor.base_url, policies=broken)
    with caplog.at_level(logging.ERROR, logger="smsgw"):
        assert not await gw.running.reload()
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload refused:")]
    assert any(
        "policies/default.toml: route[0].kind:" in line or "default.toml: route[0].kind:" in line
        for line in refusals
    ), refusals
    assert (await gw.send()).status == 201  # the old config serves on
    assert (await readyz(gw))["config_generation"] == 1 and gw.running.config_sha256 == sha
    rejected = [r for r in gw.audit_all() if r["event"] == "config_rejected"]
    assert len(rejected) == 1 and rejected[0]["generation"] == 1
    assert [(p["key"], p["file"].endswith("default.toml")) for p in rejected[0]["problems"]] == [
        ("route[0].kind", True)
    ]
    # not TOML at all
    (gw.folder / "config.toml").write_text("[server\n")
    assert not await gw.running.reload()
    assert (await gw.send()).status == 201
    m = parse((await scrape(gw.admin))[1])
    assert value(m, "smsgw_config_reloads_total", result="refused") == 2
    assert value(m, "smsgw_config_generation") == 1


async def test_keys_that_need_a_restart_are_refused_by_name(
    make_gateway: GatewayFactory, vendor: Vendor, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await make_gateway(vendor.base_url)
    rewrite(
        gw, vendor.base_url, settings={"server": {"max_body_bytes": 4096}, "storage": {"key_prefix": "x:"}}
    )
    with caplog.at_level(logging.ERROR, logger="smsgw"):
        assert not await gw.running.reload()
    text = caplog.text
    assert "server.max_body_bytes: changed, but takes effect only after a restart" in text
    assert "storage.key_prefix: changed, but takes effect only after a restart" in text
    assert (await gw.send()).status == 201
    # what a reload may change goes through: storage.on_error (a live setting of the storage)
    rewrite(gw, vendor.base_url, settings={"storage": {"on_error": "open"}})
    assert await gw.running.reload()
    assert gw.running.services.storage.on_error == "open"


async def test_a_new_vendor_url_takes_new_requests_while_old_ones_finish(
    make_gateway: GatewayFactory, vendors
) -> None:
    first, second = Recorder(), Recorder()

    async def hold(_: web.Request, __: bytes) -> web.StreamResponse:
        await first.release.wait()
        return web.json_response({"sid": "SM" + "2" * 32}, status=201)

    first.behaviour = hold
    old_vendor, new_vendor = await vendors(first), await vendors(second)
    gw = await make_gateway(old_vendor.base_url)
    in_flight = asyncio.create_task(gw.send())
    await asyncio.wait_for(first.arrived.wait(), 5)
    rewrite(gw, new_vendor.base_url)
    assert await gw.running.reload()
    assert (await gw.send()).status == 201
    assert len(second.seen) == 1  # new requests go to the new vendor
    first.release.set()
    assert (await asyncio.wait_for(in_flight, 10)).status == 201  # the old pool was not closed under it
    assert len(first.seen) == 1


async def test_the_certificate_is_reloaded_with_the_config(
    make_gateway: GatewayFactory, vendor: Vendor, pki: dict[str, Path], ca: trustme.CA, tmp_path: Path
) -> None:
    gw = await make_gateway(vendor.base_url)

    async def served_certificate() -> bytes:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", gw.running.public_port, ssl=client_ssl(pki)), 5
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return der

    old = await served_certificate()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "new-cert.pem", tmp_path / "new-key.pem"
    issued.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    issued.cert_chain_pems[0].write_to_path(str(cert))
    rewrite(gw, vendor.base_url, settings={"server": {"tls": {"cert_file": str(cert), "key_file": str(key)}}})
    assert await gw.running.reload()
    new = await served_certificate()
    assert new != old and new == ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert (await gw.send()).status == 201
    # (the default policy's rate-limit warning is a config_warning after each config_loaded)
    last = [r for r in gw.audit_all() if r["event"] != "config_warning"][-4:]
    assert [r["event"] for r in last] == ["config_loaded", "certificate_reloaded", "request", "outcome"]
    assert last[0]["trigger"] == "reload" and last[1]["ok"] is True


# --------------------------------------------------------------------------- smsgw reload


def test_smsgw_reload_signals_through_the_pid_file(
    tmp_path: Path, pki: dict[str, Path], vendor_process_url: str
) -> None:
    """A real ``smsgw serve`` process: ``smsgw reload`` checks the config first (a broken one is
    not sent), signals through the pid file and waits for /readyz to show the new config."""
    port, admin_port = free_port(), free_port()
    settings = {"server": {"listen": f"127.0.0.1:{port}"}, "admin": {"listen": f"127.0.0.1:{admin_port}"}}
    config = write_config(tmp_path, pki, vendor_process_url, settings)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stderr = (tmp_path / "stderr.txt").open("wb")
    process = subprocess.Popen([*SMSGW, "serve", "-c", str(config)], cwd=tmp_path, stderr=stderr, env=env)
    stderr.close()
    try:
        _wait_for(tmp_path / "stderr.txt", "listening on", process)
        pid_file = tmp_path / "smsgw.pid"
        assert int(pid_file.read_text()) == process.pid

        def reload(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*SMSGW, "reload", "-c", str(config), "--wait", "10", *extra],
                capture_output=True, text=True, timeout=60, env=env, check=False,
            )  # fmt: skip

        write_config(tmp_path, pki, vendor_process_url, settings, policy(route={"kind": "nope"}))
        broken = reload()
        assert broken.returncode == 2 and "route[0].kind" in broken.stderr
        assert "sent SIGHUP" not in broken.stdout
        write_config(tmp_path, pki, vendor_process_url, settings, policy(client={"countries": ["EE"]}))
        assert send(port, pki, EE) == 201  # through the gateway to `smsgw sandbox`, as before
        done = reload()
        assert done.returncode == 0, done.stderr
        assert "reloaded: config generation 2" in done.stdout
        assert send(port, pki, EE) == 201
        assert send(port, pki, US) == 403  # the new policy
        # a restart-only change passes check-config but the gateway refuses it: exit 1, and why
        restart = {**settings, "server": {**settings["server"], "max_body_bytes": 4096}}
        write_config(tmp_path, pki, vendor_process_url, restart)
        refused = reload("--pid-file", str(pid_file), "--wait", "2")
        assert refused.returncode == 1 and "the reload was refused" in refused.stderr
        log = (tmp_path / "stderr.txt").read_text()
        assert "server.max_body_bytes: changed, but takes effect only after a restart" in log
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not pid_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def send(port: int, pki: dict[str, Path], data: dict[str, str]) -> int:
    """One send from a plain synchronous client (these tests run outside an event loop)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/2010-04-01/Accounts/{CLIENT_USER}/Messages.json",
        data=urlencode(data).encode(),
        headers={"Authorization": basic(CLIENT_USER, CLIENT_PASSWORD)},
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=client_ssl(pki)) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, path.read_text(errors="replace")
        time.sleep(0.05)


@pytest.fixture
def vendor_process_url(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Any:
    """The sandbox vendor as its own process (``smsgw sandbox``), for gateways in other processes."""
    folder = tmp_path_factory.mktemp("sandbox")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SMSGW_SANDBOX_ACCOUNT": "AC" + "a1" * 16,
        "SMSGW_SANDBOX_TOKEN": "vendor-token-3f9c1e0b7d2a4c58",
    }
    log = (folder / "stderr.txt").open("wb")
    process = subprocess.Popen(
        [*SMSGW, "sandbox", "--listen", f"127.0.0.1:{port}",
         "--cert", str(pki["vendor_cert"]), "--key", str(pki["vendor_key"])],
        stderr=log, env=env,
    )  # fmt: skip
    log.close()
    _wait_for(folder / "stderr.txt", "sandbox vendor listening on https://127.0.0.1", process)
    yield f"https://127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
