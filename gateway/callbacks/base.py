"""What every callback verifier shares: the request as the vendor signed it, the refusal, and
small helpers that never short-circuit on secret data.

Verifiers are pure functions over bytes: no clock (``now`` is passed in), no I/O, no logging.
A verifier returns :class:`Verified` or raises :class:`SignatureError` with a ``detail`` for the
audit record; the detail never holds request bytes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

from gateway.core.events import Detail
from gateway.core.values import BODY, NOWHERE, QUERY, Verified

__all__ = [
    "BODY",
    "NOWHERE",
    "QUERY",
    "SignatureError",
    "SignedRequest",
    "Verified",
    "Verifier",
    "decode_digest",
    "equal",
    "form_pairs",
    "one_header",
    "query_pairs",
    "within",
]

#: Details that mean "the request could not be read", answered 400 instead of 401.
MALFORMED = Detail.MALFORMED


class SignatureError(Exception):
    """The callback is not provably from the vendor. ``detail`` is a fixed code (``missing_signature``,
    ``bad_signature``, ``expired``, ``body_mismatch``, ``url_mismatch``, ``malformed``, ...)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parts of a callback a vendor can sign.

    ``url`` is the URL the vendor called, rebuilt from ``server.public_url`` and the request's
    raw path and query (never from ``Host``); ``headers`` is case-insensitive and keeps repeats.
    """

    method: str
    url: str
    headers: Headers
    body: bytes
    content_type: str = ""


class Headers(Protocol):
    """A case-insensitive multimap (``CIMultiDictProxy`` in the gateway, ``CIMultiDict`` in tests)."""

    def getall(self, key: str, default: Sequence[str] = ...) -> list[str]: ...


class Verifier(Protocol):
    def __call__(self, request: SignedRequest, now: float) -> Verified: ...


def one_header(headers: Headers, name: str, *, required: bool = True) -> str | None:
    """The single value of ``name``; two values are refused (which one would the vendor mean?)."""
    values = headers.getall(name, [])
    if len(values) > 1:
        raise SignatureError(Detail.AMBIGUOUS_SIGNATURE)
    if not values or not values[0].strip():
        if required:
            raise SignatureError(Detail.MISSING_SIGNATURE)
        return None
    return values[0].strip()


def equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison (for equal lengths) of two signatures."""
    x = a.encode("utf-8") if isinstance(a, str) else a
    y = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(x, y)


def within(timestamp: str, now: float, tolerance_s: float) -> None:
    """A signed Unix timestamp must be within ``tolerance_s`` of now, either way."""
    try:
        value = int(timestamp.strip())
    except ValueError:
        raise SignatureError(MALFORMED) from None
    if abs(now - value) > tolerance_s:
        raise SignatureError(Detail.EXPIRED)


def form_pairs(body: bytes) -> list[tuple[str, str]]:
    """A form body as the vendor encoded it; a body no strict parser reads is malformed."""
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise SignatureError(MALFORMED) from None


def query_pairs(url: str) -> list[tuple[str, str]]:
    query = url.partition("?")[2]
    try:
        return parse_qsl(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise SignatureError(MALFORMED) from None


def grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def single_valued(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Parameters that must each appear once (a repeat would be signed one way and read another)."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise SignatureError(MALFORMED)
        out[key] = value
    return out


def decode_digest(text: str, encodings: Sequence[str]) -> bytes | None:
    """A signature header's bytes in the first of ``encodings`` that reads it (hex, base64,
    base64url); None when none does."""
    for encoding in encodings:
        try:
            if encoding == "hex":
                return bytes.fromhex(text)
            if encoding == "base64":
                return base64.b64decode(text, validate=True)
            if encoding == "base64url":
                padded = text + "=" * (-len(text) % 4)
                if any(c in padded for c in "+/"):
                    continue
                return base64.urlsafe_b64decode(padded)
        except (ValueError, binascii.Error):
            continue
    return None


def is_form(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
