"""Field paths of the generic adapter, also used by the vendors whose requests are JSON: a top-level
field name or an RFC 6901 JSON pointer in which ``*`` means every array element, compiled once
when the config loads, and the readers that walk a document along one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from gateway.core.errors import bad_request
from gateway.messages.forms import Role, check_text, json_key_fold, load_json_answer

__all__ = [
    "STAR",
    "Key",
    "Segment",
    "compile_spec_path",
    "form_name",
    "json_recipients",
    "json_strings",
    "json_texts",
    "message_id_at",
    "resolve",
    "split_recipients",
    "validate_spec_path",
]


class _Star:
    __slots__ = ()

    def __repr__(self) -> str:
        return "*"


STAR: Final = _Star()


@dataclass(frozen=True, slots=True)
class Key:
    """One pointer segment: an object key, which also addresses an array when it is an index."""

    key: str
    folded: str  # json_key_fold(key)
    index: int | None


Segment = Key | _Star
_INDEX: Final = re.compile(r"0|[1-9][0-9]*")


def _unescape(segment: str, position: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "~":
            nxt = segment[i + 1 : i + 2]
            if nxt not in ("0", "1"):
                shown = "~" + nxt if nxt else "~ at the end"
                raise ValueError(
                    f"invalid escape {shown!r} in segment {position} of the JSON pointer "
                    "(write ~0 for '~' and ~1 for '/')"
                )
            out.append("~" if nxt == "0" else "/")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def compile_spec_path(spec: str) -> tuple[Segment, ...]:
    """Compile a field spec once: "/a/*/b" is an RFC 6901 pointer with "*" for every array element."""
    if not spec:
        raise ValueError("the field spec is empty (give a field name or a JSON pointer starting with '/')")
    if not spec.startswith("/"):
        return (Key(spec, json_key_fold(spec), None),)
    segments: list[Segment] = []
    for position, raw in enumerate(spec[1:].split("/"), start=1):
        if raw == "*":
            segments.append(STAR)
            continue
        key = _unescape(raw, position)
        index = int(key) if _INDEX.fullmatch(key) else None
        segments.append(Key(key, json_key_fold(key), index))
    return tuple(segments)


def validate_spec_path(spec: str) -> None:
    """Raise ValueError saying what is wrong with a field spec, for config checking."""
    compile_spec_path(spec)


def form_name(segments: tuple[Segment, ...]) -> str | None:
    """The form field a spec names, or None when it needs JSON structure."""
    if len(segments) == 1 and isinstance(segments[0], Key):
        return segments[0].key
    return None


def resolve(doc: object, segments: tuple[Segment, ...], strict: bool) -> tuple[list[object], int]:
    """Every value the path reaches, and how many `*` branches missed it.

    Strict mode refuses shapes the path does not fit, keys present only in another letter case
    (or with stray spaces or control characters), and an index into an array of more than one
    element: the others would reach the vendor unchecked.
    """
    found: list[object] = []
    missing = 0
    # Explicit stack, in reverse so values come out in document order.
    stack: list[tuple[object, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if depth == len(segments):
            found.append(node)
            continue
        seg = segments[depth]
        if isinstance(seg, _Star):
            if isinstance(node, list):
                stack.extend((item, depth + 1) for item in reversed(node))
            elif strict:
                raise bad_request("the JSON body does not have the expected structure")
            continue
        if isinstance(node, dict):
            if seg.key in node:
                stack.append((node[seg.key], depth + 1))
                continue
            if strict and any(json_key_fold(k) == seg.folded for k in node):
                raise bad_request("a configured JSON field is present under another letter case")
        elif isinstance(node, list):
            if strict and seg.index is not None and len(node) > 1:
                raise bad_request("the request holds more elements than the configured JSON pointer names")
            if seg.index is not None and seg.index < len(node):
                stack.append((node[seg.index], depth + 1))
                continue
            if strict and seg.index is None:
                raise bad_request("the JSON body does not have the expected structure")
        elif strict:
            raise bad_request("the JSON body does not have the expected structure")
        missing += 1
    return found, missing


def split_recipients(values: Iterable[str], separator: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        parts = value.split(separator) if separator is not None else [value]
        for part in parts:
            part = part.strip() if separator is not None else part
            if not part.strip():
                raise bad_request("a recipient is empty")
            out.append(part)
    if not out:
        raise bad_request("the request has no recipient")
    return tuple(out)


def json_recipients(doc: object, segments: tuple[Segment, ...], numbers_as_ints: bool = False) -> list[str]:
    """Every recipient text a path reaches (a list counts element by element); anything but a
    string (or, where the vendor takes them, a JSON integer) is refused."""
    found, missing = resolve(doc, segments, strict=True)
    if found and missing:
        raise bad_request("some recipient entries lack the recipient field")
    texts: list[str] = []
    for value in found:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                texts.append(check_text(item))
            elif numbers_as_ints and isinstance(item, int) and not isinstance(item, bool) and item > 0:
                texts.append(str(item))
            else:
                raise bad_request("a recipient is not a JSON string")
    return texts


def json_strings(
    doc: object, segments: tuple[Segment, ...] | None, role: Role
) -> tuple[tuple[str, ...], bool]:
    """Every string the path reaches, and whether some branch has none."""
    if segments is None:
        return (), True
    found, missing = resolve(doc, segments, strict=True)
    out: list[str] = []
    for value in found:
        if not isinstance(value, str):
            raise bad_request(f"the {role} is not a JSON string")
        out.append(check_text(value))
    return tuple(out), bool(missing) or not found


def json_texts(doc: object, segments: tuple[Segment, ...]) -> tuple[str, ...]:
    """Secret-bearing values of any JSON type, as text (objects in canonical JSON), for the redactor."""
    found, _ = resolve(doc, segments, strict=False)
    out: list[str] = []
    for value in found:
        if isinstance(value, str):
            out.append(check_text(value))
        elif value is not None:
            out.append(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    return tuple(out)


def message_id_at(segments: tuple[Segment, ...], status: int, body: bytes) -> str | None:
    """The first string (or number) a path reaches in a 2xx JSON answer; never raises."""
    doc = load_json_answer(status, body)
    if doc is None:
        return None
    found, _ = resolve(doc, segments, strict=False)  # lenient: never fails
    for value in found:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                return item
            if isinstance(item, int | float) and not isinstance(item, bool):
                return str(item)
    return None
