"""Generic adapter: read any vendor's send request from a few configured field paths.

Also home of the strict body readers (media type, form, JSON) that the vendor adapters share, so
every adapter refuses the same ambiguous inputs. The rule throughout: when the gateway and the
vendor could read a body differently (duplicate or case-variant fields, odd charsets, malformed
escapes, values of unexpected type), the request is refused rather than guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl

from gateway.errors import bad_request
from gateway.providers.base import Message

__all__ = [
    "FORM_TYPE",
    "GenericAdapter",
    "GenericSpec",
    "form_fields",
    "is_json_type",
    "load_json_answer",
    "media_type",
    "read_form",
    "validate_spec_path",
]

FORM_TYPE: Final = "application/x-www-form-urlencoded"
_FORMATS: Final = frozenset({"json", "form", "auto"})
_UTF8_NAMES: Final = frozenset({"utf-8", "utf8"})
# A "%" not followed by two hex digits: urllib keeps it literally, other servers reject or guess.
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")

Role = Literal["recipient", "sender", "body"]


# --------------------------------------------------------------------------- media types


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into its lowercased type and parameters (names lowercased)."""
    head, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[name] = value
    return head.strip().lower(), params


def is_json_type(mtype: str) -> bool:
    return mtype == "application/json" or ("/" in mtype and mtype.endswith("+json"))


def _require_utf8_charset(params: dict[str, str]) -> None:
    # Another charset would make the vendor decode percent-escapes differently from us.
    charset = params.get("charset")
    if charset is not None and charset.lower() not in _UTF8_NAMES:
        raise bad_request("only the UTF-8 charset is accepted")


def _body_kind(content_type: str, fmt: str) -> Literal["json", "form"]:
    """The parser to use; the Content-Type must agree even for a fixed format, since vendors decide by it."""
    mtype, params = media_type(content_type)
    if mtype == FORM_TYPE and fmt in ("form", "auto"):
        kind: Literal["json", "form"] = "form"
    elif is_json_type(mtype) and fmt in ("json", "auto"):
        kind = "json"
    else:
        raise bad_request("unsupported content type for this provider")
    _require_utf8_charset(params)
    return kind


# --------------------------------------------------------------------------- forms


def read_form(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """Decode a form body the way a strict server does; anything lenient parsers disagree on is refused."""
    mtype, params = media_type(content_type)
    if mtype != FORM_TYPE:
        raise bad_request("the body must be application/x-www-form-urlencoded")
    _require_utf8_charset(params)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the body is not valid UTF-8") from None
    if _BAD_PERCENT.search(text):
        raise bad_request("the form body has a malformed percent-escape")
    try:
        # parse_qsl's own messages quote the body: never let them out.
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True, encoding="utf-8", errors="strict")
    except ValueError:
        raise bad_request("the form body is malformed or not valid UTF-8") from None


def form_fields(
    pairs: Sequence[tuple[str, str]], wanted: Iterable[tuple[str, Role, bool]]
) -> dict[str, list[str]]:
    """Values of the wanted fields, given as (name, role, may_repeat).

    A field that appears more than once when single-valued, or under another letter case, is
    refused: the vendor could pick a different occurrence than the one the gateway checked.
    """
    by_fold: dict[str, list[tuple[str, str]]] = {}
    for name, value in pairs:
        by_fold.setdefault(name.casefold(), []).append((name, value))
    out: dict[str, list[str]] = {}
    for name, role, may_repeat in wanted:
        found = by_fold.get(name.casefold(), [])
        if any(n != name for n, _ in found):
            raise bad_request(f"the {role} field is present under another letter case")
        if len(found) > 1 and not may_repeat:
            raise bad_request(f"the {role} field appears more than once")
        out[name] = [v for _, v in found]
    return out


# --------------------------------------------------------------------------- JSON


class _Ambiguous(Exception):
    """Raised inside json.loads for constructs that vendors' parsers read differently."""


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Case-insensitive too: ASP.NET and some Jackson setups bind "To" to a "to" property.
    seen: set[str] = set()
    for key, _ in pairs:
        folded = key.casefold()
        if folded in seen:
            raise _Ambiguous
        seen.add(folded)
    return dict(pairs)


def _no_constant(_: str) -> object:
    raise _Ambiguous  # NaN / Infinity are not JSON


def read_json(body: bytes) -> object:
    """Parse a JSON request body; duplicate keys anywhere make it ambiguous and are refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the body is not valid UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except _Ambiguous:
        raise bad_request("the JSON body has duplicate keys or non-standard values") from None
    except (ValueError, RecursionError):
        raise bad_request("the body is not valid JSON") from None


def load_json_answer(status: int, body: bytes) -> object | None:
    """A vendor's 2xx JSON answer, leniently parsed; None for anything else (never raises)."""
    if not 200 <= status < 300 or not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


# --------------------------------------------------------------------------- field paths


class _Star:
    __slots__ = ()

    def __repr__(self) -> str:
        return "*"


STAR: Final = _Star()


@dataclass(frozen=True, slots=True)
class _Key:
    """One pointer segment: an object key, which also addresses an array when it is an index."""

    key: str
    folded: str
    index: int | None


Segment = _Key | _Star
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
        return (_Key(spec, spec.casefold(), None),)
    segments: list[Segment] = []
    for position, raw in enumerate(spec[1:].split("/"), start=1):
        if raw == "*":
            segments.append(STAR)
            continue
        key = _unescape(raw, position)
        index = int(key) if _INDEX.fullmatch(key) else None
        segments.append(_Key(key, key.casefold(), index))
    return tuple(segments)


def validate_spec_path(spec: str) -> None:
    """Raise ValueError saying what is wrong with a field spec, for config checking."""
    compile_spec_path(spec)


def _form_name(segments: tuple[Segment, ...]) -> str | None:
    """The form field a spec names, or None when it needs JSON structure."""
    if len(segments) == 1 and isinstance(segments[0], _Key):
        return segments[0].key
    return None


def _resolve(doc: object, segments: tuple[Segment, ...], strict: bool) -> tuple[list[object], int]:
    """Every value the path reaches, and how many `*` branches missed it.

    Strict mode refuses shapes the path does not fit and keys present only in another letter case.
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
            if strict and any(k.casefold() == seg.folded for k in node):
                raise bad_request("a configured JSON field is present under another letter case")
        elif isinstance(node, list):
            if seg.index is not None and seg.index < len(node):
                stack.append((node[seg.index], depth + 1))
                continue
            if strict and seg.index is None:
                raise bad_request("the JSON body does not have the expected structure")
        elif strict:
            raise bad_request("the JSON body does not have the expected structure")
        missing += 1
    return found, missing


def _check_text(value: str) -> str:
    # Lone surrogates (legal as JSON escapes) cannot be UTF-8 encoded for hashing or forwarding.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("the JSON body has an invalid unicode escape") from None
    return value


def _split(values: Iterable[str], separator: str | None) -> tuple[str, ...]:
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


# --------------------------------------------------------------------------- adapter


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericSpec:
    """Where a vendor's request keeps recipient, sender and body, and its answer the message id.

    A spec starting with "/" is a JSON pointer ("*" = every array element); otherwise a top-level
    field name. Checked on construction so config errors surface at load time.
    """

    format: str = "auto"
    recipient: str
    sender: str | None = None
    body: str | None = None
    recipient_separator: str | None = None
    message_id: str | None = None

    def __post_init__(self) -> None:
        if self.format not in _FORMATS:
            raise ValueError(f"format: must be one of json, form, auto (got {self.format!r})")
        if self.recipient_separator == "":
            raise ValueError("recipient_separator: must not be empty")
        for name in ("recipient", "sender", "body", "message_id"):
            spec = getattr(self, name)
            if spec is None:
                continue
            try:
                segments = compile_spec_path(spec)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if self.format == "form" and name != "message_id" and _form_name(segments) is None:
                raise ValueError(f"{name}: a form body has only top-level fields, not {spec!r}")


class GenericAdapter:
    """Reads recipients, sender and body from configured paths; refuses anything it cannot read exactly."""

    __slots__ = (
        "_body",
        "_format",
        "_message_id",
        "_recipient",
        "_sender",
        "_separator",
        "read_fields",
        "spec",
    )

    name: str = "generic"

    def __init__(self, spec: GenericSpec) -> None:
        self.spec = spec
        self._format = spec.format
        self._separator = spec.recipient_separator
        self._recipient = compile_spec_path(spec.recipient)
        self._sender = compile_spec_path(spec.sender) if spec.sender is not None else None
        self._body = compile_spec_path(spec.body) if spec.body is not None else None
        self._message_id = compile_spec_path(spec.message_id) if spec.message_id is not None else None
        self.read_fields = frozenset(
            name.lower()
            for segments in (self._recipient, self._sender, self._body)
            if segments is not None and (name := _form_name(segments)) is not None
        )

    def parse(self, body: bytes, content_type: str) -> Message:
        if _body_kind(content_type, self._format) == "form":
            return self._parse_form(read_form(body, content_type))
        return self._parse_json(read_json(body))

    # JSON -----------------------------------------------------------------

    def _parse_json(self, doc: object) -> Message:
        found, missing = _resolve(doc, self._recipient, strict=True)
        if found and missing:
            raise bad_request("some recipient entries lack the recipient field")
        texts: list[str] = []
        for value in found:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, str):
                    raise bad_request("a recipient is not a JSON string")
                texts.append(_check_text(item))
        return Message(
            recipients=_split(texts, self._separator),
            sender=self._json_single(doc, self._sender, "sender"),
            body=self._json_single(doc, self._body, "body"),
        )

    @staticmethod
    def _json_single(doc: object, segments: tuple[Segment, ...] | None, role: Role) -> str | None:
        if segments is None:
            return None
        found, missing = _resolve(doc, segments, strict=True)
        if not found:
            return None
        if missing or len(found) > 1:
            raise bad_request(f"the request has more than one {role}")
        value = found[0]
        if not isinstance(value, str):
            raise bad_request(f"the {role} is not a JSON string")
        return _check_text(value)

    # form -----------------------------------------------------------------

    def _parse_form(self, pairs: list[tuple[str, str]]) -> Message:
        recipient = self._form_name(self._recipient)
        sender = self._form_name(self._sender) if self._sender is not None else None
        text = self._form_name(self._body) if self._body is not None else None
        wanted: list[tuple[str, Role, bool]] = [(recipient, "recipient", True)]
        if sender is not None:
            wanted.append((sender, "sender", False))
        if text is not None:
            wanted.append((text, "body", False))
        fields = form_fields(pairs, wanted)
        return Message(
            recipients=_split(fields[recipient], self._separator),
            sender=_first(fields, sender),
            body=_first(fields, text),
        )

    @staticmethod
    def _form_name(segments: tuple[Segment, ...]) -> str:
        name = _form_name(segments)
        if name is None:  # format "auto" with a nested pointer, and the client sent a form
            raise bad_request("this route's fields cannot be read from a form body")
        return name

    # answer ---------------------------------------------------------------

    def vendor_message_id(self, status: int, body: bytes, content_type: str) -> str | None:
        if self._message_id is None:
            return None
        doc = load_json_answer(status, body)
        if doc is None:
            return None
        found, _ = _resolve(doc, self._message_id, strict=False)  # lenient: never fails
        for value in found:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    return item
                if isinstance(item, int | float) and not isinstance(item, bool):
                    return str(item)
        return None


def _first(fields: dict[str, list[str]], name: str | None) -> str | None:
    if name is None:
        return None
    values = fields[name]
    return values[0] if values else None
