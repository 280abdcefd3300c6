"""gateway/audit/log.py: canonical records and the hash chain that makes the audit log tamper-evident."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.audit.log import GENESIS, AuditLog, canonical, chain_value, last_chain
from gateway.core.exchange import Exchange
from gateway.core.jsonlog import JsonLinesSink


def test_canonical_is_sorted_compact_utf8_without_chain() -> None:
    record = {"z": 1, "a": "é", "chain": "abc", "m": {"y": [1, None], "b": True}}
    assert canonical(record) == '{"a":"é","m":{"b":true,"y":[1,null]},"z":1}'.encode()


def test_canonical_stringifies_unknown_types() -> None:
    assert canonical({"p": Path("/x")}) == b'{"p":"/x"}'


def test_canonical_ignores_chain() -> None:
    assert canonical({"a": 1, "chain": "x"}) == canonical({"a": 1}) == canonical({"a": 1, "chain": "y"})


def test_chain_value_plain_and_keyed() -> None:
    record = {"b": 2, "a": 1, "chain": "ignored"}
    message = GENESIS.encode() + b"\n" + b'{"a":1,"b":2}'
    plain = chain_value(GENESIS, record, None)
    keyed = chain_value(GENESIS, record, b"chain-key")
    assert plain == hashlib.sha256(message).hexdigest()
    assert keyed == hmac.new(b"chain-key", message, hashlib.sha256).hexdigest()
    assert plain != keyed
    assert chain_value(GENESIS, record, b"other-key") != keyed
    assert chain_value("1" * 64, record, None) != plain
    assert chain_value(GENESIS, {"a": 1, "b": 3}, None) != plain
    assert re.fullmatch(r"[0-9a-f]{64}", plain)


def _ctx(request_id: str) -> Exchange:
    """An exchange as the stages leave it (no live request is needed to write records)."""
    ex = Exchange(
        request=None,  # type: ignore[arg-type]
        policy=None,  # type: ignore[arg-type]
        request_id=request_id,
        started=time.perf_counter(),
        method="POST",
        path="/2010-04-01/Accounts/AC1/Messages.json",
        ip="198.51.100.7",
        log_recipients=["+4479*****23"],
        recipient_count=1,
        log_sender="ACME",
        log_body={"hmac": "abc"},
    )
    ex.route = SimpleNamespace(name="twilio-send")  # type: ignore[assignment]
    ex.client = SimpleNamespace(id="billing")  # type: ignore[assignment]
    return ex


def _write_pair(log: AuditLog, request_id: str) -> None:
    ctx = _ctx(request_id)
    log.decision(ctx, "allow")
    assert ctx.audited is True
    ctx.status, ctx.upstream_ms, ctx.vendor_message_id = 201, 12.5, "SM1"
    log.outcome(ctx, 13.0)


def _verify(path: Path, key: bytes | None) -> list[dict]:
    records, previous = [], GENESIS
    for line in path.read_bytes().splitlines():
        record = json.loads(line)
        assert record["chain"] == chain_value(previous, record, key)
        previous = record["chain"]
        records.append(record)
    return records


@pytest.mark.parametrize("key", [None, b"audit-chain-key"])
def test_audit_log_lines_chain_from_genesis(tmp_path: Path, key: bytes | None) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio", key)
    _write_pair(log, "req-1")
    log.close()
    records = _verify(path, key)
    assert [(r["event"], r["request_id"]) for r in records] == [("request", "req-1"), ("outcome", "req-1")]
    assert records[0]["decision"] == "allow"
    assert records[0]["provider"] == "twilio"
    assert records[1]["status"] == 201
    assert records[1]["vendor_message_id"] == "SM1"
    assert records[0]["chain"] == chain_value(GENESIS, records[0], key)


def test_audit_log_keyed_chain_does_not_verify_without_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio", b"k")
    _write_pair(log, "req-1")
    log.close()
    first = json.loads(path.read_bytes().splitlines()[0])
    assert first["chain"] != chain_value(GENESIS, first, None)


@pytest.mark.parametrize("key", [None, b"audit-chain-key"])
def test_audit_log_restart_continues_the_chain(tmp_path: Path, key: bytes | None) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(JsonLinesSink(str(path)), "twilio", key)
    _write_pair(first, "req-1")
    first.close()
    before = last_chain(path)
    second = AuditLog(JsonLinesSink(str(path)), "twilio", key)
    _write_pair(second, "req-2")
    second.close()
    records = _verify(path, key)
    assert len(records) == 4
    assert records[2]["chain"] == chain_value(before, records[2], key)
    assert last_chain(path) == records[3]["chain"]


def test_audit_line_keys_sorted_with_chain_last(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    ctx = _ctx("req-1")
    ctx.status, ctx.reason = 403, "ip_not_allowed"
    log.decision(ctx, "deny")
    log.close()
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    keys = list(json.loads(raw, object_pairs_hook=lambda pairs: dict(pairs)).keys())
    assert keys[-1] == "chain"
    assert keys[:-1] == sorted(keys[:-1])
    record = json.loads(raw)
    assert (record["decision"], record["status"], record["reason"]) == ("deny", 403, "ip_not_allowed")
    assert raw.rstrip(b"\n") == canonical(record)[:-1] + b',"chain":"' + record["chain"].encode() + b'"}'


def test_last_chain_of_missing_file_is_genesis(tmp_path: Path) -> None:
    assert last_chain(tmp_path / "nope.jsonl") == GENESIS


def test_last_chain_skips_garbage_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesSink(str(path)), "twilio")
    _write_pair(log, "req-1")
    log.close()
    good = _verify(path, None)[-1]["chain"]
    with path.open("ab") as fh:
        fh.write(b'{"event":"request","chai')  # a torn last write, no newline
    assert last_chain(path) == good
    with path.open("ab") as fh:
        fh.write(b'\n[1, 2]\n{"no_chain": 1}\n{"chain": 5}\nnot json\n\n')
    assert last_chain(path) == good
    again = AuditLog(JsonLinesSink(str(path)), "twilio")
    ctx = _ctx("req-2")
    again.decision(ctx, "allow")
    again.close()
    last = json.loads(path.read_bytes().splitlines()[-1])
    assert last["chain"] == chain_value(good, last, None)


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"\n\n", b'{"a": 1}\n'])
def test_last_chain_without_any_record_is_genesis(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(content)
    assert last_chain(path) == GENESIS
