"""JSON-lines sinks for the access and audit logs.

One ``os.write`` per record on an ``O_APPEND`` descriptor: lines from concurrent writers never
interleave inside a line, and a record is in the kernel before the caller goes on (the audit
record of a send is written before the request goes upstream).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


class JsonLinesSink:
    __slots__ = ("_fd", "_owned", "name")

    def __init__(self, target: str, base_dir: Path | None = None) -> None:
        self.name = target
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

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        self.write_line(line.encode("utf-8"))

    def write_line(self, data: bytes) -> None:
        """``data`` is one complete line, newline included."""
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)
            self._owned = False
