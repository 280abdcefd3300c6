"""Reading audit files line by line, and the clear-text findings: a number, body or credential
in a record that should only ever hold it hashed, masked or sealed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.commands.review.keys import _HEX64, UsageError
from gateway.core.redaction import REDACTED, mask_number
from gateway.core.seal import is_sealed_shape


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
