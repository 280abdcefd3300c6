"""HMAC-signed JWTs (HS256/384/512), verified without a library's clock or algorithm guessing.

The accepted algorithms are fixed by the caller; ``none`` and every asymmetric algorithm are
refused whatever the header says, so a token cannot pick how it is checked. Times are checked
by the schemes against the ``now`` they are given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Collection
from typing import Any

from gateway.webhooks.base import SignatureError

__all__ = ["MAX_TOKEN", "b64url_decode", "sign", "verify"]

MAX_TOKEN = 8192
_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url_decode(text: str) -> bytes:
    if "=" in text or "+" in text or "/" in text:
        raise SignatureError("malformed_token")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError("malformed_token") from None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _object(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise SignatureError("malformed_token") from None
    if not isinstance(doc, dict):
        raise SignatureError("malformed_token")
    return doc


def verify(token: str, secret: bytes, algorithms: Collection[str]) -> dict[str, Any]:
    """The claims of a token signed with ``secret`` by one of ``algorithms``; raises otherwise."""
    if len(token) > MAX_TOKEN or not token.isascii():
        raise SignatureError("malformed_token")
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureError("malformed_token")
    header = _object(b64url_decode(parts[0]))
    algorithm = header.get("alg")
    if algorithm not in algorithms or algorithm not in _DIGESTS:
        raise SignatureError("unsupported_algorithm")
    given = b64url_decode(parts[2])
    expected = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode("ascii"), _DIGESTS[algorithm]).digest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("bad_signature")
    return _object(b64url_decode(parts[1]))


def sign(claims: dict[str, Any], secret: bytes, algorithm: str = "HS256") -> str:
    """A token as the vendors make them (tests and ``smsgw`` tooling)."""
    head = _b64url(json.dumps({"alg": algorithm, "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode("ascii"), _DIGESTS[algorithm]).digest()
    return f"{head}.{body}.{_b64url(mac)}"


def number_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SignatureError("malformed_token")
    return float(value)
