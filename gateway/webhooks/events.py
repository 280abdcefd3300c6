"""What a verified callback is about: the vendor's message id and status (for duplicates and the
audit record), and the numbers and text it carries (for the audit record, through the Redactor).

Reading is lenient: a callback whose shape is not known still goes through (its signature was
valid), it just cannot be recognised as a duplicate. Nothing read here is logged unredacted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from gateway.webhooks.base import is_form, is_json

__all__ = ["Event", "EventFields", "read_event"]

#: Ids and statuses go to the audit log as they are only when they look like ids.
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)
_STATUS: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:-]{0,63}", re.ASCII)
_MAX_FIELD: Final = 4096


@dataclass(frozen=True, slots=True)
class EventFields:
    """Field names (or JSON pointers ``/a/b``) of one vendor's callbacks; the first present wins
    for ``message_id``, ``status`` and ``text``; every ``numbers`` field present is read."""

    message_id: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    text: tuple[str, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        """Fields that carry personal data (numbers, text): scrubbed from logged URLs."""
        return frozenset(n.casefold() for n in (*self.numbers, *self.text) if not n.startswith("/"))


@dataclass(frozen=True, slots=True)
class Event:
    message_id: str | None = None  # raw, for duplicate detection
    status: str | None = None
    numbers: tuple[str, ...] = ()
    text: str | None = None

    @property
    def log_message_id(self) -> str | None:
        return self.message_id if self.message_id and _ID.fullmatch(self.message_id) else None

    @property
    def log_status(self) -> str | None:
        return self.status if self.status and _STATUS.fullmatch(self.status) else None


def _params(raw_query: str, body: bytes, content_type: str) -> tuple[dict[str, object], object]:
    """Query and form parameters (first value of each), and the JSON document if the body is one."""
    flat: dict[str, object] = {}
    try:
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            flat.setdefault(key, value)
    except ValueError:
        pass
    doc: object = None
    if body and is_form(content_type):
        try:
            for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
                flat.setdefault(key, value)
        except (UnicodeDecodeError, ValueError):
            pass
    elif body and is_json(content_type):
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            for key, value in doc.items():
                flat.setdefault(key, value)
    return flat, doc


def _pointer(doc: object, pointer: str) -> object:
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict):
            doc = doc.get(token)
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return None
    return doc


def _text(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        value = str(value)
    if isinstance(value, str) and value and len(value) <= _MAX_FIELD:
        return value
    return None


def read_event(fields: EventFields, raw_query: str, body: bytes, content_type: str) -> Event:
    flat, doc = _params(raw_query, body, content_type)

    def values(name: str) -> list[str]:
        found = _pointer(doc, name) if name.startswith("/") else flat.get(name)
        items = found if isinstance(found, list) else [found]
        return [t for item in items if (t := _text(item)) is not None]

    def first(names: tuple[str, ...]) -> str | None:
        for name in names:
            found = values(name)
            if found:
                return found[0]
        return None

    numbers = tuple(value for name in fields.numbers for value in values(name))
    return Event(first(fields.message_id), first(fields.status), numbers[:32], first(fields.text))
