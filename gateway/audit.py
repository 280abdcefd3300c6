"""The audit log: one record when the gateway decides, one when the vendor has answered.

Records are chained: ``chain`` is the SHA-256 (or HMAC-SHA256 with ``logging.chain_key``) of the
previous record's chain and this record's canonical JSON, so a removed or edited line shows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.context import RequestContext
from gateway.jsonlog import JsonLinesSink

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8, without ``chain``: what the chain hashes, and what is written."""
    body = {k: v for k, v in record.items() if k != "chain"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


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

    def _write(self, record: dict[str, Any]) -> None:
        # Encoded once: the line is the canonical form with the chain appended as the last key.
        body = canonical(record)
        self._chain = _chain_over(self._chain, body, self._key)
        self._sink.write_line(body[:-1] + b',"chain":"' + self._chain.encode("ascii") + b'"}\n')

    def _base(self, ctx: RequestContext, event: str) -> dict[str, Any]:
        return {
            "ts": utc_now(),
            "request_id": ctx.request_id,
            "event": event,
            "client": ctx.client,
            "route": ctx.route,
            "ip": ctx.ip,
            "method": ctx.method,
            "path": ctx.path,
            "provider": self._provider,
            "recipients": ctx.recipients,
            "recipient_count": ctx.recipient_count,
            "sender": ctx.sender,
            "body": ctx.body,
        }

    def decision(self, ctx: RequestContext, decision: str, status: int | None, reason: str | None) -> None:
        """Written before anything goes upstream: ``allow``, or ``deny`` with the reason code."""
        record = self._base(ctx, "request")
        record.update(decision=decision, status=status, reason=reason)
        ctx.audited = True
        self._write(record)

    def outcome(self, ctx: RequestContext, started: float) -> None:
        record = self._base(ctx, "outcome")
        record.update(
            decision="allow",
            status=ctx.status,
            reason=ctx.reason,
            upstream_ms=ctx.upstream_ms,
            vendor_message_id=ctx.vendor_message_id,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        self._write(record)

    def close(self) -> None:
        self._sink.close()
