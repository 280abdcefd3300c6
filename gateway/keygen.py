"""Secrets made by ``smsgw keygen``: high-entropy, printable, and never written to a config inline."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import date, timedelta


def random_token(nbytes: int = 32) -> str:
    """``nbytes`` random bytes, base64url without padding; the text itself is the key."""
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).rstrip(b"=").decode("ascii")


def basic_credential() -> tuple[str, str]:
    """A gateway-issued password and the ``password_sha256`` to put in ``[[client.basic]]``."""
    password = random_token(32)
    return password, hashlib.sha256(password.encode("utf-8")).hexdigest()


def hmac_key_lines(client: str, key_id: str, created: date, days: int) -> tuple[str, list[str]]:
    """A new HMAC secret and the ``[[client.hmac_keys]]`` lines that configure it."""
    secret = random_token(32)
    env = "SMSGW_HMAC_" + "".join(c if c.isalnum() else "_" for c in key_id).upper()
    lines = [
        f"[[client.hmac_keys]]           # under the [[client]] with id = {client!r}",
        f'id = "{key_id}"',
        f'secret = "env:{env}"   # set {env} to the secret above (or use file:PATH)',
        f"created = {created.isoformat()}",
        f"expires = {(created + timedelta(days=days)).isoformat()}",
    ]
    return secret, lines


def sdk_username() -> str:
    """A gateway-issued account id shaped like Twilio's (``AC`` + 32 hex digits)."""
    return "AC" + secrets.token_hex(16)
