"""Gateway-issued basic credentials, so unmodified vendor SDKs can talk to the gateway.

Only the SHA-256 of each password is configured. A single fast hash is enough because the
passwords are high-entropy random strings made by ``smsgw keygen basic``, not human passwords.

The client's IP allowlist is checked *before* the password: from outside a client's allowlist
a right and a wrong password get the same 403, so nobody there can test passwords. An unknown
username is answered as a stable decoy client (chosen by a keyed hash of the name) would be, so
the answer does not tell which usernames exist.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence

import netaddr
from aiohttp import web

from gateway.core.errors import Reason, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.identity.auth import AuthContext, Principal
from gateway.identity.ip import IpAllowlist
from gateway.messages.slots import BASIC, CredentialSlot, Presented, parse_basic

__all__ = ["CHALLENGE", "BasicAuthenticator", "build_basic", "parse_basic"]

CHALLENGE = 'Basic realm="smsgw", charset="UTF-8"'

#: Compared against when the username is unknown, so both paths do the same work.
_NO_MATCH = bytes(32)


class BasicAuthenticator:
    """Gateway-issued credentials, read from wherever the vendor's SDK puts its own (``slots``).

    Token slots (``Bearer``, ``App``, ``AccessKey``) carry the password alone: the client is the
    one whose password hashes to it, and an unknown token gets a decoy picked by its keyed hash.
    Signed slots (SigV4) are checked with the entry's clear ``password``.
    """

    kind = "basic"
    challenge = CHALLENGE

    __slots__ = ("_allowlists", "_by_digest", "_decoy_key", "_decoys", "_digests", "_secrets", "_slots")

    def __init__(
        self,
        entries: Iterable[tuple[str, str, str]],
        allowlists: Mapping[str, IpAllowlist] | None = None,
        slots: Sequence[CredentialSlot] = (BASIC,),
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """``entries`` are ``(username, password_sha256_hex, client_id)``; ``allowlists`` by client
        id; ``secrets`` the clear passwords by username, for signed slots."""
        self._digests: dict[str, tuple[bytes, str]] = {
            username: (bytes.fromhex(digest), client_id) for username, digest, client_id in entries
        }
        self._by_digest = {
            digest: (username, client_id) for username, (digest, client_id) in self._digests.items()
        }
        self._allowlists = dict(allowlists or {})
        self._slots = tuple(slots)
        self._secrets = dict(secrets or {})
        self._decoys = tuple(sorted({client_id for _, client_id in self._digests.values()}))
        # Stable across restarts and replicas, unknown to outsiders: derived from the secrets.
        self._decoy_key = hashlib.sha256(
            b"smsgw-basic-decoy\n" + b"".join(sorted(d for d, _ in self._digests.values()))
        ).digest()

    @property
    def needs_body(self) -> bool:
        return any(slot.needs_body for slot in self._slots)

    def present(self, request: web.Request) -> bool:
        return any(slot.present(request) for slot in self._slots)

    def verify(self, authorization: str | None) -> str | None:
        """The client id for a valid ``Authorization: Basic`` header, else None (no address check)."""
        parsed = parse_basic(authorization)
        if parsed is None:
            return None
        return self._check(Presented(parsed[0], parsed[1]))

    def _check(self, presented: Presented) -> str | None:
        username = presented.username
        if username is None:  # a token: the password alone names the client
            given = hashlib.sha256((presented.password or "").encode("utf-8")).digest()
            _, client_id = self._by_digest.get(given, ("", ""))
            return client_id or None
        expected, client_id = self._digests.get(username, (_NO_MATCH, ""))
        if presented.verify is not None:
            secret = self._secrets.get(username)
            return client_id if secret is not None and presented.verify(secret) and client_id else None
        given = hashlib.sha256((presented.password or "").encode("utf-8")).digest()
        if hmac.compare_digest(given, expected) and client_id:
            return client_id
        return None

    def claimed_client(self, username: str) -> str | None:
        """The client a username names, or for an unknown name its decoy (None without clients)."""
        known = self._digests.get(username)
        if known is not None:
            return known[1]
        return self._decoy(username)

    def _decoy(self, name: str) -> str | None:
        if not self._decoys:
            return None
        digest = hmac.new(self._decoy_key, name.encode("utf-8", "surrogateescape"), "sha256").digest()
        return self._decoys[int.from_bytes(digest[:8], "big") % len(self._decoys)]

    def _claimed(self, presented: Presented) -> str | None:
        if presented.username is not None:
            return self.claimed_client(presented.username)
        token = presented.password or ""
        known = self._by_digest.get(hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest())
        return known[1] if known is not None else self._decoy("token:" + token)

    def _address_allowed(self, presented: Presented, address: netaddr.IPAddress) -> bool:
        claimed = self._claimed(presented)
        allowlist = self._allowlists.get(claimed) if claimed is not None else None
        return allowlist is None or allowlist.allows(address)

    def address_allowed(self, authorization: str | None, address: netaddr.IPAddress) -> bool:
        parsed = parse_basic(authorization)
        if parsed is None:
            return True
        return self._address_allowed(Presented(parsed[0], parsed[1]), address)

    async def authenticate(self, ex: Exchange) -> Principal:
        request = ex.request
        slots = [slot for slot in self._slots if slot.present(request)]
        if len(slots) > 1:
            raise refuse(
                Reason.UNAUTHENTICATED,
                "send one credential, not several",
                detail=Detail.AMBIGUOUS_CREDENTIALS,
            )
        presented = slots[0].read(request, ex.body) if slots else None
        if presented is None:
            raise refuse(
                Reason.UNAUTHENTICATED, "a valid credential is required", detail=Detail.BAD_CREDENTIALS
            )
        if ex.address is not None and not self._address_allowed(presented, ex.address):
            raise refuse(
                Reason.IP_NOT_ALLOWED,
                "the client address is not allowed for this client",
                detail=Detail.CLIENT_ALLOWLIST,
            )
        client_id = self._check(presented)
        if client_id is None:
            raise refuse(
                Reason.UNAUTHENTICATED, "a valid credential is required", detail=Detail.BAD_CREDENTIALS
            )
        return Principal(client_id, "basic")


def build_basic(ctx: AuthContext) -> BasicAuthenticator:
    adapter = ctx.adapter
    return BasicAuthenticator(
        ((b.username, b.digest, c.id) for c in ctx.config.clients for b in c.basic),
        {client.id: client.ip_allow for client in ctx.clients.values() if client.ip_allow},
        adapter.slots if adapter is not None else (BASIC,),
        {
            b.username: b.password.get_secret_value()
            for c in ctx.config.clients
            for b in c.basic
            if b.password
        },
    )
