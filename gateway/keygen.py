"""Secrets made by ``smsgw keygen``: high-entropy, printable, and never written to a config inline."""

from __future__ import annotations

import base64
import hashlib
import secrets


def random_token(nbytes: int = 32) -> str:
    """``nbytes`` random bytes, base64url without padding; the text itself is the key."""
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).rstrip(b"=").decode("ascii")


def basic_credential() -> tuple[str, str]:
    """A gateway-issued password and the ``password_sha256`` to put in ``[[client.basic]]``."""
    password = random_token(32)
    return password, hashlib.sha256(password.encode("utf-8")).hexdigest()
