"""JSON-lines sinks for the access and audit logs.

One ``os.write`` per record on an ``O_APPEND`` descriptor: lines from concurrent writers never
interleave inside a line, and a record is in the kernel before the caller goes on (the audit
record of a send is written before the request goes upstream).

Logging never changes an answer: a failed write (a closed stdout, a full disk) is counted and
reported once on stderr, and the caller decides what it means. Any string can be written: text
that cannot be UTF-8 encoded (surrogate-escaped header bytes) is escaped, never raised.

A write that fails part-way (a disk that fills mid-record) leaves no torn line: the bytes it
did write are cut off again (``ftruncate`` back to where the record began). Where that is not
possible (a pipe, a file that grew meanwhile), the next record starts with a newline, so the
torn bytes stay on a line of their own and never glue onto a whole record; so does the first
record written to a file that a crashed process left torn.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("smsgw")


#: The reference encoders, built once (``json.dumps`` with options builds an encoder per call).
#: Their bytes are the log's format: the audit chain hashes exactly what ``_SORTED`` produces.
_INSERTION = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_SORTED = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode

_SCALARS = frozenset((str, int, bool, type(None)))
_LINE = orjson.OPT_APPEND_NEWLINE
_CANONICAL = orjson.OPT_SORT_KEYS


def _same_in_orjson(value: object) -> bool:
    """True when orjson writes ``value`` byte for byte as the reference encoder does.

    Where they differ without an error: floats that ``repr`` writes with an exponent (orjson
    spells them differently), NaN and infinities (orjson writes null), and the types orjson
    encodes natively where the reference calls ``str`` (enums, dates, dataclasses, subclasses).
    What orjson refuses (non-string keys, integers beyond 64 bits, lone surrogates) raises.
    A ``str`` subclass (the audit ``event`` and reason members) is its text to both encoders.
    """
    kind = type(value)
    if kind in _SCALARS or isinstance(value, str):
        return True
    if kind is float:
        return 1e-4 <= abs(value) < 1e16 or value == 0.0  # type: ignore[arg-type]
    if kind is dict:
        return all(map(_same_in_orjson, value.values()))  # type: ignore[attr-defined]
    if kind is list or kind is tuple:
        return all(map(_same_in_orjson, value))  # type: ignore[call-overload]
    return False


def _fast(record: dict[str, Any], option: int) -> bytes | None:
    """orjson's bytes for ``record`` when they are the reference's, else None."""
    for value in record.values():
        if type(value) not in _SCALARS and not _same_in_orjson(value):
            return None
    try:
        return orjson.dumps(record, option=option)
    except orjson.JSONEncodeError:
        return None


def encode_line(record: dict[str, Any]) -> bytes:
    """One access-log line: keys in insertion order, UTF-8, newline-terminated."""
    fast = _fast(record, _LINE)
    if fast is not None:
        return fast
    return (_INSERTION(record) + "\n").encode("utf-8", "backslashreplace")


def encode_canonical(record: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 (text that is not valid UTF-8 backslash-escaped): the bytes
    an audit record is written and chained as. orjson writes them in about a third of the time;
    records it would spell differently go through the reference encoder."""
    fast = _fast(record, _CANONICAL)
    if fast is not None:
        return fast
    return _SORTED(record).encode("utf-8", "backslashreplace")


def worker_log_path(target: str, worker: int | None) -> str:
    """With ``server.workers > 1`` each process writes its own file: ``audit.jsonl`` -> ``audit.w1.jsonl``.

    Each file is one chain written by one process, so workers never fork a chain.
    """
    if worker is None or target == "-":
        return target
    path = Path(target)
    return str(path.with_name(f"{path.stem}.w{worker}{path.suffix}"))


def ends_a_line(path: Path, fd: int) -> bool:
    """False only for a regular file (open as ``fd``) whose last byte is not a newline."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return True  # a pipe, a terminal: nothing to read back
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if not size:
                return True
            fh.seek(size - 1)
            return fh.read(1) == b"\n"
    except OSError:
        return True


class JsonLinesSink:
    __slots__ = ("_fd", "_owned", "_torn", "failures", "name")

    def __init__(self, target: str, base_dir: Path | None = None) -> None:
        self.name = target
        self.failures = 0
        #: After a write that failed part-way and could not be cut off: ``(start, end)`` of the
        #: torn bytes in the file (``None`` where offsets mean nothing, a pipe), else ``False``.
        self._torn: tuple[int, int] | bool | None = False
        if target == "-":
            self._fd = sys.stdout.fileno()
            self._owned = False
            return
        path = Path(target)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._owned = True
        self.name = str(path)
        if not ends_a_line(path, self._fd):
            self._torn = None  # torn before we opened it (a crash mid-write): start a new line

    def write(self, record: dict[str, Any]) -> bool:
        return self.write_line(encode_line(record))

    def write_line(self, data: bytes) -> bool:
        """``data`` is one complete line, newline included. False when it could not be written,
        and then nothing of it is left in the file (or it is left on a line of its own)."""
        if self._torn is not False and not self._mend():
            data = b"\n" + data  # the torn bytes could not be cut off: start a line of our own
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:] if written else data)
        except OSError as exc:
            if written:
                self._cut(written)
            self.failures += 1
            if self.failures == 1:
                log.error(
                    "cannot write to %s (%s); further failures are counted, not reported",
                    "stdout" if self.name == "-" else self.name,
                    type(exc).__name__,
                )
            return False
        self._torn = False
        return True

    def _cut(self, written: int) -> None:
        """Remove the ``written`` bytes of a record that failed part-way. With ``O_APPEND`` they
        end at this descriptor's offset; they are cut only if nothing was appended after them."""
        try:
            end = os.lseek(self._fd, 0, os.SEEK_CUR)
        except OSError:  # a pipe or a terminal: what was written is gone downstream
            self._torn = None
            return
        start = end - written
        torn = self._torn
        if isinstance(torn, tuple):
            if torn[1] != start:  # not right after the earlier torn bytes: leave both be
                self._torn = None
                return
            start = torn[0]  # torn again right after a tear that could not be cut: cut both
        self._torn = (start, end)
        self._mend()

    def _mend(self) -> bool:
        """Cut the torn bytes off; False when they stay (then the next line starts afresh)."""
        torn = self._torn
        if not isinstance(torn, tuple):
            return torn is False
        try:
            if os.fstat(self._fd).st_size != torn[1]:
                self._torn = None  # bytes were appended after them: never cut those
                return False
            os.ftruncate(self._fd, torn[0])
        except OSError:
            return False  # tried again before the next record
        self._torn = False
        return True

    def reopen(self) -> None:
        """Open the path again (after the file was renamed away: rotation); raises ``OSError``
        and keeps the old descriptor when the new file cannot be opened."""
        if not self._owned:
            return
        fd = os.open(self.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._mend()  # the old file keeps whole lines only, where it can
        old, self._fd = self._fd, fd
        self._torn = False if ends_a_line(Path(self.name), fd) else None
        os.close(old)

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)
            self._owned = False
