"""The reviewers' commands: ``smsgw audit verify | head | find | unseal | report``.

They read audit files only, never the gateway's state, so a reviewer can run them on a copy of
the logs on another machine. Keys come from the gateway's config (``-c``: only its ``[logging]``
table and ``server.workers`` are read, so the vendor secrets are not needed) or from a file or
environment variable; with ``-c``, verify also knows which chains (one per worker) to expect.
Nothing printed here repeats clear text found in a log: a finding names the file, line and field
and shows a number masked, so a summary can be pasted into a report as it is.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.audit.log import GENESIS, chain_value, rotation_stamp
from gateway.commands.conversion_review import ConversionTally
from gateway.commands.report_tables import ReportTables, html_sections
from gateway.config.refs import RefError, is_reference, resolve_reference
from gateway.core.events import AuditEvent
from gateway.core.jsonlog import worker_log_path
from gateway.core.redaction import REDACTED, hmac_hex, key_id_for, mask_number
from gateway.core.seal import SealError, is_sealed_shape, load_unseal_key

__all__ = ["Expected", "Head", "Keys", "Scan", "add_audit_parser", "find", "scan", "unseal"]

MARKER_EVENT = AuditEvent.AUDIT_ROTATED
AUDIT_LOG_DEFAULT = "logs/audit.jsonl"  # logging.audit_log when the config leaves it out
_HEX64 = re.compile(r"[0-9a-f]{64}")


class UsageError(Exception):
    """A command that cannot run as given (exit 2): a missing key, an unreadable file."""


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class Keys:
    hash_key: bytes | None = None
    hash_key_id: str | None = None
    chain_key: bytes | None = None


def _read_secret_file(path: str, what: str) -> bytes:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{what}: {path} cannot be read ({exc.strerror})") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise UsageError(f"{what}: {path} is empty")
    return text.encode("utf-8")


def _read_env(name: str, what: str) -> bytes:
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"{what}: environment variable {name} is not set")
    return value.encode("utf-8")


def _config_table(path: str, name: str) -> tuple[dict[str, Any], Path]:
    config = Path(path).absolute()
    try:
        with config.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    table = data.get(name, {})
    return (table if isinstance(table, dict) else {}), config.parent


def _config_logging(path: str) -> tuple[dict[str, Any], Path]:
    return _config_table(path, "logging")


def expected_files(args: argparse.Namespace) -> Expected | None:
    """With ``-c CONFIG``: the audit file of each worker (``server.workers``, ``logging.audit_log``),
    compared by name so a copy of the logs in another folder checks the same."""
    if not getattr(args, "config", None):
        return None
    logging_table, _ = _config_logging(args.config)
    server, _ = _config_table(args.config, "server")
    target = logging_table.get("audit_log", AUDIT_LOG_DEFAULT)
    if not isinstance(target, str) or target == "-":
        return None
    workers = server.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise UsageError(f"{args.config}: server.workers must be a whole number of at least 1")
    if workers == 1:
        return Expected((Path(target).name,), f"{args.config} writes the audit log there")
    names = tuple(Path(worker_log_path(target, w)).name for w in range(1, workers + 1))
    return Expected(names, f"{args.config} has server.workers = {workers}, each writing its own chain")


def _config_secret(table: dict[str, Any], name: str, base: Path) -> bytes | None:
    value = table.get(name)
    if not isinstance(value, str) or not value:
        return None
    if is_reference(value):
        try:
            value = resolve_reference(value, base, f"logging.{name}")
        except RefError as exc:
            raise UsageError(f"logging.{name}: {exc.message}") from None
    return value.encode("utf-8")


def load_keys(args: argparse.Namespace) -> Keys:
    """Keys from ``-c CONFIG`` (its ``[logging]`` table only), overridden by the explicit options."""
    hash_key = chain_key = None
    hash_key_id: str | None = None
    if getattr(args, "config", None):
        table, base = _config_logging(args.config)
        hash_key = _config_secret(table, "hash_key", base)
        chain_key = _config_secret(table, "chain_key", base)
        configured_id = table.get("hash_key_id")
        hash_key_id = configured_id if isinstance(configured_id, str) and configured_id else None
    if getattr(args, "hash_key_file", None):
        hash_key, hash_key_id = _read_secret_file(args.hash_key_file, "--hash-key-file"), None
    if getattr(args, "hash_key_env", None):
        hash_key, hash_key_id = _read_env(args.hash_key_env, "--hash-key-env"), None
    if getattr(args, "chain_key_file", None):
        chain_key = _read_secret_file(args.chain_key_file, "--chain-key-file")
    if getattr(args, "chain_key_env", None):
        chain_key = _read_env(args.chain_key_env, "--chain-key-env")
    if hash_key is not None and hash_key_id is None:
        hash_key_id = key_id_for(hash_key)
    return Keys(hash_key, hash_key_id, chain_key)


# --------------------------------------------------------------------------- reading


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(line number, record, problem)`` for every line; a line that is not a JSON object has a
    problem and no record."""
    for number, _, record, problem in _json_lines(path):
        yield number, record, problem


def _json_lines(path: Path) -> Iterator[tuple[int, bytes, dict[str, Any] | None, str | None]]:
    """``(line number, raw line, record, problem)`` for every line of a JSON-lines file."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror})") from None
    with fh:
        for number, raw in enumerate(fh, 1):
            try:
                record = json.loads(raw)
            except ValueError:
                yield number, raw, None, "not JSON (a torn or edited line)"
                continue
            if not isinstance(record, dict):
                yield number, raw, None, "not a JSON object"
                continue
            yield number, raw, record, None


# --------------------------------------------------------------------------- clear-text findings

#: A phone number as it would leak: 7+ digits after ``+`` (or ``%2B``), 8+ without, neighbours
#: separated by at most one space, dash, dot or parenthesis; not part of a longer token.
_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:\+|%2[bB])?\d(?:(?:[ \-.()]|%2[0dD])?\d){6,14}(?![0-9A-Za-z])")
_NOT_A_NUMBER = (
    re.compile(r"(?:19|20)\d\d-[01]\d-[0-3]\d"),  # ISO date
    re.compile(r"(?:19|20)\d\d[01]\d[0-3]\d"),  # basic ISO date
    re.compile(r"\d{1,3}(?:\.\d{1,3}){3}"),  # IPv4 address
)
_CREDENTIALS = (
    (
        "an Authorization value",
        re.compile(r"(?i)\b(?:basic|bearer|digest)\s+(?!REDACTED\b)[A-Za-z0-9+/=._~-]{8,}"),
    ),
    ("a JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "an API token",
        re.compile(
            r"\b(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}|xox[abprs]-[0-9A-Za-z-]{10,}|gh[pousr]_[0-9A-Za-z]{20,})"
        ),
    ),
    (
        "a credential parameter",
        re.compile(
            r"(?i)(?:^|[?&;\s])(?:password|passwd|pwd|pass|secret|client_secret|api_secret|apisecret|api_key|"
            r"apikey|key|token|access_token|auth_token|auth|sig|signature)=(?!REDACTED(?:[&;\s#]|$))[^&;\s#]+"
        ),
    ),
)
#: Fields that name a credential: any value but ``REDACTED`` (or empty) is a finding.
_CREDENTIAL_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "api_secret",
        "token",
        "access_token",
        "auth_token",
        "refresh_token",
        "api_key",
        "apikey",
        "x_api_key",
        "private_key",
    }
)
#: Fields that hold digests, ids and file names by design: not scanned for numbers or tokens.
_OPAQUE_KEYS = frozenset(
    {
        "chain",
        "previous_chain",
        "last_chain",
        "request_id",
        "vendor_message_id",
        "config_sha256",
        "hash_key_id",
        "seal_key_id",
        "key_id",
        "ts",
        "closed",
        "file",
        "previous_file",
        "config_file",
    }
)
_MASKED = re.compile(r".{0,5}\*{4}.{0,2}", re.DOTALL)  # mask_number: first 5, four stars, last 2
_ENCODED = re.compile(r"%2[0-9A-Fa-f]")


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    line: int
    where: str  # dotted field
    what: str  # never the clear text itself

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.where}: {self.what}"


def _numbers(text: str) -> Iterator[str]:
    for match in _NUMBER.finditer(text):
        found = match[0]
        digits = sum(c.isdigit() for c in _ENCODED.sub("", found))
        if digits < (7 if found.startswith(("+", "%2")) else 8):
            continue
        if any(p.fullmatch(found) for p in _NOT_A_NUMBER):
            continue
        yield found


def _masked_hint(number: str) -> str:
    digits = "".join(c for c in _ENCODED.sub("", number) if c.isdigit())
    return mask_number(("+" if number.startswith(("+", "%2")) else "") + digits)


def body_problem(value: Any) -> str | None:
    """Why a ``body`` value is not one of the redacted shapes (docs/logs.md); ``None`` when it is."""
    if value is None:
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = body_problem(item)
            if problem:
                return f"[{i}] {problem}"
        return None
    if not isinstance(value, dict):
        return "is not a redacted shape (clear text?)"
    keys = set(value)
    length_ok = isinstance(value.get("length"), int) and not isinstance(value.get("length"), bool)
    if keys == {"hmac_sha256", "key_id", "length"}:
        if isinstance(value["hmac_sha256"], str) and _HEX64.fullmatch(value["hmac_sha256"]) and length_ok:
            return None
        return "hash shape with a value that is not a digest"
    if keys == {"redacted", "length"}:
        return None if value["redacted"] is True and length_ok else "redacted shape with other values"
    if keys == {"masked"}:
        text = value["masked"]
        if not isinstance(text, str):
            return "masked shape with a value that is not text"
        return "masked text holds digits" if any(c.isdigit() for c in text) else None
    if keys == {"sealed"}:
        return None if is_sealed_shape(value["sealed"]) else "sealed shape that is not a sealed value"
    return "is not a redacted shape (keys: " + ", ".join(sorted(map(str, keys))[:6]) + ")"


def _recipient_problem(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return "is not a masked or hashed number"
    if _HEX64.fullmatch(value) or (_MASKED.fullmatch(value) and sum(c.isdigit() for c in value) <= 7):
        return None
    return "is not a masked or hashed number"


def scan_record(record: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, what)`` for each clear-text number, unredacted body or credential in a record."""
    found: list[tuple[str, str]] = []

    def walk(value: Any, where: str, key: str) -> None:
        if key in _OPAQUE_KEYS:
            return
        if key == "body":
            problem = body_problem(value)
            if problem:
                found.append((where, f"body {problem}"))
            return
        if key in ("recipients", "recipient", "to"):
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                problem = _recipient_problem(item)
                if problem:
                    at = f"{where}[{i}]" if isinstance(value, list) else where
                    hint = f" ({_masked_hint(item)})" if isinstance(item, str) and any(_numbers(item)) else ""
                    found.append((at, f"recipient {problem}{hint}"))
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else str(k), str(k).lower().replace("-", "_"))
            return
        if isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]", key)
            return
        if not isinstance(value, str) or not value:
            return
        if key in _CREDENTIAL_KEYS and value != REDACTED:
            found.append((where, "a credential field that is not REDACTED"))
            return
        for number in _numbers(value):
            found.append((where, f"clear-text phone number ({_masked_hint(number)})"))
        for what, pattern in _CREDENTIALS:
            if pattern.search(value):
                found.append((where, f"looks like {what}"))

    walk(record, "", "")
    return found


# --------------------------------------------------------------------------- the scan


@dataclass
class FileChain:
    """One file of a chain, as verified."""

    name: str
    records: int = 0
    start: str = GENESIS  # the chain value the file links to
    end: str = GENESIS  # its last record's chain
    previous_file: str | None = None  # named by its first record (rotation)
    continued: bool = False  # the first record links to the previous file without a marker
    last_line: int = 0  # line of its last record that verified
    last_ts: str | None = None


@dataclass(frozen=True, slots=True)
class Head:
    """The newest record of one chain: note its ``chain`` and check later that the log still
    reaches it (``verify --anchor``)."""

    file: str
    line: int
    chain: str
    ts: str | None
    records: int

    def __str__(self) -> str:
        return f"{self.chain}  {self.file}:{self.line}  {self.ts or '-'}  {self.records} record(s)"


@dataclass(frozen=True, slots=True)
class Expected:
    """The chains a config says exist (``-c CONFIG``): one current audit file per worker."""

    names: tuple[str, ...]
    why: str


@dataclass
class Break:
    file: str
    line: int
    message: str
    context: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" + (f" [{self.context}]" if self.context else "")


@dataclass
class Scan:
    """Everything ``verify`` and ``report`` say about a set of files, built in one pass."""

    files: list[FileChain] = field(default_factory=list)
    groups: list[list[FileChain]] = field(default_factory=list)
    records: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    keyed: bool = False
    breaks: list[Break] = field(default_factory=list)
    #: What the set lacks though every link holds: the chain's beginning, the records up to an
    #: anchor, a worker's file. Each fails verify like a break.
    gaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    anchors: dict[str, str] = field(default_factory=dict)  # anchor -> where it was found
    findings: list[Finding] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    by_client: dict[str, Counter[str]] = field(default_factory=dict)
    by_route: dict[str, Counter[str]] = field(default_factory=dict)
    refusals_by_minute: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    conversion: ConversionTally = field(default_factory=ConversionTally)
    tables: ReportTables = field(default_factory=ReportTables)

    @property
    def ok(self) -> bool:
        return not self.breaks and not self.gaps and not self.findings

    @property
    def heads(self) -> list[Head]:
        """The last verified record of each chain (``[]`` for a chain without records)."""
        heads = []
        for group in self.groups:
            last = next((f for f in reversed(group) if f.last_line), None)
            if last is not None:
                heads.append(
                    Head(last.name, last.last_line, last.end, last.last_ts, sum(f.records for f in group))
                )
        return heads

    def count(self, record: dict[str, Any]) -> None:
        self.records += 1
        ts = record.get("ts")
        if isinstance(ts, str):
            self.first_ts = ts if self.first_ts is None or ts < self.first_ts else self.first_ts
            self.last_ts = ts if self.last_ts is None or ts > self.last_ts else self.last_ts
        event = str(record.get("event"))
        self.events[event] += 1
        self.conversion.count(record)
        self.tables.count(record)
        if event == AuditEvent.OUTCOME:
            status = record.get("status")
            self.outcomes[f"{status // 100}xx" if isinstance(status, int) else "none"] += 1
        if event != AuditEvent.REQUEST:
            return
        decision = str(record.get("decision"))
        self.decisions[decision] += 1
        client = _label(record.get("client"))
        route = _label(record.get("route"))
        self.by_client.setdefault(client, Counter())[decision] += 1
        self.by_route.setdefault(route, Counter())[decision] += 1
        if decision == "deny":
            reason = _label(record.get("reason"))
            self.reasons[reason] += 1
            if isinstance(ts, str) and len(ts) >= 16:
                self.refusals_by_minute[(ts[:16], reason)] += 1


def _label(value: Any) -> str:
    return str(value) if value is not None else "(none)"


def _group_name(path: Path) -> tuple[Path, str]:
    """Files of one chain: the same folder and the same current name (a rotated file's name
    without its stamp); each worker's ``audit.wN.jsonl`` is a chain of its own."""
    stamp = rotation_stamp(path.name)
    return path.absolute().parent, stamp[0] if stamp else path.name


def _short(chain: str) -> str:
    return chain[:16] + "…" if len(chain) > 16 else chain


def scan(
    paths: Iterable[Path],
    chain_key: bytes | None = None,
    *,
    anchors: Iterable[str] = (),
    expected: Expected | None = None,
) -> Scan:
    """Check every file's chain (and the links between files of one chain, in the order given),
    that each chain starts at its first record, after a retention purge or at an anchor, that
    every anchor is in the set and every expected file was given; scan every record for clear
    text, and count what a report shows."""
    result = Scan(keyed=chain_key is not None)
    wanted = set(anchors)
    groups: dict[tuple[Path, str], list[FileChain]] = {}
    purged_chains: dict[str, str] = {}  # last chain of a purged file -> its name
    for path in paths:
        chain = FileChain(path.name)
        group = groups.setdefault(_group_name(path), [])
        previous = group[-1] if group else None
        group.append(chain)
        result.files.append(chain)
        # "start": the first record decides where the file links to; "on": following; "off": broken
        state = "off" if any(b.file in {f.name for f in group} for b in result.breaks) else "start"
        current = GENESIS
        torn: list[tuple[int, str]] = []  # lines that are not records, since the last record
        for number, record, problem in read_records(path):
            if record is None:
                if state != "off":
                    torn.append((number, problem or "not a record"))
                continue
            chain.records += 1
            result.count(record)
            for where, what in scan_record(record):
                result.findings.append(Finding(path.name, number, where, what))
            if record.get("event") == AuditEvent.AUDIT_PURGED:
                for item in record.get("files") or []:
                    if isinstance(item, dict) and isinstance(item.get("last_chain"), str):
                        purged_chains[item["last_chain"]] = str(item.get("file"))
            if state == "start":
                start = _start_of(chain, record, previous, chain_key, result)
                if start is None:
                    state = "off"
                    continue
                current, state = start, "on"
            if state == "off":
                continue
            value = record.get("chain")
            if not isinstance(value, str) or value != chain_value(current, record, chain_key):
                if torn:
                    result.breaks.append(Break(path.name, torn[0][0], f"chain broken: {torn[0][1]}"))
                else:
                    message = _break_message(number, chain_key, record, current)
                    result.breaks.append(Break(path.name, number, message, _context(record)))
                state = "off"
                continue
            for line, _ in torn:  # the record goes on from the one before them: failed writes
                result.notes.append(
                    f"{path.name}:{line}: a torn line (a write that failed); the chain goes on from "
                    + (f"line {chain.last_line}" if chain.last_line else "where the file starts")
                )
            torn.clear()
            current = chain.end = value
            chain.last_line, chain.last_ts = number, _text(record.get("ts"))
            if value in wanted:
                result.anchors.setdefault(value, f"{path.name}:{number}")
        if torn and state == "on":  # a write that failed at the end, nothing written after it
            for line, _ in torn:
                result.notes.append(
                    f"{path.name}:{line}: a torn last line (a write that failed); "
                    f"the chain ends at line {chain.last_line}"
                )
        if chain.records == 0:
            chain.end = previous.end if previous is not None else GENESIS
    result.groups = list(groups.values())
    _check_starts(result, purged_chains, wanted)
    for anchor in sorted(wanted - set(result.anchors)):
        result.gaps.append(
            f"anchor {_short(anchor)} is not in the chain: records up to it were removed "
            "(the end cut off), or these are not the files it was noted from"
        )
    if expected is not None:
        given = {name for _, name in groups}
        for name in expected.names:
            if name not in given:
                result.gaps.append(f"{name} is missing: {expected.why}, and no file of its chain was given")
    return result


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _check_starts(result: Scan, purged_chains: dict[str, str], anchors: set[str]) -> None:
    """Each chain starts at its first record (genesis), right after a file deleted by retention
    (named by an ``audit_purged`` event in the set), at an anchor, or after another file given;
    else its beginning was removed."""
    ends = {f.end: f.name for f in result.files if f.records}
    for group in result.groups:
        first = group[0]
        if first.start == GENESIS:
            continue
        if first.start in anchors:
            result.anchors.setdefault(first.start, f"the link into {first.name}")
            result.notes.append(f"{first.name} starts right after anchor {_short(first.start)}")
        elif first.start in ends and ends[first.start] != first.name:
            result.notes.append(f"{first.name} continues {ends[first.start]} (renamed?)")
        elif first.start in purged_chains:
            result.notes.append(
                f"{first.name} starts after {purged_chains[first.start]}, deleted by retention (audit_purged)"
            )
        else:
            result.gaps.append(
                f"{first.name}:1: the beginning of the chain is missing (its first record links to "
                f"chain {_short(first.start)} of {first.previous_file or 'an earlier file'}, an unknown "
                "predecessor: not given, not deleted by retention, not an --anchor)"
            )


def _start_of(
    chain: FileChain,
    record: dict[str, Any],
    previous: FileChain | None,
    key: bytes | None,
    result: Scan,
) -> str | None:
    """The chain value this file's first record links to; a wrong link is a break."""
    marker = record.get("event") == MARKER_EVENT and isinstance(record.get("previous_chain"), str)
    start = record["previous_chain"] if marker else GENESIS
    chain.previous_file = str(record.get("previous_file")) if marker else None
    if previous is None:
        chain.start = start
        return start
    if previous.records and not marker and record.get("chain") == chain_value(previous.end, record, key):
        chain.start, chain.continued = previous.end, True  # its rotation record could not be written
        return previous.end
    chain.start = start
    if start != previous.end:
        if marker:
            what = (
                f"chain broken between files: this file continues {chain.previous_file} "
                f"(chain {_short(start)}), but the file given before it, {previous.name}, "
                f"ends at {_short(previous.end)} (a file missing, or the files out of order)"
            )
        else:
            what = (
                f"chain broken between files: this file starts a new chain, not linked to "
                f"{previous.name} (ends at {_short(previous.end)})"
            )
        result.breaks.append(Break(chain.name, 1, what))
        return None
    return start


def _context(record: dict[str, Any]) -> str:
    parts = [f"{k}={record[k]}" for k in ("ts", "event", "request_id") if isinstance(record.get(k), str)]
    return " ".join(parts)


def _break_message(number: int, key: bytes | None, record: dict[str, Any], previous: str) -> str:
    if "chain" not in record:
        return "chain broken: the record has no chain"
    message = (
        "chain broken: the record does not follow from the one before "
        "(a line edited, removed, inserted or moved at or before this one)"
    )
    if number == 1 and key is None and previous == GENESIS:
        message += "; if logging.chain_key was set, give it (-c CONFIG, --chain-key-file or --chain-key-env)"
    elif number == 1 and key is not None and record.get("chain") == chain_value(previous, record, None):
        message = "the chain is plain SHA-256 here: this log was written without logging.chain_key"
    return message


# --------------------------------------------------------------------------- verify


def verify_text(result: Scan) -> str:
    """The summary a reviewer pastes into a report."""
    lines = ["smsgw audit verify"]
    files = ", ".join(f"{f.name} ({f.records})" for f in result.files)
    lines.append(f"files:      {len(result.files)}: {files}")
    lines.append(f"records:    {result.records}")
    span = f"{result.first_ts} .. {result.last_ts}" if result.first_ts else "-"
    lines.append(f"time span:  {span}")
    kind = "HMAC-SHA256 (chain key given)" if result.keyed else "SHA-256 (no chain key given)"
    if result.breaks:
        lines.append(f"chain:      BROKEN, {kind}: first at {result.breaks[0]}")
    else:
        chains = "; ".join(
            f"{_file_run(group)}: "
            f"{'from the first record' if group[0].start == GENESIS else 'after ' + _short(group[0].start)}"
            f" to {_short(group[-1].end)}"
            for group in result.groups
        )
        state = "INCOMPLETE" if result.gaps else "intact"
        lines.append(f"chain:      {state}, {kind}; {chains}")
    for gap in result.gaps:
        lines.append(f"            missing: {gap}")
    for note in result.notes:
        lines.append(f"            note: {note}")
    if not result.breaks:
        for head in result.heads:
            lines.append(f"head:       {head}")
    for anchor, where in result.anchors.items():
        lines.append(f"anchor:     {_short(anchor)} found at {where}")
    lines.append(f"clients:    {_counts(_totals(result.by_client))}")
    lines.append(f"events:     {_counts(result.events)}")
    lines.append(f"decisions:  {_counts(result.decisions)}")
    lines.append(f"refusals:   {_counts(result.reasons)}")
    if result.findings:
        kinds = Counter(f.what.split(" (")[0] for f in result.findings)
        lines.append(f"findings:   {len(result.findings)}: {_counts(kinds)}")
        shown = result.findings[:50]
        lines.extend(f"  {f}" for f in shown)
        if len(result.findings) > len(shown):
            lines.append(f"  … and {len(result.findings) - len(shown)} more")
    else:
        lines.append("findings:   none (no clear-text number, body or credential)")
    problems = []
    if result.breaks:
        problems.append("chain broken")
    if result.gaps:
        problems.append("chain incomplete")
    if result.findings:
        problems.append(f"{len(result.findings)} finding(s)")
    lines.append("result:     " + ("OK" if not problems else "FAILED (" + "; ".join(problems) + ")"))
    return "\n".join(lines) + "\n"


def _file_run(group: list[FileChain]) -> str:
    if len(group) <= 3:
        return " -> ".join(f.name for f in group)
    return f"{group[0].name} -> … ({len(group) - 2} more) -> {group[-1].name}"


def _totals(table: dict[str, Counter[str]]) -> Counter[str]:
    return Counter({name: sum(c.values()) for name, c in table.items()})


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "-"


def _anchors(values: list[str] | None) -> list[str]:
    anchors = []
    for value in values or []:
        anchor = value.strip().lower()
        if not _HEX64.fullmatch(anchor) or anchor == GENESIS:
            raise UsageError(
                f"--anchor {value!r}: not a chain value (64 hex digits, as `smsgw audit head` prints)"
            )
        anchors.append(anchor)
    return anchors


def cmd_verify(args: argparse.Namespace) -> int:
    keys = load_keys(args)
    result = scan(
        [Path(p) for p in args.files],
        keys.chain_key,
        anchors=_anchors(args.anchor),
        expected=expected_files(args),
    )
    sys.stdout.write(verify_text(result))
    if result.breaks:
        print(f"smsgw audit verify: {result.breaks[0]}", file=sys.stderr)
    elif result.gaps:
        print(f"smsgw audit verify: {result.gaps[0]}", file=sys.stderr)
    return 0 if result.ok else 1


def cmd_head(args: argparse.Namespace) -> int:
    """The head of each chain, once its links are checked: a broken chain has no head to note."""
    keys = load_keys(args)
    result = scan([Path(p) for p in args.files], keys.chain_key)
    if result.breaks:
        print(f"smsgw audit head: {result.breaks[0]}", file=sys.stderr)
        return 1
    for head in result.heads:
        print(head)
    for gap in result.gaps:
        print(f"note: {gap}", file=sys.stderr)
    if not result.heads:
        print("smsgw audit head: no record in the files given", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- find


def _e164(number: str) -> str:
    import phonenumbers  # only find needs it, and it is slow to import

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise UsageError("--recipient: not an international number (write it as +CC…)") from None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _bodies(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


@dataclass
class FindResult:
    matches: list[tuple[str, int, str]] = field(default_factory=list)  # file, line, raw line
    searched: int = 0
    other_key_ids: Counter[str] = field(default_factory=Counter)
    by_mask: int = 0


def find(paths: Iterable[Path], keys: Keys, body: str | None, recipient: str | None) -> FindResult:
    """Records whose body HMAC is that of ``body`` and (or) whose recipients hold ``recipient``
    (its HMAC, or, in a masked log, its mask: then the match is not exact and is counted)."""
    if body is None and recipient is None:
        raise UsageError("give --body TEXT, --recipient NUMBER or both")
    if keys.hash_key is None and body is not None:
        raise UsageError(
            "--body needs the log hash key: -c CONFIG, --hash-key-file PATH or --hash-key-env NAME"
        )
    want_body = hmac_hex(keys.hash_key, body) if body is not None and keys.hash_key else None
    e164 = _e164(recipient) if recipient is not None else None
    want_hashed = hmac_hex(keys.hash_key, e164) if e164 and keys.hash_key else None
    want_masked = mask_number(e164) if e164 else None
    out = FindResult()
    for path in paths:
        for number, raw, record, _ in _json_lines(path):
            if record is None:
                continue
            out.searched += 1
            if want_body is not None:
                bodies = _bodies(record.get("body"))
                hashed = [b for b in bodies if "hmac_sha256" in b]
                for b in hashed:
                    if b.get("key_id") not in (None, keys.hash_key_id):
                        out.other_key_ids[str(b.get("key_id"))] += 1
                if not any(b.get("hmac_sha256") == want_body for b in hashed):
                    continue
            if e164 is not None:
                recipients = record.get("recipients")
                items = recipients if isinstance(recipients, list) else []
                if want_hashed is not None and want_hashed in items:
                    pass
                elif want_masked in items:
                    out.by_mask += 1
                else:
                    continue
            out.matches.append((path.name, number, raw.decode("utf-8", "replace").rstrip("\n")))
    return out


def cmd_find(args: argparse.Namespace) -> int:
    keys = load_keys(args)
    result = find([Path(p) for p in args.files], keys, args.body, args.recipient)
    for _, _, line in result.matches:
        print(line)
    print(f"{len(result.matches)} matching record(s) of {result.searched} searched", file=sys.stderr)
    if result.other_key_ids:
        ids = ", ".join(sorted(result.other_key_ids))
        print(
            f"note: {sum(result.other_key_ids.values())} bodies were hashed with other keys ({ids}); "
            "they cannot match this key",
            file=sys.stderr,
        )
    if result.by_mask:
        print(
            f"note: {result.by_mask} match(es) by the masked recipient only: other numbers share that mask",
            file=sys.stderr,
        )
    return 0 if result.matches else 1


# --------------------------------------------------------------------------- unseal


@dataclass
class UnsealResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    opened: int = 0
    failed: Counter[str] = field(default_factory=Counter)


def unseal(paths: Iterable[Path], key_file: Path, passphrase: bytes | None = None) -> UnsealResult:
    """Records that hold sealed bodies, each body replaced by ``{"unsealed": text, "key_id": ...}``
    or, when this key cannot open it, kept with an ``error``."""
    key = load_unseal_key(key_file, passphrase)
    out = UnsealResult()

    def open_one(body: dict[str, Any]) -> dict[str, Any]:
        sealed = body.get("sealed")
        try:
            text = key.open(sealed)
        except SealError as exc:
            out.failed[str(exc)] += 1
            return {**body, "error": str(exc)}
        out.opened += 1
        return {"unsealed": text, "key_id": sealed.get("key_id")}

    for path in paths:
        for _, record, _ in read_records(path):
            if record is None:
                continue
            body = record.get("body")
            if isinstance(body, dict) and "sealed" in body:
                record["body"] = open_one(body)
            elif isinstance(body, list) and any(isinstance(b, dict) and "sealed" in b for b in body):
                record["body"] = [open_one(b) if isinstance(b, dict) and "sealed" in b else b for b in body]
            else:
                continue
            out.records.append(record)
    return out


def cmd_unseal(args: argparse.Namespace) -> int:
    passphrase = _read_env(args.passphrase_env, "--passphrase-env") if args.passphrase_env else None
    try:
        result = unseal([Path(p) for p in args.files], Path(args.key), passphrase)
    except SealError as exc:
        raise UsageError(str(exc)) from None
    for record in result.records:
        print(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    print(
        "note: this output holds message bodies in clear text; keep it like the private key", file=sys.stderr
    )
    print(f"{result.opened} body(ies) opened", file=sys.stderr)
    for reason, n in result.failed.most_common():
        print(f"{n} body(ies) not opened: {reason}", file=sys.stderr)
    return 1 if result.failed else 0


# --------------------------------------------------------------------------- report

_BUCKETS_MIN = (1, 5, 15, 60, 360, 1440)
MAX_TIMELINE_ROWS = 48


def _minute(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def timeline(result: Scan) -> tuple[int, list[dict[str, Any]]]:
    """Refusals per time bucket, every bucket from the first refusal to the last (empty ones too),
    with the bucket size picked so the timeline fits one page."""
    per_minute: dict[datetime, Counter[str]] = {}
    for (minute, reason), n in result.refusals_by_minute.items():
        when = _minute(minute)
        if when is not None:
            per_minute.setdefault(when, Counter())[reason] += n
    if not per_minute:
        return 0, []
    first, last = min(per_minute), max(per_minute)
    span = (last - first).total_seconds() / 60 + 1
    size = next((b for b in _BUCKETS_MIN if span / b <= MAX_TIMELINE_ROWS), None)
    if size is None:
        size = int(-(-span // MAX_TIMELINE_ROWS))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start_min = int((first - epoch).total_seconds() // 60) // size * size
    buckets: dict[int, Counter[str]] = {}
    for when, reasons in per_minute.items():
        index = (int((when - epoch).total_seconds() // 60) - start_min) // size
        buckets.setdefault(index, Counter()).update(reasons)
    rows = []
    for index in range(max(buckets) + 1):
        reasons = buckets.get(index, Counter())
        start = epoch + timedelta(minutes=start_min + index * size)
        rows.append(
            {
                "start": start.strftime("%Y-%m-%dT%H:%MZ"),
                "refusals": sum(reasons.values()),
                "reasons": dict(reasons.most_common()),
            }
        )
    return size, rows


def report_data(result: Scan) -> dict[str, Any]:
    size, rows = timeline(result)

    def table(src: dict[str, Counter[str]]) -> list[dict[str, Any]]:
        return [
            {"name": name, "allow": c.get("allow", 0), "deny": c.get("deny", 0), "total": sum(c.values())}
            for name, c in sorted(src.items(), key=lambda item: (-sum(item[1].values()), item[0]))
        ]

    return {
        "files": [{"name": f.name, "records": f.records} for f in result.files],
        "records": result.records,
        "time_span": {"first": result.first_ts, "last": result.last_ts},
        "chain": {
            "intact": not result.breaks,
            "keyed": result.keyed,
            "first_break": str(result.breaks[0]) if result.breaks else None,
            "complete": not result.gaps,
            "missing": result.gaps,
            "notes": result.notes,
            "heads": [
                {"file": h.file, "line": h.line, "chain": h.chain, "ts": h.ts, "records": h.records}
                for h in (result.heads if not result.breaks else [])
            ],
        },
        "findings": [str(f) for f in result.findings],
        "decisions": dict(result.decisions.most_common()),
        "refusal_reasons": dict(result.reasons.most_common()),
        "clients": table(result.by_client),
        "routes": table(result.by_route),
        "events": dict(result.events.most_common()),
        "outcomes": dict(result.outcomes.most_common()),
        "timeline": {"bucket_minutes": size, "rows": rows},
        "conversion": result.conversion.rows(),
        "tables": result.tables.data(),
    }


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #eee}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#c0392b;height:.8em;display:inline-block}
.ok{color:#1e7e34;font-weight:bold}.bad{color:#c0392b;font-weight:bold}.warn{color:#b36b00;font-weight:bold}
code{font-size:.95em}footer{margin-top:2em;color:#666;font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rows(items: Iterable[tuple[Any, ...]], numeric_from: int = 1) -> str:
    out = []
    for item in items:
        cells = "".join(
            f'<td class="n">{_e(v)}</td>' if i >= numeric_from else f"<td>{_e(v)}</td>"
            for i, v in enumerate(item)
        )
        out.append(f"<tr>{cells}</tr>")
    return "".join(out) or '<tr><td colspan="4">none</td></tr>'


def _split(items: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    return ((c["name"], c["allow"], c["deny"], c["total"]) for c in items)


def _table(table_id: str, headers: tuple[str, ...], rows: str) -> str:
    head = "".join(
        f"<th>{_e(h)}</th>" if i == 0 else f'<th class="n">{_e(h)}</th>' for i, h in enumerate(headers)
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{rows}</table>'


_CONVERSION_HEADERS = ("country / prefix", "sends", "entered", "conversion", "refused")


def _conversion_rows(data: dict[str, Any]) -> str:
    rows = []
    for r in data.get("conversion", []):
        rate = f"{r['conversion']:.0%}" if r["conversion"] is not None else "-"
        refused = f"{r['refused']} (refused)" if r["refused"] else "0"
        rows.append((f"{r['kind']} {r['subject']}", r["sends"], r["converted"], rate, refused))
    return _rows(rows)


_ANCHOR_HINT = (
    "Note a head: <code>smsgw audit verify --anchor HASH</code> checks later that the log still reaches it."
)


def render_html(data: dict[str, Any], generated: str) -> str:
    """One self-contained page: no script, no external asset, every value escaped."""
    chain = data["chain"]
    if chain["intact"] and chain["keyed"]:
        chain_html = '<span class="ok">intact</span>'
    elif chain["intact"]:  # links hold, but anyone who can write the log could relink it
        chain_html = '<span class="warn">intact, not keyed</span>'
    else:
        chain_html = f'<span class="bad">BROKEN</span>: {_e(chain["first_break"])}'
    chain_html += (
        " (HMAC-SHA256, chain key given)"
        if chain["keyed"]
        else " (SHA-256, no chain key given: whoever can write the log can rewrite it and relink the"
        " chain; set logging.chain_key and give it to the reviewers)"
    )
    if chain["missing"]:
        chain_html += '; <span class="bad">INCOMPLETE</span>'
    notes = "".join(f'<li class="bad">missing: {_e(n)}</li>' for n in chain["missing"])
    notes += "".join(f"<li>{_e(n)}</li>" for n in chain["notes"])
    heads = "".join(
        f"<li>head of {_e(h['file'])}: <code>{_e(h['chain'])}</code> (line {_e(h['line'])}, "
        f"{_e(h['ts'] or '-')}, {_e(h['records'])} records)</li>"
        for h in chain["heads"]
    )
    findings = data["findings"]
    if findings:
        shown = findings[:200]
        findings_html = (
            f'<p class="bad">{len(findings)} finding(s)</p><ul>'
            + "".join(f"<li><code>{_e(f)}</code></li>" for f in shown)
            + "</ul>"
        )
    else:
        findings_html = '<p class="ok">none: no clear-text number, body or credential</p>'
    span = data["time_span"]
    rows = data["timeline"]["rows"]
    peak = max((r["refusals"] for r in rows), default=0) or 1
    timeline_rows = "".join(
        "<tr>"
        f"<td>{_e(r['start'])}</td>"
        f'<td class="n">{_e(r["refusals"])}</td>'
        f'<td><span class="bar" style="width:{round(200 * r["refusals"] / peak)}px"></span></td>'
        f"<td>{_e(', '.join(f'{k} {v}' for k, v in r['reasons'].items()))}</td>"
        "</tr>"
        for r in rows
    )
    files = ", ".join(f"{f['name']} ({f['records']})" for f in data["files"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>smsgw audit report</title><style>{_CSS}</style></head>
<body>
<h1>smsgw audit report</h1>
<p id="summary">{_e(data["records"])} records from {_e(span["first"] or "-")} to {_e(span["last"] or "-")}
in {_e(len(data["files"]))} file(s): {_e(files)}</p>
<h2>Integrity</h2>
<p id="chain">Chain: {chain_html}</p>{f"<ul>{notes}</ul>" if notes else ""}
{f'<ul id="heads">{heads}</ul><p>{_ANCHOR_HINT}</p>' if heads else ""}
<div id="findings"><p>Findings:</p>{findings_html}</div>
<h2>Decisions</h2>
{_table("decisions", ("decision", "requests"), _rows(data["decisions"].items()))}
<h2>By client</h2>
{_table("clients", ("client", "allowed", "refused", "total"), _rows(_split(data["clients"])))}
<h2>By route</h2>
{_table("routes", ("route", "allowed", "refused", "total"), _rows(_split(data["routes"])))}
<h2>Refusals by reason</h2>
{_table("reasons", ("reason", "refusals"), _rows(data["refusal_reasons"].items()))}
<h2>Refusals over time</h2>
<p>per {_e(data["timeline"]["bucket_minutes"])} minute(s), UTC</p>
<table id="timeline"><tr><th>from</th><th class="n">refusals</th><th></th><th>reasons</th></tr>
{timeline_rows or '<tr><td colspan="4">no refusals</td></tr>'}</table>
<h2>Vendor outcomes</h2>
{_table("outcomes", ("status", "sends"), _rows(data["outcomes"].items()))}
<h2>OTP conversion</h2>
<p>OTP sends the vendor accepted against approved checks, worst first (prefixes by their HMAC id)</p>
{_table("conversion", _CONVERSION_HEADERS, _conversion_rows(data))}
{html_sections(data, _table, _rows, _e)}<h2>Events</h2>
{_table("events", ("event", "records"), _rows(data["events"].items()))}
<footer>Made by <code>smsgw audit report</code> at {_e(generated)}.</footer>
</body></html>
"""


def cmd_report(args: argparse.Namespace) -> int:
    keys = load_keys(args)
    result = scan([Path(p) for p in args.files], keys.chain_key, expected=expected_files(args))
    for access in args.access or ():
        result.tables.count_access(record for _, record, _ in read_records(Path(access)))
    data = report_data(result)
    if args.format == "json":
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    else:
        text = render_html(data, datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# --------------------------------------------------------------------------- the command line


def _key_options(p: argparse.ArgumentParser, hash_key: bool = True, chain_key: bool = True) -> None:
    p.add_argument(
        "-c",
        "--config",
        help="the gateway's config: keys from its [logging] table; the chains to expect (server.workers)",
    )
    if hash_key:
        p.add_argument("--hash-key-file", help="a file holding logging.hash_key")
        p.add_argument("--hash-key-env", help="an environment variable holding logging.hash_key")
    if chain_key:
        p.add_argument("--chain-key-file", help="a file holding logging.chain_key")
        p.add_argument("--chain-key-env", help="an environment variable holding logging.chain_key")


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except UsageError as exc:
            print(f"smsgw audit: {exc}", file=sys.stderr)
            return 2

    return run


def add_audit_parser(sub: Any) -> None:
    """``smsgw audit …``, wired into the main parser by cli.py."""
    audit = sub.add_parser("audit", help="reviewers' commands: verify | head | find | unseal | report")
    commands = audit.add_subparsers(dest="audit_command", required=True)

    p = commands.add_parser("verify", help="check the chain and scan for clear text; exit 1 on any problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--anchor",
        action="append",
        metavar="HASH",
        help="a head noted earlier (`smsgw audit head`): it must be in the chain; repeat for several",
    )
    _key_options(p, hash_key=False)
    p.set_defaults(func=_run(cmd_verify))

    p = commands.add_parser(
        "head", help="print the head (last chain value) of each chain, to note as an anchor"
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    _key_options(p, hash_key=False)
    p.set_defaults(func=_run(cmd_head))

    p = commands.add_parser("find", help="records carrying a body (by its HMAC) and/or a recipient")
    p.add_argument("--body", help="the exact message text")
    p.add_argument("--recipient", help="an international number, +CC…")
    p.add_argument("files", nargs="+", metavar="FILE")
    _key_options(p, chain_key=False)
    p.set_defaults(func=_run(cmd_find))

    p = commands.add_parser("unseal", help="print records with sealed bodies opened")
    p.add_argument("--key", required=True, help="the reviewers' private key (PEM)")
    p.add_argument("--passphrase-env", help="an environment variable holding the key's passphrase")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_run(cmd_unseal))

    p = commands.add_parser("report", help="a one-page summary: HTML (default) or JSON")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=["html", "json"], default="html")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--access", action="append", metavar="FILE", help="an access log: counts probes (404/405)")
    _key_options(p, hash_key=False)
    p.set_defaults(func=_run(cmd_report))
