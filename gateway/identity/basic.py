"""Gateway-issued basic credentials, so unmodified vendor SDKs can talk to the gateway.

Only the SHA-256 of each password is configured. A single fast hash is enough because the
passwords are high-entropy random strings made by ``smsgw keygen basic``, not human passwords.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

#: Compared against when the username is unknown, so both paths do the same work.
_NO_MATCH = bytes(32)


class BasicAuthenticator:
    __slots__ = ("_digests",)

    def __init__(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """``entries`` are ``(username, password_sha256_hex, client_id)``."""
        self._digests: dict[str, tuple[bytes, str]] = {
            username: (bytes.fromhex(digest), client_id) for username, digest, client_id in entries
        }

    def authenticate(self, authorization: str | None) -> str | None:
        """Return the client id for a valid ``Authorization: Basic`` header, else None."""
        if not authorization:
            return None
        scheme, _, param = authorization.partition(" ")
        if scheme.lower() != "basic" or not param:
            return None
        try:
            decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            return None
        expected, client_id = self._digests.get(username, (_NO_MATCH, ""))
        given = hashlib.sha256(password.encode("utf-8")).digest()
        if hmac.compare_digest(given, expected) and client_id:
            return client_id
        return None
