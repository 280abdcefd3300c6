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


def basic_lines(username: str, password: str, digest: str) -> list[str]:
    """The ``[[client.basic]]`` lines for a credential, the password in a comment above them.

    The password is never a ``key = value`` line: the whole output pasted under a ``[[client]]``
    is a valid table that holds only the digest, and the clear password is not left in the file
    as configuration (it is a comment the operator removes once the client has it).
    """
    return [
        f"# password: {password}",
        "# ^ give the password to the client, then delete this comment: the gateway keeps only its SHA-256",
        "[[client.basic]]",
        f'username        = "{username}"',
        f'password_sha256 = "{digest}"   # SHA-256 of the password',
    ]


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
