"""What ``smsgw audit verify`` proves about the ends of a chain, not only its links.

The beginning: a set of files must start at the chain's first record, right after files the
gateway's own retention deleted (named by an ``audit_purged`` event), or at an anchor a reviewer
noted; whole oldest files deleted by hand fail. The end: ``smsgw audit head`` prints each
chain's head, and ``verify --anchor HASH`` fails once the log no longer reaches it (its tail
cut off, or the whole log replaced). The set: with ``-c CONFIG`` and several workers, each
worker's chain must be given. All through the real command line, on logs the gateway wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.audit.log import DAY_S, AuditLog, rotated_files
from gateway.commands.cli import main
from gateway.core.jsonlog import JsonLinesSink
from tests.conftest import GatewayFactory, Vendor, write_config

TIMEOUT = 30


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def smsgw(*args: str | Path) -> Ran:
    """The command line's own entry point, in this process (starting Python costs seconds)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Ran(code, out.getvalue(), err.getvalue())


async def smsgw_process(*args: str | Path) -> Ran:
    """The real command in its own process, as a reviewer runs it."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def chain_files(current: Path) -> list[Path]:
    return [p for _, p in rotated_files(current)] + [current]


def daily_log(folder: Path, days: int, now: list[float]) -> AuditLog:
    """One record a day for ``days`` days: a rotated file per day, closed on the next."""
    log = AuditLog(
        JsonLinesSink(str(folder / "audit.jsonl")), "twilio", rotate_daily=True, clock=lambda: now[0]
    )
    for day in range(days):
        log.event("request", request_id=f"day-{day}", decision="allow", recipients=["+3725****67"])
        now[0] += DAY_S
    return log


# -- the beginning -------------------------------------------------------------------------------


def test_files_deleted_by_retention_leave_a_chain_that_starts_on_record(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    log = daily_log(tmp_path, 6, now)
    purged = log.purge(3, now=now[0])
    log.close()
    assert len(purged) == 2
    files = chain_files(tmp_path / "audit.jsonl")
    result = smsgw("audit", "verify", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"starts after {purged[-1]['file']}, deleted by retention (audit_purged)" in result.stdout
    # The same files without the one holding the audit_purged event: nothing vouches for the start.
    result = smsgw("audit", "verify", *files[:-1])
    assert result.returncode == 1
    assert f"{files[0].name}:1: the beginning of the chain is missing" in result.stderr


def test_whole_oldest_files_deleted_by_hand_fail_verify(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    daily_log(tmp_path, 6, now).close()
    files = chain_files(tmp_path / "audit.jsonl")
    assert smsgw("audit", "verify", *files).returncode == 0
    for old in files[:2]:
        old.unlink()  # not the gateway's retention: no audit_purged event names them
    result = smsgw("audit", "verify", *files[2:])
    assert result.returncode == 1, result.stdout
    assert result.stderr == (
        f"smsgw audit verify: {files[2].name}:1: the beginning of the chain is missing (its first record "
        f"links to chain {json.loads(files[2].read_text().splitlines()[0])['previous_chain'][:16]}… of "
        f"{files[1].name}, an unknown predecessor: not given, not deleted by retention, not an --anchor)\n"
    )
    assert "result:     FAILED (chain incomplete)" in result.stdout


# -- the end: head and anchor -------------------------------------------------------------------


async def test_an_anchor_catches_a_cut_tail_and_a_replaced_log(
    make_gateway: GatewayFactory, vendor: Vendor, tmp_path: Path
) -> None:
    folder = tmp_path / "gw"
    gw = await make_gateway(vendor.base_url, folder=folder)
    for _ in range(2):
        assert (await gw.send()).status == 201
    await gw.running.stop()
    audit = folder / "logs" / "audit.jsonl"
    lines = audit.read_text().splitlines()

    result = await smsgw_process("audit", "head", audit)
    assert result.returncode == 0, result.stderr
    head, where, ts, records = result.stdout.rstrip("\n").split("  ")
    last = json.loads(lines[-1])
    assert (head, where, ts, records) == (
        last["chain"],
        f"audit.jsonl:{len(lines)}",
        last["ts"],
        f"{len(lines)} record(s)",
    )
    verified = smsgw("audit", "verify", audit)
    assert f"head:       {result.stdout}" in verified.stdout  # verify's summary shows it too

    gw = await make_gateway(vendor.base_url, folder=folder)  # a restart continues the chain
    assert (await gw.send()).status == 201
    await gw.running.stop()
    result = smsgw("audit", "verify", "--anchor", head, audit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"anchor:     {head[:16]}… found at audit.jsonl:{len(lines)}" in result.stdout

    # The tail cut back to before the anchored record: the links still hold, the anchor does not.
    audit.write_text("".join(line + "\n" for line in lines[:-1]))
    assert smsgw("audit", "verify", audit).returncode == 0  # why anchors exist
    result = smsgw("audit", "verify", "--anchor", head, audit)
    assert result.returncode == 1
    assert result.stderr == (
        f"smsgw audit verify: anchor {head[:16]}… is not in the chain: records up to it were removed "
        "(the end cut off), or these are not the files it was noted from\n"
    )
    assert "result:     FAILED (chain incomplete)" in result.stdout

    # The whole log replaced by a fresh one from a new start: a valid chain, but not the one anchored.
    audit.unlink()
    gw = await make_gateway(vendor.base_url, folder=folder)
    await gw.running.stop()
    assert smsgw("audit", "verify", audit).returncode == 0
    assert smsgw("audit", "verify", "--anchor", head, audit).returncode == 1


def test_an_anchor_that_is_not_a_chain_value_is_a_usage_error(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    daily_log(tmp_path, 1, now).close()
    for bad in ("abc", "0" * 64, "g" * 64):
        result = smsgw("audit", "verify", "--anchor", bad, tmp_path / "audit.jsonl")
        assert result.returncode == 2
        assert "--anchor" in result.stderr and "not a chain value (64 hex digits" in result.stderr
        assert result.stdout == ""


def test_head_refuses_a_broken_chain_and_names_each_workers_head(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    for worker in (1, 2):
        log = AuditLog(
            JsonLinesSink(str(tmp_path / f"audit.w{worker}.jsonl")), "twilio", clock=lambda: now[0]
        )
        for i in range(3):
            log.event("request", request_id=f"w{worker}-{i}")
        log.close()
    files = sorted(tmp_path.glob("audit.w*.jsonl"))
    result = smsgw("audit", "head", *files)
    assert result.returncode == 0, result.stderr
    heads = result.stdout.splitlines()
    assert [h.split("  ")[1] for h in heads] == ["audit.w1.jsonl:3", "audit.w2.jsonl:3"]
    lines = files[0].read_text().splitlines()
    files[0].write_text(lines[0] + "\n" + lines[2] + "\n")  # a record removed
    result = smsgw("audit", "head", *files)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("smsgw audit head: audit.w1.jsonl:2: chain broken")


def test_the_report_shows_each_head(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    daily_log(tmp_path, 2, now).close()
    files = chain_files(tmp_path / "audit.jsonl")
    head = json.loads(files[-1].read_text().splitlines()[-1])["chain"]
    result = smsgw("audit", "report", "--format", "json", *files)
    assert result.returncode == 0, result.stderr
    chain = json.loads(result.stdout)["chain"]
    assert chain["complete"] is True and chain["missing"] == []
    assert chain["heads"] == [
        {"file": "audit.jsonl", "line": 2, "chain": head, "ts": chain["heads"][0]["ts"], "records": 3}
    ]
    page = smsgw("audit", "report", *files).stdout
    assert f"<code>{head}</code>" in page
    # Oldest file gone: the report says the chain is incomplete.
    files[0].unlink()
    chain = json.loads(smsgw("audit", "report", "--format", "json", *files[1:]).stdout)["chain"]
    assert chain["complete"] is False
    assert chain["missing"][0].startswith("audit.jsonl:1: the beginning of the chain is missing")
    assert "INCOMPLETE" in smsgw("audit", "report", *files[1:]).stdout


# -- the set: one chain per worker ----------------------------------------------------------------


def test_with_the_config_a_workers_missing_chain_fails_verify(tmp_path: Path, pki: dict[str, Path]) -> None:
    config = write_config(tmp_path / "gw", pki, "https://127.0.0.1:9", {"server": {"workers": 3}})
    logs = tmp_path / "copy"  # a reviewer's copy of the logs, in another folder
    logs.mkdir()
    for worker in (1, 2, 3):
        log = AuditLog(JsonLinesSink(str(logs / f"audit.w{worker}.jsonl")), "twilio")
        log.event("request", request_id=f"w{worker}")
        log.close()
    every = [logs / f"audit.w{w}.jsonl" for w in (1, 2, 3)]
    result = smsgw("audit", "verify", "-c", config, *every)
    assert result.returncode == 0, result.stdout + result.stderr
    result = smsgw("audit", "verify", "-c", config, every[0], every[2])
    assert result.returncode == 1
    assert result.stderr == (
        f"smsgw audit verify: audit.w2.jsonl is missing: {config} has server.workers = 3, each writing "
        "its own chain, and no file of its chain was given\n"
    )
    assert smsgw("audit", "verify", every[0]).returncode == 0  # without the config, the set is unknown
    # One worker: the configured file itself is expected.
    single = write_config(
        tmp_path / "one", pki, "https://127.0.0.1:9", {"logging": {"audit_log": "x/a.jsonl"}}
    )
    result = smsgw("audit", "verify", "-c", single, every[0])
    assert result.returncode == 1
    assert "a.jsonl is missing: " in result.stderr
