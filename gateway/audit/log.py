"""The audit log: one record when the gateway decides, one when the vendor has answered, and
events about the gateway itself (config loads, rotations, purges, ...).

Records are chained: ``chain`` is the SHA-256 (or HMAC-SHA256 with ``logging.chain_key``) of the
previous record's chain and this record's canonical JSON, so a removed, edited, inserted or
reordered line shows. The chain only advances when a line was written, so the file and the chain
never disagree. A chain starts at ``GENESIS``; a verify of later files alone needs the gateway's
own ``audit_purged`` event (or a reviewer's anchor) to vouch for where they start.
Rotation keeps the chain: the first record of the new file is an ``audit_rotated`` event naming
the previous file and its last chain, and is chained from it. Each process writes its own file
(``worker_log_path``), so no two writers share a chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.errors import Reason, refuse
from gateway.core.events import AuditEvent
from gateway.core.exchange import Exchange, SyncStage
from gateway.core.jsonlog import JsonLinesSink, encode_canonical, worker_log_path
from gateway.core.redaction import key_id_for
from gateway.core.tasks import stop_task

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger("smsgw")

GENESIS = "0" * 64
DAY_S = 86400


#: ``audit.jsonl`` rotated at 2026-03-15 00:00:01.5 UTC is ``audit.20260315T000001.500000Z.jsonl``:
#: names sort by time, and the stamp says when the file was closed (retention counts from it).
_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_STAMP = r"\d{8}T\d{6}\.\d{6}Z"
_ROTATED_NAME = re.compile(rf"^(?P<stem>.+)\.(?P<stamp>{_STAMP})(?P<suffix>\.[^.]*)?$")


class AuditUnavailable(Exception):
    """A record that must exist before the request goes on could not be written."""


def canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8, without ``chain``: what the chain hashes, and what is written."""
    body = {k: v for k, v in record.items() if k != "chain"} if "chain" in record else record
    return encode_canonical(body)


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


_second: list[Any] = [-1, ""]  # the last whole second formatted, and its text


def utc_now() -> str:
    """ISO 8601 UTC to the millisecond (``2026-11-23T10:00:00.123Z``); the seconds part is
    formatted once per second, not per record."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


def rotated_path(path: Path, when: float) -> Path:
    stamp = datetime.fromtimestamp(when, UTC).strftime(_STAMP_FORMAT)
    return path.with_name(f"{path.stem}.{stamp}{path.suffix}")


def rotation_stamp(name: str) -> tuple[str, datetime] | None:
    """``(current file name, closing time)`` of a rotated file's name, else ``None``."""
    match = _ROTATED_NAME.match(name)
    if match is None:
        return None
    closed = datetime.strptime(match["stamp"], _STAMP_FORMAT).replace(tzinfo=UTC)
    return match["stem"] + (match["suffix"] or ""), closed


def rotated_files(path: Path) -> list[tuple[datetime, Path]]:
    """The rotated files of the log at ``path`` (same folder, same name plus a stamp), oldest first."""
    found: list[tuple[datetime, Path]] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return found
    for entry in entries:
        stamp = rotation_stamp(entry.name)
        if stamp is not None and stamp[0] == path.name and entry.is_file():
            found.append((stamp[1], entry))
    return sorted(found)


class AuditLog:
    __slots__ = (
        "_chain",
        "_clock",
        "_day",
        "_key",
        "_path",
        "_provider",
        "_retry_at",
        "_rotate_bytes",
        "_rotate_daily",
        "_sink",
        "_size",
    )

    def __init__(
        self,
        sink: JsonLinesSink,
        provider: str,
        chain_key: bytes | None = None,
        *,
        rotate_bytes: int = 0,
        rotate_daily: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._provider = provider
        self._key = chain_key
        self._path = Path(sink.name) if sink.name != "-" else None
        self._chain = last_chain(self._path) if self._path is not None else GENESIS
        self._rotate_bytes = rotate_bytes if self._path is not None else 0
        self._rotate_daily = rotate_daily and self._path is not None
        self._clock = clock
        self._retry_at = 0.0
        self._size = 0
        self._day = int(clock() // DAY_S)
        if self._path is not None:
            with contextlib.suppress(OSError):
                st = self._path.stat()
                self._size = st.st_size
                if st.st_size:
                    self._day = int(st.st_mtime // DAY_S)  # a restart on a later day rotates

    @property
    def failures(self) -> int:
        return self._sink.failures

    def _write(self, record: dict[str, Any]) -> bool:
        if self._size and (self._rotate_bytes or self._rotate_daily):
            trigger = self._rotation_due()
            if trigger is not None:
                self._rotate(trigger)
        return self._append(record)

    def _append(self, record: dict[str, Any]) -> bool:
        # Encoded once: the line is the canonical form with the chain appended as the last key.
        body = canonical(record)
        chain = _chain_over(self._chain, body, self._key)
        line = body[:-1] + b',"chain":"' + chain.encode("ascii") + b'"}\n'
        if not self._sink.write_line(line):
            return False
        if not self._size:
            self._day = int(self._clock() // DAY_S)  # a file's day is the day of its first record
        self._chain = chain
        self._size += len(line)
        return True

    # -- rotation and retention ------------------------------------------------------------

    def _rotation_due(self) -> str | None:
        now = self._clock()
        if now < self._retry_at:
            return None
        if self._rotate_bytes and self._size >= self._rotate_bytes:
            return "size"
        if self._rotate_daily and int(now // DAY_S) != self._day:
            return "day"
        return None

    def _rotate(self, trigger: str) -> Path | None:
        """Close the current file under a stamped name and go on in a new one; the new file's
        first record (``audit_rotated``) names the old one and its last chain."""
        path = self._path
        assert path is not None
        now = self._clock()
        target = rotated_path(path, now)
        while target.exists():  # two rotations within a microsecond: never overwrite one
            now += 1e-6
            target = rotated_path(path, now)
        try:
            os.rename(path, target)
        except OSError as exc:
            self._rotation_failed(exc, now)
            return None
        try:
            self._sink.reopen()
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.rename(target, path)  # go on writing where the descriptor still points
            self._rotation_failed(exc, now)
            return None
        self._size = 0
        self._day = int(now // DAY_S)
        self._append(
            {
                "ts": utc_now(),
                "event": AuditEvent.AUDIT_ROTATED,
                "provider": self._provider,
                "trigger": trigger,
                "previous_file": target.name,
                "previous_chain": self._chain,
            }
        )
        return target

    def _rotation_failed(self, exc: OSError, now: float) -> None:
        self._retry_at = now + 60
        log.error("cannot rotate the audit log (%s); writing on, retrying in 60 s", type(exc).__name__)

    def purge(self, retention_days: int, now: float | None = None) -> list[dict[str, Any]]:
        """Delete rotated files closed more than ``retention_days`` ago; one ``audit_purged`` event
        lists each (name, closing time, size and last chain, where a later verify starts)."""
        if self._path is None:
            return []
        now = self._clock() if now is None else now
        cutoff = now - retention_days * DAY_S
        purged: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for closed, file in rotated_files(self._path):
            if closed.timestamp() >= cutoff:
                continue
            try:
                size = file.stat().st_size
                chain = last_chain(file)
                file.unlink()
            except OSError as exc:
                failed.append({"file": file.name, "error": type(exc).__name__})
                continue
            purged.append(
                {
                    "file": file.name,
                    "closed": closed.isoformat(timespec="seconds").replace("+00:00", "Z"),
                    "bytes": size,
                    "last_chain": chain,
                }
            )
        if purged or failed:
            self.event(AuditEvent.AUDIT_PURGED, retention_days=retention_days, files=purged, failed=failed)
        return purged

    # -- records ---------------------------------------------------------------------------

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
        record = self._record(ex, AuditEvent.REQUEST)
        record.update(decision=decision, status=ex.status, reason=ex.reason, detail=ex.detail)
        ex.audited = True
        ex.decision = decision
        if not self._write(record):
            raise AuditUnavailable

    def outcome(self, ex: Exchange, duration_ms: float) -> None:
        """After the vendor answered (or failed); a failed write never changes the answer."""
        record = self._record(ex, AuditEvent.OUTCOME)
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
        if "chain" in fields:
            raise ValueError("'chain' is the audit chain's own field")
        record: dict[str, Any] = {"ts": utc_now(), "event": event, "provider": self._provider}
        record.update(fields)
        return self._write(record)

    def close(self) -> None:
        self._sink.close()


class AuditDecision(SyncStage):
    """Step 10: the allow record is written before anything goes upstream; if it cannot be, the
    request is refused (503 ``audit_unavailable``) rather than sent unaudited."""

    name = "audit"
    __slots__ = ("_audit",)

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def run_sync(self, ex: Exchange) -> None:
        try:
            self._audit.decision(ex, "allow")
        except AuditUnavailable:
            raise refuse(Reason.AUDIT_UNAVAILABLE, "the audit log cannot be written") from None


# --------------------------------------------------------------------------- the gateway's own events


def open_audit_log(config: Config, worker: int | None = None) -> AuditLog:
    """The audit log as ``[logging]`` configures it; each worker process gets its own file."""
    s = config.settings
    key = s.logging.chain_key.get_secret_value().encode("utf-8") if s.logging.chain_key else None
    return AuditLog(
        JsonLinesSink(worker_log_path(s.logging.audit_log, worker), config.base_dir),
        s.upstream.provider,
        key,
        rotate_bytes=s.logging.rotate_bytes,
        rotate_daily=s.logging.rotate_daily,
    )


#: Values of these keys are left out of the config hash (secrets are ``SecretStr`` and dump as
#: stars already; a password's SHA-256 would let a guess be confirmed against the hash).
_HIDDEN_KEYS = frozenset({"password_sha256"})


def _hide(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("*" if k in _HIDDEN_KEYS else _hide(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return value


def config_sha256(config: Config) -> str:
    """SHA-256 of the loaded config (settings, clients, routes, provider options) with every
    secret replaced by stars: it changes when the policy changes, and reveals no secret."""
    doc = {
        "settings": config.settings.model_dump(mode="json"),
        "clients": [c.model_dump(mode="json") for c in config.clients],
        "routes": [r.model_dump(mode="json") for r in config.routes],
        "provider_options": (
            config.provider_options.model_dump(mode="json") if config.provider_options is not None else None
        ),
    }
    text = json.dumps(_hide(doc), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _version() -> str:
    try:
        return metadata.version("smsgw")
    except metadata.PackageNotFoundError:
        return "unknown"


def record_start(
    audit: AuditLog,
    config: Config,
    worker: int | None = None,
    *,
    trigger: str = "start",
    generation: int = 1,
    sha256: str | None = None,
) -> None:
    """``config_loaded`` (what runs, by hash) and one ``config_warning`` per warning, so a reviewer
    sees from the log alone which policy was in force and what the operator was told to fix.
    ``trigger``: ``start``, or ``reload`` with the new ``generation``."""
    s = config.settings.logging
    hash_key_id = s.hash_key_id or (key_id_for(s.hash_key_bytes) if s.hash_key_bytes else None)
    audit.event(
        AuditEvent.CONFIG_LOADED,
        trigger=trigger,
        generation=generation,
        config_file=str(config.path),
        config_sha256=sha256 or config_sha256(config),
        version=_version(),
        worker=worker,
        clients=len(config.clients),
        routes=len(config.routes),
        body_mode=s.body,
        recipient_mode=s.recipient,
        hash_key_id=hash_key_id,
        seal_key_id=_seal_key_id(config),
        chain_mode="hmac-sha256" if s.chain_key else "sha256",
        retention_days=s.retention_days,
    )
    for warning in config.warnings:
        audit.event(AuditEvent.CONFIG_WARNING, file=warning.file, key=warning.key, message=warning.message)


def _seal_key_id(config: Config) -> str | None:
    s = config.settings.logging
    if s.body != "seal":
        return None
    from gateway.core.seal import SealError, load_seal_key

    try:
        return load_seal_key(config.resolve_path(s.seal_public_key_file)).key_id
    except SealError:
        return None


class Retention:
    """Purges rotated audit files older than ``logging.retention_days``: once at start, then
    every ``interval_s``, in the gateway itself (no cron job to forget)."""

    def __init__(self, audit: AuditLog, days: int, interval_s: float = 3600) -> None:
        self._audit = audit
        self._days = days
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.purge()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="smsgw-retention")

    def purge(self) -> list[dict[str, Any]]:
        try:
            return self._audit.purge(self._days)
        except Exception as exc:  # a purge must never stop the gateway
            log.error("audit retention purge failed (%s)", type(exc).__name__)
            return []

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.purge()

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
