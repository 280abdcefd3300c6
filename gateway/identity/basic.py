"""Gateway-issued basic credentials, so unmodified vendor SDKs can talk to the gateway.

Only the SHA-256 of each password is configured. A single fast hash is enough because the
passwords are high-entropy random strings made by ``smsgw keygen basic``, not human passwords.

The client's IP allowlist is checked *before* the password: from outside a client's allowlist
a right and a wrong password get the same 403, so nobody there can test passwords. An unknown
username is answered as a stable decoy client (chosen by a keyed hash of the name) would be, so
the answer does not tell which usernames exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping

import netaddr
from aiohttp import web

from gateway.errors import refuse
from gateway.exchange import Exchange
from gateway.identity.auth import AuthContext, Principal
from gateway.identity.ip import IpAllowlist

__all__ = ["CHALLENGE", "BasicAuthenticator", "build_basic"]

CHALLENGE = 'Basic realm="smsgw", charset="UTF-8"'

#: Compared against when the username is unknown, so both paths do the same work.
_NO_MATCH = bytes(32)


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """``(username, password)`` of an ``Authorization: Basic`` header, or None if it is not one."""
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
    return (username, password) if sep else None


class BasicAuthenticator:
    kind = "basic"
    challenge = CHALLENGE
    needs_body = False

    __slots__ = ("_allowlists", "_decoy_key", "_decoys", "_digests")

    def __init__(
        self,
        entries: Iterable[tuple[str, str, str]],
        allowlists: Mapping[str, IpAllowlist] | None = None,
    ) -> None:
        """``entries`` are ``(username, password_sha256_hex, client_id)``; ``allowlists`` by client id."""
        self._digests: dict[str, tuple[bytes, str]] = {
            username: (bytes.fromhex(digest), client_id) for username, digest, client_id in entries
        }
        self._allowlists = dict(allowlists or {})
        self._decoys = tuple(sorted({client_id for _, client_id in self._digests.values()}))
        # Stable across restarts and replicas, unknown to outsiders: derived from the secrets.
        self._decoy_key = hashlib.sha256(
            b"smsgw-basic-decoy\n" + b"".join(sorted(d for d, _ in self._digests.values()))
        ).digest()

    def present(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header[:6].lower() == "basic "

    def verify(self, authorization: str | None) -> str | None:
        """The client id for a valid ``Authorization: Basic`` header, else None (no address check)."""
        parsed = parse_basic(authorization)
        if parsed is None:
            return None
        username, password = parsed
        expected, client_id = self._digests.get(username, (_NO_MATCH, ""))
        given = hashlib.sha256(password.encode("utf-8")).digest()
        if hmac.compare_digest(given, expected) and client_id:
            return client_id
        return None

    def claimed_client(self, username: str) -> str | None:
        """The client a username names, or for an unknown name its decoy (None without clients)."""
        known = self._digests.get(username)
        if known is not None:
            return known[1]
        if not self._decoys:
            return None
        digest = hmac.new(self._decoy_key, username.encode("utf-8", "surrogateescape"), "sha256").digest()
        return self._decoys[int.from_bytes(digest[:8], "big") % len(self._decoys)]

    def address_allowed(self, authorization: str | None, address: netaddr.IPAddress) -> bool:
        parsed = parse_basic(authorization)
        if parsed is None:
            return True
        claimed = self.claimed_client(parsed[0])
        allowlist = self._allowlists.get(claimed) if claimed is not None else None
        return allowlist is None or allowlist.allows(address)

    async def authenticate(self, ex: Exchange) -> Principal:
        header = ex.request.headers.get("Authorization")
        if ex.address is not None and not self.address_allowed(header, ex.address):
            raise refuse(
                "ip_not_allowed",
                "the client address is not allowed for this client",
                detail="client_allowlist",
            )
        client_id = self.verify(header)
        if client_id is None:
            raise refuse("unauthenticated", "a valid credential is required", detail="bad_credentials")
        return Principal(client_id, "basic")


def build_basic(ctx: AuthContext) -> BasicAuthenticator:
    return BasicAuthenticator(
        ((b.username, b.password_sha256, c.id) for c in ctx.config.clients for b in c.basic),
        {client.id: client.ip_allow for client in ctx.clients.values() if client.ip_allow},
    )
