"""The operational log on stderr: text lines, or JSON lines (``logging.format = "json"``) that a
log shipper reads without parsing prose, each with the id of the request it is about.

The request id comes from a context variable the request handler sets, so a warning raised deep
in a stage carries it without being passed along. The same rule as every log of the gateway
holds: messages are fixed texts with counts, names and types; an exception is logged by its type,
never its message or traceback text (either can quote request bytes).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import Final

__all__ = ["REQUEST_ID", "JsonFormatter", "configure", "new_request_id"]

#: The id of the request being handled in this task (None outside one).
REQUEST_ID: ContextVar[str | None] = ContextVar("smsgw_request_id", default=None)
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def new_request_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as ``uuid.uuid4().hex`` writes it, in a third
    of the time: every request takes one, and building the ``UUID`` object is most of the cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 9562 variant
    return raw.hex()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and
    ``request_id`` / ``error`` (an exception's type) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc: dict[str, object] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            doc["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = record.exc_info[0].__name__
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def configure(level: str, fmt: str = "text") -> None:
    """Set up the root logger once, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
