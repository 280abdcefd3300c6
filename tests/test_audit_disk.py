"""The audit log on a disk that fills up: a failed write leaves no torn line behind.

A small real filesystem (a 64 KiB tmpfs) is filled while the gateway runs: the send whose audit
record no longer fits is refused (503 ``audit_unavailable``), and once space is back the next
send is written on a line of its own, so ``smsgw audit verify`` passes and every record reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit.log import AuditLog
from gateway.core.jsonlog import JsonLinesSink
from tests.conftest import GatewayFactory, Recorder, error_of, post

SEND = b"To=%2B37255512367&From=MyBank&Body=hello"
TIMEOUT = 30
PIPE_SIZE = 16384
HALF = PIPE_SIZE // 2
MAX_SENDS = 40  # a 64 KiB disk holds far fewer records than this after the filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for this test only (needs root and mount rights)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        # Lazy: the gateway fixture may still hold the audit file open; it is detached now and
        # freed when that descriptor closes.
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Take every free block of the filesystem with one filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            for _ in range(1024):  # 64 KiB / 4 KiB blocks: ends long before the bound
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):
            for _ in range(4096):
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    return filler


def verify(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


async def test_a_full_disk_refuses_the_send_and_leaves_no_torn_line(
    small_disk: Path, make_gateway: GatewayFactory, vendors
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    audit_path = small_disk / "audit.jsonl"
    gw = await make_gateway(vendor.base_url, settings={"logging": {"audit_log": str(audit_path)}})
    response, payload = await post(gw, SEND)
    assert response.status == 201, payload

    filler = fill(small_disk)
    statuses = []
    for _ in range(MAX_SENDS):  # the records left in the last block fit, then one does not
        response, payload = await post(gw, SEND)
        statuses.append(response.status)
        if response.status != 201:
            break
    assert statuses[-1] == 503, statuses
    assert error_of(payload)["code"] == "audit_unavailable"
    assert set(statuses[:-1]) <= {201}
    sent_while_full = len(statuses) - 1
    assert len(recorder.seen) == 1 + sent_while_full  # the refused send never left the gateway
    # The failed write left nothing behind: the file ends with a whole line.
    assert audit_path.read_bytes().endswith(b"\n")

    filler.unlink()  # space is back
    response, payload = await post(gw, SEND)
    assert response.status == 201, payload
    await gw.running.stop()

    lines = audit_path.read_bytes().splitlines()
    records = [json.loads(line) for line in lines]  # every line is a whole record
    allowed = [r for r in records if r.get("event") == "request" and r.get("decision") == "allow"]
    assert len(allowed) == len(recorder.seen) == 2 + sent_while_full
    assert records[-1]["event"] == "gateway_stopped"
    result = await asyncio.to_thread(verify, audit_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chain:      intact" in result.stdout
    assert "torn" not in result.stdout


def test_a_write_that_cannot_be_undone_leaves_the_torn_bytes_on_a_line_of_their_own(tmp_path: Path) -> None:
    """Where torn bytes cannot be cut off (the audit log goes to a pipe, a log collector reads
    it), the next record starts on a new line, and verify names the torn line as a failed write
    while the chain goes on from the last whole record."""
    sink = JsonLinesSink(str(tmp_path / "unused.jsonl"))
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    fcntl.fcntl(write_end, fcntl.F_SETFL, os.O_NONBLOCK)  # a full pipe fails the write (EAGAIN)
    os.dup2(write_end, sink._fd)  # the sink now writes into the pipe
    os.close(write_end)
    log = AuditLog(sink, "twilio")
    try:
        assert log.event("request", request_id="before")
        stream = os.read(read_end, 8192)
        os.write(sink._fd, b"x" * HALF)  # someone else's bytes: half the pipe is left
        # Longer than the room left, so the kernel writes part of it and then refuses (EAGAIN).
        assert not log.event("request", request_id="torn", detail="y" * (3 * HALF))
        drained = os.read(read_end, 2 * PIPE_SIZE)
        assert drained[:HALF] == b"x" * HALF and len(drained) == PIPE_SIZE
        stream += drained[HALF:]  # the record's first half-pipe of bytes, no newline
        assert log.event("request", request_id="after")
        stream += os.read(read_end, 2 * PIPE_SIZE)
    finally:
        log.close()
        os.close(read_end)

    lines = stream.split(b"\n")
    assert len(lines[1]) == HALF and lines[1].startswith(b'{"detail":"yyy')  # the torn bytes, alone
    assert json.loads(lines[2])["request_id"] == "after"  # the next record starts a line
    collected = tmp_path / "audit.jsonl"
    collected.write_bytes(stream)
    result = verify(collected)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit.jsonl:2: a torn line (a write that failed); the chain goes on from line 1" in result.stdout


def test_verify_still_fails_a_torn_line_the_chain_does_not_go_around(tmp_path: Path) -> None:
    """A record cut short by an edit is not a failed write: the next record links to it."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    for i in range(3):
        log.event("request", request_id=f"r{i}")
    log.close()
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join([lines[0], lines[1][:40], lines[2]]) + b"\n")
    result = verify(path)
    assert result.returncode == 1
    assert "audit.jsonl:2: chain broken: not JSON (a torn or edited line)" in result.stderr


def test_a_restart_after_a_torn_end_starts_a_line_of_its_own(tmp_path: Path) -> None:
    """A process that died mid-write left a torn end; the next process never glues onto it."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    assert log.event("request", request_id="before")
    log.close()
    with path.open("ab") as fh:
        fh.write(b'{"client":"billing","dec')  # what a crash mid-write leaves
    log = AuditLog(JsonLinesSink(str(path)), "twilio")  # the restart continues the chain
    assert log.event("request", request_id="after")
    log.close()
    lines = path.read_bytes().splitlines()
    assert lines[1] == b'{"client":"billing","dec'
    assert json.loads(lines[2])["request_id"] == "after"
    result = verify(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit.jsonl:2: a torn line (a write that failed); the chain goes on from line 1" in result.stdout
