"""Tamper evidence across files, rotation and retention: what ``smsgw audit verify`` proves.

Every kind of tampering (an edited, removed, inserted or reordered line, a missing or misplaced
file) is detected and named by file and line; a keyed chain cannot be recomputed without the key;
rotation keeps one chain across files; retention deletes old rotated files only, and says so in
the log. Time is given to the audit log as a clock, and file ages as names, so nothing sleeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import itertools
import json
import os
from pathlib import Path

import pytest

from gateway.audit.log import DAY_S, GENESIS, AuditLog, canonical, rotated_files, rotated_path
from gateway.commands.cli import main
from gateway.commands.review import scan, verify_text
from gateway.core.jsonlog import JsonLinesSink
from tests.conftest import GatewayFactory, Vendor

CHAIN_KEY = b"Vq3x8PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Y-"


def write_log(path: Path, n: int, key: bytes | None = None, **options: object) -> AuditLog:
    log = AuditLog(JsonLinesSink(str(path)), "twilio", key, **options)  # type: ignore[arg-type]
    for i in range(n):
        log.event(
            "request",
            request_id=f"req-{i}",
            client="billing",
            route="twilio-send",
            decision="deny" if i % 3 == 2 else "allow",
            reason="unauthenticated" if i % 3 == 2 else None,
            recipients=["+3725****67"],
            body={"redacted": True, "length": 5},
        )
    return log


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def put(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def rechain(lines: list[str], key: bytes | None, previous: str = GENESIS) -> list[str]:
    """What an attacker who can write the file does after an edit: recompute every chain."""
    out = []
    for line in lines:
        record = json.loads(line)
        message = previous.encode() + b"\n" + canonical(record)
        if key:
            record["chain"] = hmac.new(key, message, hashlib.sha256).hexdigest()
        else:
            record["chain"] = hashlib.sha256(message).hexdigest()
        previous = record["chain"]
        out.append(json.dumps(record))
    return out


def verify(*files: Path, key: bytes | None = None, anchor: str | None = None) -> tuple[int, str, str]:
    """``smsgw audit verify`` in-process, as a reviewer runs it."""
    args = ["audit", "verify", *map(str, files)]
    if anchor is not None:
        args += ["--anchor", anchor]
    if key is not None:
        key_file = files[0].parent / ".chain_key"
        key_file.write_bytes(key)
        args += ["--chain-key-file", str(key_file)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


# -- tampering inside one file ----------------------------------------------------------------


def _edited(lines: list[str], key: bytes | None = None) -> list[str]:
    record = json.loads(lines[2])
    record["decision"] = "allow"  # a refusal turned into an allow, chain value kept
    return [*lines[:2], json.dumps(record), *lines[3:]]


def _edited_late(lines: list[str], key: bytes | None) -> list[str]:
    record = json.loads(lines[3])
    record["client"] = "marketing"
    return [*lines[:3], json.dumps(record), *lines[4:]]


def _inserted(lines: list[str], key: bytes | None) -> list[str]:
    # A forged record whose own chain is right (even made with the key): the line after it breaks.
    forged = json.loads(lines[1])
    forged["request_id"] = "forged"
    return [*lines[:2], *rechain([json.dumps(forged)], key, json.loads(lines[1])["chain"]), *lines[2:]]


TAMPERING = {
    "edited": (_edited, 3),
    "edited later": (_edited_late, 4),
    "removed": (lambda lines, key: [*lines[:2], *lines[3:]], 3),
    "reordered": (lambda lines, key: [*lines[:2], lines[3], lines[2], *lines[4:]], 3),
    "inserted": (_inserted, 4),
    "first line removed": (lambda lines, key: lines[1:], 1),
    "torn line": (lambda lines, key: [*lines[:4], lines[4][:30], *lines[5:]], 5),
}


@pytest.mark.parametrize("key", [None, CHAIN_KEY], ids=["sha256", "keyed"])
@pytest.mark.parametrize("kind", list(TAMPERING))
def test_each_kind_of_tampering_is_detected_at_its_line(tmp_path: Path, kind: str, key: bytes | None) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 6, key).close()
    code, out, _ = verify(path, key=key)
    assert code == 0 and "chain:      intact" in out, out

    tamper, line = TAMPERING[kind]
    put(path, tamper(lines_of(path), key))
    code, out, err = verify(path, key=key)
    assert code == 1
    assert f"BROKEN, {'HMAC' if key else 'SHA-256'}" in out
    assert err.startswith(f"smsgw audit verify: audit.jsonl:{line}: "), err
    assert "result:     FAILED (chain broken" in out


def test_a_keyed_chain_cannot_be_recomputed_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 6, CHAIN_KEY).close()
    edited = _edited(lines_of(path))
    guessed = b"Kq3x8PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Y-"
    for forged in (rechain(edited, None), rechain(edited, guessed)):
        put(path, forged)
        code, _, err = verify(path, key=CHAIN_KEY)
        assert code == 1
        assert "audit.jsonl:1: " in err  # not one recomputed line verifies under the real key
    # Without a key the same kind of forgery is consistent: that is what chain_key is for.
    plain = tmp_path / "plain" / "audit.jsonl"
    write_log(plain, 6).close()
    put(plain, rechain(_edited(lines_of(plain)), None))
    assert verify(plain)[0] == 0


def test_verify_says_when_a_key_is_missing_or_not_needed(tmp_path: Path) -> None:
    keyed = tmp_path / "k" / "audit.jsonl"
    write_log(keyed, 2, CHAIN_KEY).close()
    code, _, err = verify(keyed)
    assert code == 1 and "if logging.chain_key was set, give it" in err
    plain = tmp_path / "p" / "audit.jsonl"
    write_log(plain, 2).close()
    code, _, err = verify(plain, key=CHAIN_KEY)
    assert code == 1 and "written without logging.chain_key" in err


# -- rotation -----------------------------------------------------------------------------------


def rotated_set(folder: Path) -> list[Path]:
    current = folder / "audit.jsonl"
    return [p for _, p in rotated_files(current)] + [current]


@pytest.mark.parametrize("key", [None, CHAIN_KEY], ids=["sha256", "keyed"])
def test_size_rotation_keeps_one_chain_across_files(tmp_path: Path, key: bytes | None) -> None:
    write_log(tmp_path / "audit.jsonl", 20, key, rotate_bytes=1024).close()
    files = rotated_set(tmp_path)
    assert len(files) >= 4
    for before, after in itertools.pairwise(files):
        first = json.loads(lines_of(after)[0])
        assert first["event"] == "audit_rotated"
        assert first["trigger"] == "size"
        assert first["previous_file"] == before.name
        assert first["previous_chain"] == json.loads(lines_of(before)[-1])["chain"]
    code, out, _ = verify(*files, key=key)
    assert code == 0, out
    assert "from the first record" in out
    requests = [json.loads(line) for f in files for line in lines_of(f)]
    assert [r["request_id"] for r in requests if r["event"] == "request"] == [f"req-{i}" for i in range(20)]


def test_a_missing_or_misplaced_file_is_detected(tmp_path: Path) -> None:
    write_log(tmp_path / "audit.jsonl", 20, rotate_bytes=1024).close()
    files = rotated_set(tmp_path)
    code, _, err = verify(*files[:1], *files[2:])  # the second file left out
    assert code == 1
    assert f"{files[2].name}:1: chain broken between files" in err
    assert "a file missing, or the files out of order" in err
    code, _, err = verify(files[1], files[0], *files[2:])  # two files swapped
    assert code == 1 and f"{files[0].name}:1: chain broken between files" in err


def test_oldest_files_removed_by_hand_fail_as_a_missing_beginning(tmp_path: Path) -> None:
    write_log(tmp_path / "audit.jsonl", 20, rotate_bytes=1024).close()
    files = rotated_set(tmp_path)
    code, out, err = verify(*files[2:])  # the two oldest deleted, not by retention
    assert code == 1, out
    assert err.startswith(f"smsgw audit verify: {files[2].name}:1: the beginning of the chain is missing")
    assert f"of {files[1].name}, an unknown predecessor" in err
    assert "chain:      INCOMPLETE" in out and "result:     FAILED (chain incomplete)" in out
    # A reviewer who noted the head of the files before (their anchor) vouches for the start.
    head = json.loads(lines_of(files[1])[-1])["chain"]
    code, out, _ = verify(*files[2:], anchor=head)
    assert code == 0, out
    assert f"note: {files[2].name} starts right after anchor {head[:16]}" in out
    assert f"anchor:     {head[:16]}… found at the link into {files[2].name}" in out


def test_day_rotation_with_the_first_record_of_a_new_utc_day(tmp_path: Path) -> None:
    now = [1_800_000_000.0]  # 2027-01-15 08:00 UTC
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio", rotate_daily=True, clock=lambda: now[0])
    log.event("request", request_id="day-1")
    now[0] += 6 * 3600  # same day
    log.event("request", request_id="day-1-later")
    now[0] += 12 * 3600  # past midnight
    log.event("request", request_id="day-2")
    log.close()
    files = rotated_set(tmp_path)
    assert len(files) == 2
    assert files[0].name == rotated_path(path, now[0]).name
    assert [json.loads(line)["request_id"] for line in lines_of(files[0])] == ["day-1", "day-1-later"]
    rotated, record = (json.loads(line) for line in lines_of(files[1]))
    assert (rotated["event"], rotated["trigger"], record["request_id"]) == ("audit_rotated", "day", "day-2")
    assert verify(*files)[0] == 0


def test_a_restart_on_a_later_day_rotates_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 2).close()
    yesterday = os.stat(path).st_mtime - DAY_S
    os.utime(path, (yesterday, yesterday))
    log = AuditLog(JsonLinesSink(str(path)), "twilio", rotate_daily=True)
    log.event("request", request_id="today")
    log.close()
    files = rotated_set(tmp_path)
    assert len(files) == 2 and len(lines_of(files[0])) == 2
    assert verify(*files)[0] == 0


def test_each_worker_writes_its_own_chain_and_verify_keeps_them_apart(tmp_path: Path) -> None:
    for worker in (1, 2):
        write_log(tmp_path / f"audit.w{worker}.jsonl", 12, rotate_bytes=1024).close()
    files = sorted(tmp_path.glob("audit.w*.jsonl"))  # both workers' files, interleaved by name
    result = scan(files)
    assert not result.breaks
    assert len(result.groups) == 2
    assert {f.name.split(".")[1] for f in result.groups[0]} == {"w1"}
    assert "intact" in verify_text(result)


# -- retention ------------------------------------------------------------------------------------


def _old(folder: Path, name: str, days: float, now: float) -> Path:
    path = rotated_path(folder / name, now - days * DAY_S)
    write_log(path, 1).close()
    return path


def test_retention_purges_old_rotated_files_and_keeps_the_rest(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    log = write_log(tmp_path / "audit.jsonl", 1, clock=lambda: now)
    old = [_old(tmp_path, "audit.jsonl", days, now) for days in (400, 91)]
    young = [_old(tmp_path, "audit.jsonl", days, now) for days in (89, 1)]
    others = [
        _old(tmp_path, "access.jsonl", 400, now),  # another log's files
        _old(tmp_path, "audit.w1.jsonl", 400, now),  # a worker's: that worker purges them
        tmp_path / "audit.notes.jsonl",
    ]
    others[-1].write_text("not a rotated file\n")
    last_chains = [json.loads(lines_of(p)[-1])["chain"] for p in old]

    purged = log.purge(90)
    log.close()

    assert [p["file"] for p in purged] == [p.name for p in old]
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in [*young, *others, tmp_path / "audit.jsonl"])
    event = json.loads(lines_of(tmp_path / "audit.jsonl")[-1])
    assert event["event"] == "audit_purged"
    assert event["retention_days"] == 90
    assert [f["last_chain"] for f in event["files"]] == last_chains
    assert event["failed"] == []
    assert log.purge(90) == []  # nothing more to do, and no empty event
    assert json.loads(lines_of(tmp_path / "audit.jsonl")[-1])["event"] == "audit_purged"


async def test_the_gateway_purges_at_start_and_rotates_by_size(
    make_gateway: GatewayFactory, vendor: Vendor, tmp_path: Path
) -> None:
    folder = tmp_path / "gw"
    (folder / "logs").mkdir(parents=True)
    now = os.stat(folder).st_mtime
    stale = _old(folder / "logs", "audit.jsonl", 120, now)
    recent = _old(folder / "logs", "audit.jsonl", 10, now)
    gw = await make_gateway(
        vendor.base_url,
        settings={"logging": {"retention_days": 30, "rotate_bytes": 2048}},
        folder=folder,
    )
    assert not stale.exists() and recent.exists()
    purge = next(r for r in gw.audit_all() if r["event"] == "audit_purged")
    assert [f["file"] for f in purge["files"]] == [stale.name]
    for _ in range(4):
        assert (await gw.send()).status == 201
    await gw.running.stop()
    files = rotated_set(folder / "logs")
    assert len(files) >= 3  # the recent one, then rotations by size
    rotations = [json.loads(lines_of(f)[0]) for f in files[2:]]
    assert all(r["event"] == "audit_rotated" and r["trigger"] == "size" for r in rotations)
    code, out, _ = verify(*files[1:])  # everything the gateway wrote, in order
    assert code == 0, out
