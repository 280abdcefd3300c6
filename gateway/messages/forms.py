"""The strict body readers every adapter shares: media types, forms, JSON, query strings.

The rule throughout: when the gateway and the vendor could read the same bytes differently, the
request is refused rather than guessed at. Vendors run many parsers: PHP folds ``to[]`` and
`` to`` into ``to`` and cuts names at a NUL; Express's ``qs`` reads ``to[0]``, ``to[]`` and
(with ``allowDots``) ``to.x`` as the same field; Jackson or ASP.NET may bind ``To`` to ``to``;
some split queries on ``;``. So a field whose name *could* be read as a message field must be
written exactly as the adapter reads it, once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, Literal
from urllib.parse import unquote, unquote_plus, unquote_to_bytes

from gateway.core.errors import bad_request

__all__ = [
    "FORM_TYPE",
    "Role",
    "body_kind",
    "check_name",
    "check_text",
    "field_base",
    "form_fields",
    "is_json_type",
    "json_key_fold",
    "load_json_answer",
    "media_type",
    "query_names",
    "read_form",
    "read_json",
]

FORM_TYPE: Final = "application/x-www-form-urlencoded"
MAX_JSON_DEPTH: Final = 32
_UTF8_NAMES: Final = frozenset({"utf-8", "utf8"})
# A "%" not followed by two hex digits: urllib keeps it literally, other servers reject or guess.
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_TCHARS: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE: Final = re.compile(rf"{_TCHARS}/{_TCHARS}")
_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f]")
_NAME_CUT: Final = re.compile(r"[\[\].]")
_QUERY_SPLIT: Final = re.compile(r"[&;]")
#: ``\u0000`` in a JSON text, not preceded by an escaped backslash (raw NULs are invalid JSON).
_JSON_NUL: Final = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

Role = Literal["recipient", "sender", "body", "code"]


# --------------------------------------------------------------------------- names


def field_base(name: str) -> str:
    """The field a lenient parser may take ``name`` for: cut at ``[``, ``]`` or ``.``, surrounding
    space stripped, case folded (``" To[1]"`` -> ``"to"``). Names with control characters never get
    here (see :func:`check_name`)."""
    return _NAME_CUT.split(name, 1)[0].strip().casefold()


def check_name(name: str) -> str:
    """Refuse a field name holding a control character: PHP ends the name at a NUL, others drop it."""
    if _CONTROLS.search(name):
        raise bad_request("a field name holds a control character")
    return name


def json_key_fold(key: str) -> str:
    """JSON parsers do not interpret brackets or dots, but some trim, drop NULs or ignore case."""
    return _CONTROLS.sub("", key).strip().casefold()


def query_names(raw_query: str) -> Iterator[str]:
    """Decoded parameter names of a raw query, split on ``&`` and ``;`` (some servers split on both)."""
    for part in _QUERY_SPLIT.split(raw_query):
        if part:
            yield unquote_plus(part.partition("=")[0], errors="replace")


# --------------------------------------------------------------------------- media types


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into its lowercased type and parameters (names lowercased).

    A malformed type or a parameter given twice (``charset=utf-8; charset=latin1``) is refused:
    which one a vendor honours is anybody's guess.
    """
    head, _, rest = content_type.partition(";")
    head = head.strip()
    if not _MEDIA_TYPE.fullmatch(head):
        raise bad_request("the Content-Type is missing or malformed")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        name, eq, value = part.partition("=")
        # RFC 2231 forms (``charset*=utf-8''latin1``, ``charset*0=``) are the same parameter to
        # parsers that read them (werkzeug, Python's email package): folded, so a second
        # spelling counts as given twice and an encoded value is never taken for plain UTF-8.
        name = name.partition("*")[0].strip().lower()
        if not eq or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name in params:
            raise bad_request(f"the Content-Type gives its {name!r} parameter twice")
        params[name] = value
    return head.lower(), params


def is_json_type(mtype: str) -> bool:
    return mtype == "application/json" or ("/" in mtype and mtype.endswith("+json"))


def _require_utf8_charset(params: dict[str, str]) -> None:
    # Another charset would make the vendor decode percent-escapes differently from us.
    charset = params.get("charset")
    if charset is not None and charset.lower() not in _UTF8_NAMES:
        raise bad_request("only the UTF-8 charset is accepted")


def body_kind(content_type: str, fmt: str) -> Literal["json", "form"]:
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


def _unquote(text: str) -> str:
    """``unquote(text, "utf-8", "strict")``; an ASCII text is one run for it, decoded at once."""
    if text.isascii():
        return unquote_to_bytes(text).decode("utf-8")
    return unquote(text, "utf-8", "strict")


def _form_pairs(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")``, pair for
    pair (ValueError where it raises), decoding only the names and values that hold a ``%``."""
    pairs: list[tuple[str, str]] = []
    if not text:
        return pairs
    for field in text.split("&"):
        name, eq, value = field.partition("=")
        if not eq:
            raise ValueError("a form field without '='")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = _unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = _unquote(value)
        pairs.append((name, value))
    return pairs


def read_form(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """Decode a form body the way a strict server does; anything lenient parsers disagree on is refused."""
    if content_type != FORM_TYPE:  # the plain type needs no parsing: no parameters, no charset
        mtype, params = media_type(content_type)
        if mtype != FORM_TYPE:
            raise bad_request("the body must be application/x-www-form-urlencoded")
        _require_utf8_charset(params)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the body is not valid UTF-8") from None
    if text.startswith("\ufeff"):
        # A decoder that drops the byte-order mark reads the first field name without it.
        raise bad_request("the form body starts with a byte-order mark")
    if text.lstrip()[:1] in ("{", "["):
        # A JSON document under a form type: a vendor that goes by the body reads other fields.
        raise bad_request("the body is JSON, but its Content-Type says form")
    if "%" in text and _BAD_PERCENT.search(text):
        raise bad_request("the form body has a malformed percent-escape")
    if ";" in text:
        # Some stacks split form bodies on ";" too: "x=1;To=+44..." would be two fields there.
        raise bad_request("the form body holds a ';' (write it as %3B)")
    try:
        # parse_qsl's own messages quote the body: never let them out.
        pairs = _form_pairs(text)
    except ValueError:
        raise bad_request("the form body is malformed or not valid UTF-8") from None
    # a NUL comes from one in the text or from "%00"; only then are the pairs searched
    if ("\x00" in text or "%00" in text) and any("\x00" in name or "\x00" in value for name, value in pairs):
        # C-based stacks end a string at a NUL: the vendor would send less than was checked and logged.
        raise bad_request("the form body holds a NUL character")
    return pairs


def form_fields(
    pairs: Sequence[tuple[str, str]], wanted: Iterable[tuple[str, Role, bool]]
) -> dict[str, list[str]]:
    """Values of the wanted fields, given as (name, role, may_repeat).

    Refused: a single-valued field given twice, and any field whose name a lenient parser could
    fold into a wanted one (``to[]``, ``To``, `` to``, ``to\\x00``) unless written exactly as wanted.
    """
    wanted = tuple(wanted)
    by_base = {name.casefold(): (name, role) for name, role, _ in wanted}
    out: dict[str, list[str]] = {name: [] for name, _, _ in wanted}
    for name, value in pairs:
        hit = by_base.get(field_base(check_name(name)))
        if hit is None:
            continue
        exact, role = hit
        if name != exact:
            raise bad_request(f"a {role} field is written in a form the vendor could read differently")
        out[exact].append(value)
    for name, role, may_repeat in wanted:
        if len(out[name]) > 1 and not may_repeat:
            raise bad_request(f"the {role} field appears more than once")
    return out


# --------------------------------------------------------------------------- JSON


class _Ambiguous(Exception):
    """Raised inside json.loads for constructs that vendors' parsers read differently."""


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Folded too: ASP.NET and some Jackson setups bind "To" to a "to" property; some trim keys.
    seen: set[str] = set()
    for key, _ in pairs:
        folded = json_key_fold(key)
        if folded in seen:
            raise _Ambiguous
        seen.add(folded)
    return dict(pairs)


def _no_constant(_: str) -> object:
    raise _Ambiguous  # NaN / Infinity are not JSON


def _too_deep(text: str) -> bool:
    """Nesting deeper than MAX_JSON_DEPTH, counted outside strings without parsing."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def read_json(body: bytes) -> object:
    """Parse a JSON request body; duplicate keys anywhere make it ambiguous and are refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the body is not valid UTF-8") from None
    if text.startswith("\ufeff"):
        raise bad_request("the JSON body starts with a byte-order mark")
    if _too_deep(text):
        raise bad_request(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    if "\\u0000" in text and _JSON_NUL.search(text):
        # C-based stacks end a string at a NUL: the vendor would send less than was checked and logged.
        raise bad_request("the JSON body holds a NUL character")
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except _Ambiguous:
        raise bad_request("the JSON body has duplicate keys or non-standard values") from None
    except (ValueError, RecursionError):
        raise bad_request("the body is not valid JSON") from None


def check_text(value: str) -> str:
    """Lone surrogates (legal as JSON escapes) cannot be UTF-8 encoded for hashing or forwarding."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("the JSON body has an invalid unicode escape") from None
    return value


def load_json_answer(status: int, body: bytes) -> object | None:
    """A vendor's 2xx JSON answer, leniently parsed; None for anything else (never raises)."""
    if not 200 <= status < 300 or not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
