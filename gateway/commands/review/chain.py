"""The chain scan that ``verify`` and ``report`` share: each file's chain, where it starts
(genesis, a rotation marker, an anchor, a purged file) and every break, in one pass."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit.log import GENESIS, chain_value, rotation_stamp
from gateway.commands.conversion_review import ConversionTally
from gateway.commands.report_tables import ReportTables
from gateway.commands.review.keys import Expected
from gateway.commands.review.records import Finding, read_records, scan_record
from gateway.core.events import AuditEvent

MARKER_EVENT = AuditEvent.AUDIT_ROTATED


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
        _scan_file(path, groups.setdefault(_group_name(path), []), chain_key, wanted, purged_chains, result)
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


def _scan_file(
    path: Path,
    group: list[FileChain],
    chain_key: bytes | None,
    wanted: set[str],
    purged_chains: dict[str, str],
    result: Scan,
) -> None:
    """One file of a chain (``group``: its files given so far), linked to the one before it."""
    chain = FileChain(path.name)
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
        _note_purged(record, purged_chains)
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
        _note_torn(path.name, torn, chain.last_line, result, last=False)
        torn.clear()
        current = chain.end = value
        chain.last_line, chain.last_ts = number, _text(record.get("ts"))
        if value in wanted:
            result.anchors.setdefault(value, f"{path.name}:{number}")
    if state == "on":  # a write that failed at the end, nothing written after it
        _note_torn(path.name, torn, chain.last_line, result, last=True)
    if chain.records == 0:
        chain.end = previous.end if previous is not None else GENESIS


def _note_purged(record: dict[str, Any], purged_chains: dict[str, str]) -> None:
    """An ``audit_purged`` record vouches for where the files after the deleted ones start."""
    if record.get("event") == AuditEvent.AUDIT_PURGED:
        for item in record.get("files") or []:
            if isinstance(item, dict) and isinstance(item.get("last_chain"), str):
                purged_chains[item["last_chain"]] = str(item.get("file"))


def _note_torn(name: str, torn: list[tuple[int, str]], last_line: int, result: Scan, *, last: bool) -> None:
    """Torn lines the chain goes on across (failed writes): notes, not breaks."""
    for line, _ in torn:
        if last:
            result.notes.append(
                f"{name}:{line}: a torn last line (a write that failed); the chain ends at line {last_line}"
            )
        else:
            result.notes.append(
                f"{name}:{line}: a torn line (a write that failed); the chain goes on from "
                + (f"line {last_line}" if last_line else "where the file starts")
            )


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
