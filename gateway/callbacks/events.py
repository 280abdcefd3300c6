"""What a verified callback is about: the vendor's message id and status (for duplicates and the
audit record), and the numbers and text it carries (for the audit record, through the Redactor).

Only what the vendor's signature covers is read, and only where the vendor put its own fields: the
body, or the query of a GET callback. A client chooses the callback URL when it sends a message,
so a query beside a body is the client's word even where the vendor signs it (Twilio, Plivo V3,
MessageBird sign the whole URL): it never names the message, its status or its numbers, and the
internal service gets it without any parameter named like the vendor's fields.

Reading is lenient: a callback whose shape is not known still goes through (its signature was
valid), it just cannot be recognised as a duplicate. Nothing read here is logged unredacted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, unquote_plus

from gateway.callbacks.base import QUERY, Verified, is_form, is_json
from gateway.core.values import Event

__all__ = ["AmbiguousField", "Event", "EventFields", "forwarded_query", "read_event"]

_MAX_FIELD: Final = 4096


@dataclass(frozen=True, slots=True)
class EventFields:
    """Field names (or JSON pointers ``/a/b``) of one vendor's callbacks; the first present wins
    for ``message_id``, ``status`` and ``text``; every ``numbers`` field present is read."""

    message_id: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    #: Every field name above that is not a JSON pointer, as the vendor spells it (computed once).
    flat_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        every = (*self.message_id, *self.status, *self.numbers, *self.text)
        object.__setattr__(self, "flat_names", frozenset(n for n in every if not n.startswith("/")))

    @property
    def names(self) -> frozenset[str]:
        """Fields that carry personal data (numbers, text): scrubbed from logged URLs."""
        return frozenset(n.casefold() for n in (*self.numbers, *self.text) if not n.startswith("/"))


class AmbiguousField(ValueError):
    """One of the vendor's field names given more than once where the fields are read: which one
    did the vendor mean? (A client's callback URL ``?id=A`` with the vendor's ``&id=B`` after it.)"""


def _query_params(raw_query: str, unique: frozenset[str]) -> dict[str, object]:
    flat: dict[str, object] = {}
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True)
    except ValueError:
        return flat
    for key, value in pairs:
        if key in flat and key in unique:
            raise AmbiguousField(key)
        flat.setdefault(key, value)
    return flat


def _body_params(body: bytes, content_type: str, unique: frozenset[str]) -> tuple[dict[str, object], object]:
    """Form parameters (first value of each) or the JSON document's top level, and the document."""
    flat: dict[str, object] = {}
    doc: object = None
    if body and is_form(content_type):
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            pairs = []
        for key, value in pairs:
            if key in flat and key in unique:
                raise AmbiguousField(key)
            flat.setdefault(key, value)
    elif body and is_json(content_type):
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            flat.update(doc)
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


def forwarded_query(raw_query: str, verified: Verified, vendor_names: frozenset[str]) -> str:
    """The query the internal service gets: none unless the signature covers it; all of it when
    it carries the vendor's fields (a GET callback); else without any parameter named like one of
    the vendor's fields, so the client's ``?MessageStatus=delivered`` cannot stand beside, or
    before, the vendor's own status. Names are compared after percent-decoding and case-folding
    (some frameworks read query names case-insensitively). Kept byte for byte otherwise."""
    if not verified.query_signed or not raw_query:
        return ""
    if verified.fields_in == QUERY:
        return raw_query
    folded = frozenset(n.casefold() for n in vendor_names)
    kept = []
    for part in raw_query.split("&"):
        name = part.partition("=")[0]
        try:
            decoded = unquote_plus(name, errors="strict")
        except UnicodeDecodeError:
            continue  # not a name anyone can compare: dropped
        if decoded.casefold() not in folded:
            kept.append(part)
    return "&".join(kept)


def read_event(
    fields: EventFields, verified: Verified, raw_query: str, body: bytes, content_type: str
) -> Event:
    """What the callback reports, read only where ``verified`` says the vendor's fields are (for
    Plivo V2, whose signature covers no field, from the body, marked unverified). Raises
    :class:`AmbiguousField` when one of the vendor's field names is there twice."""
    declared = fields.flat_names
    doc: object = None
    if verified.fields_in == QUERY:
        flat = _query_params(raw_query, declared)
        vendor_names = frozenset(flat)
    else:
        flat, doc = _body_params(body, content_type, declared)
        vendor_names = frozenset(k for k in flat if isinstance(k, str))

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
    return Event(
        first(fields.message_id),
        first(fields.status),
        numbers[:32],
        first(fields.text),
        verified_fields=verified.fields_in,
        forward_query=forwarded_query(raw_query, verified, vendor_names | declared),
    )
