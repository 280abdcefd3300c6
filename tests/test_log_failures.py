"""A failing log never changes an answer the vendor already gave; an unwritable audit log fails closed.

A send the vendor accepted must reach the client even when the access log cannot be written:
an SDK that got a 500 instead would retry and send the SMS twice. The audit record that must
exist *before* a send is different: without it the gateway refuses (503) rather than send
unaudited.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from tests.conftest import (
    CLIENT_PASSWORD,
    CLIENT_USER,
    GatewayFactory,
    Recorder,
    basic,
    client_ssl,
    error_of,
    free_port,
    post,
    write_config,
)

SEND = b"To=%2B37255512367&From=MyBank&Body=hello"
TIMEOUT = 20


async def test_a_closed_stdout_access_log_does_not_turn_a_send_into_a_500(
    vendors, pki: dict[str, Path], tmp_path: Path
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    port, admin = free_port(), free_port()
    config = write_config(
        tmp_path / "gw",
        pki,
        vendor.base_url,
        settings={
            "server": {"listen": f"127.0.0.1:{port}"},
            "admin": {"listen": f"127.0.0.1:{admin}"},
            "logging": {"access_log": "-"},
        },
    )
    stderr_path = tmp_path / "stderr.log"
    # The gateway's stdout is a pipe nobody reads: every write to it fails (EPIPE).
    read_end, write_end = os.pipe()
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "-c", str(config), stdout=write_end, stderr=stderr
        )
    os.close(write_end)
    os.close(read_end)
    try:
        async with asyncio.timeout(TIMEOUT):
            while "listening on" not in stderr_path.read_text():
                assert proc.returncode is None, stderr_path.read_text()
                await asyncio.sleep(0.05)
        url = f"https://127.0.0.1:{port}/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
        headers = {
            "Authorization": basic(CLIENT_USER, CLIENT_PASSWORD),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(pki))) as session:
            for _ in range(3):
                async with session.post(url, data=SEND, headers=headers) as response:
                    payload = await response.read()
                    assert response.status == 201, payload
        assert len(recorder.seen) == 3  # each send went once, and each answer came back
        text = stderr_path.read_text()
        assert text.count("cannot write to stdout (BrokenPipeError)") == 1, text  # reported once
        assert "Traceback" not in text
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), TIMEOUT)


def _break(fd: int, path: Path) -> None:
    """Make every later write on ``fd`` fail (EBADF), as a vanished disk or a revoked file would."""
    readonly = os.open(path, os.O_RDONLY)
    os.dup2(readonly, fd)
    os.close(readonly)


async def test_an_unwritable_audit_log_refuses_the_send_before_the_vendor_sees_it(
    make_gateway: GatewayFactory, vendors
) -> None:
    recorder = Recorder()
    gw = await make_gateway((await vendors(recorder)).base_url)
    audit = gw.running.services.audit
    assert audit is not None
    _break(audit._sink._fd, gw.folder / "logs" / "audit.jsonl")
    response, payload = await post(gw, SEND)
    assert response.status == 503, payload
    assert error_of(payload)["code"] == "audit_unavailable"
    assert recorder.seen == []
    assert audit.failures >= 1
    # The access log still shows the refusal.
    (access,) = gw.access()
    assert (access["status"], access["reason"]) == (503, "audit_unavailable")


async def test_an_unwritable_access_log_changes_no_answer(make_gateway: GatewayFactory, vendors) -> None:
    recorder = Recorder()
    gw = await make_gateway((await vendors(recorder)).base_url)
    access = gw.running.services.access_log
    assert access is not None
    _break(access._fd, gw.folder / "logs" / "access.jsonl")
    for _ in range(2):
        response, payload = await post(gw, SEND)
        assert response.status == 201, payload
    assert len(recorder.seen) == 2
    assert access.failures == 2
    assert [r["event"] for r in gw.audit()] == ["request", "outcome"] * 2
