"""The audit log: one record when the gateway decides, one when the vendor has answered.

Records are chained: ``chain`` is the SHA-256 (or HMAC-SHA256 with ``logging.chain_key``) of the
previous record's chain and this record's canonical JSON, so a removed or edited line shows.
The chain only advances when a line was written, so the file and the chain never disagree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.errors import refuse
from gateway.exchange import Exchange
from gateway.jsonlog import JsonLinesSink

GENESIS = "0" * 64


class AuditUnavailable(Exception):
    """A record that must exist before the request goes on could not be written."""


def canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8, without ``chain``: what the chain hashes, and what is written."""
    body = {k: v for k, v in record.items() if k != "chain"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8", "backslashreplace")


def chain_value(previous: str, record: dict[str, Any], key: bytes | None) -> str:
    return _chain_over(previous, canonical(record), key)


def _chain_over(previous: str, canonical_json: bytes, key: bytes | None) -> str:
    message = previous.encode("ascii") + b"\n" + canonical_json
    if key:
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


def last_chain(path: Path) -> str:
    """The chain value of the last record in an existing log, so a restart continues the chain."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return GENESIS
    for line in reversed(lines):
        try:
            value = json.loads(line).get("chain")
        except (ValueError, AttributeError):
            continue
        if isinstance(value, str):
            return value
    return GENESIS


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    __slots__ = ("_chain", "_key", "_provider", "_sink")

    def __init__(self, sink: JsonLinesSink, provider: str, chain_key: bytes | None = None) -> None:
        self._sink = sink
        self._provider = provider
        self._key = chain_key
        self._chain = last_chain(Path(sink.name)) if sink.name != "-" else GENESIS

    @property
    def failures(self) -> int:
        return self._sink.failures

    def _write(self, record: dict[str, Any]) -> bool:
        # Encoded once: the line is the canonical form with the chain appended as the last key.
        body = canonical(record)
        chain = _chain_over(self._chain, body, self._key)
        if not self._sink.write_line(body[:-1] + b',"chain":"' + chain.encode("ascii") + b'"}\n'):
            return False
        self._chain = chain
        return True

    def _record(self, ex: Exchange, event: str) -> dict[str, Any]:
        record = ex.audit_fields()
        record["ts"] = utc_now()
        record["event"] = event
        record["provider"] = self._provider
        return record

    def decision(self, ex: Exchange, decision: str) -> None:
        """Written before anything goes upstream: ``allow``, or ``deny`` with the reason code.

        Raises :class:`AuditUnavailable` when the record could not be written.
        """
        record = self._record(ex, "request")
        record.update(decision=decision, status=ex.status, reason=ex.reason, detail=ex.detail)
        ex.audited = True
        if not self._write(record):
            raise AuditUnavailable

    def outcome(self, ex: Exchange, duration_ms: float) -> None:
        """After the vendor answered (or failed); a failed write never changes the answer."""
        record = self._record(ex, "outcome")
        record.update(
            decision="allow",
            status=ex.status,
            reason=ex.reason,
            detail=ex.detail,
            upstream_ms=ex.upstream_ms,
            vendor_message_id=ex.vendor_message_id,
            duration_ms=duration_ms,
        )
        self._write(record)

    def event(self, event: str, **fields: Any) -> bool:
        """A record that is not about one request (config loads, storage outages, ...)."""
        record: dict[str, Any] = {"ts": utc_now(), "event": event, "provider": self._provider}
        record.update(fields)
        return self._write(record)

    def close(self) -> None:
        self._sink.close()


class AuditDecision:
    """Step 10: the allow record is written before anything goes upstream; if it cannot be, the
    request is refused (503 ``audit_unavailable``) rather than sent unaudited."""

    name = "audit"
    __slots__ = ("_audit",)

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def run(self, ex: Exchange) -> None:
        try:
            self._audit.decision(ex, "allow")
        except AuditUnavailable:
            raise refuse("audit_unavailable", "the audit log cannot be written") from None
