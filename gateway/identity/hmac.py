"""RFC 9421 HTTP Message Signatures with ``hmac-sha256`` and an RFC 9530 ``Content-Digest``.

A signed request carries one signature (``Signature-Input`` and ``Signature`` with one label)
whose covered components include ``"@method" "@target-uri" "content-digest"`` and whose
parameters include ``created``, ``keyid`` and ``nonce`` (``alg``, if given, is ``hmac-sha256``).
Checked in this order, the first failure being the audit ``detail``:

1. the headers parse as RFC 8941 dictionaries with one label (``malformed``), the required
   parameters and components are there (``missing_parameter``, ``missing_component``);
2. ``keyid`` names a configured key (``unknown_key``) that has not expired (``key_expired``);
3. ``created`` is within :data:`WINDOW_S` of now, either way (``clock_skew``); ``expires``, when
   given, is an integer (``malformed``) and not reached yet (``expired``); with memory storage,
   ``created`` is not before the second the storage started (``signed_before_start``): its nonces
   were lost with the previous process, so an older signature could be a replay it cannot see;
4. the signature over the RFC 9421 signature base verifies, in constant time
   (``bad_signature``) — the base is built by the ``http-message-signatures`` package from the
   method, the target URI as the gateway sees it (:class:`TargetUri`) and the headers;
5. the signed ``Content-Digest`` holds a ``sha-256`` member that matches the SHA-256 of the body
   the gateway received (``digest_mismatch``);
6. the ``nonce`` has not been seen for this key within the window (``replayed``). Nonces live in
   the shared storage (``storage.*``), so replicas refuse each other's replays; a storage outage
   follows ``storage.on_error``.

The nonce is stored only after the signature verified, so nobody can fill storage, or burn a
client's future nonces, without the key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import http_sf
from aiohttp import web
from http_message_signatures import ContentDigest, HTTPMessageVerifier, HTTPSignatureKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.identity.auth import AuthContext, Principal
from gateway.storage.service import StorageService, StorageUnavailable, skipped

__all__ = [
    "REQUIRED_COMPONENTS",
    "WINDOW_S",
    "HmacAuthenticator",
    "HmacKey",
    "TargetUri",
    "build_hmac",
    "time_refusal",
]

#: ``created`` may be this many seconds old, or this far in the future (clock skew).
WINDOW_S = 300
REQUIRED_COMPONENTS = ("@method", "@target-uri", "content-digest")
REQUIRED_PARAMETERS = ("created", "keyid", "nonce")
ALGORITHM = "hmac-sha256"
CHALLENGE = 'Signature realm="smsgw", alg="hmac-sha256"'
MAX_NONCE = 128
#: Signature headers longer than this are refused before parsing (a signature is ~200 bytes).
MAX_HEADER = 2048


def _unauthenticated(detail: str) -> GatewayError:
    return refuse(Reason.UNAUTHENTICATED, "a valid credential is required", detail=detail)


@dataclass(frozen=True, slots=True)
class HmacKey:
    key_id: str
    secret: bytes
    client_id: str
    expires: date | None = None

    def expired(self, today: date) -> bool:
        """A key stops working at 00:00 UTC on its ``expires`` date."""
        return self.expires is not None and today >= self.expires


class _Keys(HTTPSignatureKeyResolver):
    def __init__(self, keys: Mapping[str, HmacKey]) -> None:
        self._keys = keys

    def resolve_public_key(self, key_id: str) -> bytes | None:
        key = self._keys.get(key_id)
        return key.secret if key is not None else None

    def resolve_private_key(self, key_id: str) -> bytes:
        raise KeyError(key_id)  # the gateway verifies; it never signs with a client's key


class _Verifier(HTTPMessageVerifier):
    # The window is checked (with its own detail) before the library sees the signature; its own
    # check only has to be no stricter.
    max_clock_skew = timedelta(seconds=WINDOW_S + 60)


@dataclass(frozen=True, slots=True)
class _Message:
    """What the library reads of a request: method, the target URI, every header line."""

    method: str
    url: str
    headers: Any


class TargetUri:
    """``@target-uri`` as the client addressed it: ``server.public_url`` + the path and query as
    received when a public URL is configured (behind a load balancer, or to bind signatures to
    one origin); otherwise ``https://`` + the ``Host`` header + the path and query. The scheme is
    always https: plain HTTP never reaches a route. Host is lower-cased and ``:443`` dropped, as
    ``gateway.core.signing`` does, so both sides spell the same URI the same way."""

    __slots__ = ("_origin",)

    def __init__(self, public_url: str) -> None:
        self._origin = public_url.rstrip("/") or None

    def of(self, request: web.Request) -> str | None:
        if self._origin is not None:
            return self._origin + request.raw_path
        host = request.headers.get("Host")
        if not host or len(request.headers.getall("Host")) != 1:
            return None
        host = host.strip().lower().removesuffix(":443")
        return f"https://{host}{request.raw_path}"


def time_refusal(created: int, expires: object, now: float, remembers_since: int | None) -> str | None:
    """Why a signature's times refuse it (an audit detail), or None.

    ``expires`` (RFC 9421) is honoured as the signer set it, with no skew added: the signer chose
    the instant. ``remembers_since`` is when the nonce storage started remembering (memory storage:
    the process start); a signature created before then may have been used already.
    """
    if expires is not None:  # a structured-field parameter is never None: None is absent
        if type(expires) is not int:
            return Detail.MALFORMED
        if now >= expires:
            return Detail.EXPIRED
    if remembers_since is not None and created < remembers_since:
        return Detail.SIGNED_BEFORE_START
    return None


def _no_duplicates(key: str, context: str) -> None:
    raise ValueError("a key given twice")


def _parse_input(value: str) -> tuple[str, list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The one label of ``Signature-Input``, its components and its parameters."""
    parsed = http_sf.parse(value.encode("ascii"), tltype="dictionary", on_duplicate_key=_no_duplicates)
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise ValueError("one signature label")
    ((label, (members, params)),) = parsed.items()
    if not isinstance(members, list):
        raise ValueError("an inner list")
    return label, members, params


class HmacAuthenticator:
    kind = "hmac"
    challenge = CHALLENGE
    needs_body = True

    __slots__ = ("_keys", "_storage", "_target", "_verifier")

    def __init__(self, keys: Iterable[HmacKey], target: TargetUri, storage: StorageService) -> None:
        self._keys = {key.key_id: key for key in keys}
        self._target = target
        self._storage = storage
        self._verifier = _Verifier(signature_algorithm=HMAC_SHA256, key_resolver=_Keys(self._keys))

    def present(self, request: web.Request) -> bool:
        headers = request.headers
        return "Signature-Input" in headers or "Signature" in headers

    async def authenticate(self, ex: Exchange) -> Principal:
        request = ex.request
        headers = request.headers
        inputs = headers.getall("Signature-Input", ())
        signatures = headers.getall("Signature", ())
        if len(inputs) != 1 or len(signatures) != 1:
            raise _unauthenticated(Detail.MALFORMED)
        if len(inputs[0]) > MAX_HEADER or len(signatures[0]) > MAX_HEADER:
            raise _unauthenticated(Detail.MALFORMED)
        try:
            _, members, params = _parse_input(inputs[0])
        except (ValueError, UnicodeEncodeError):
            raise _unauthenticated(Detail.MALFORMED) from None

        key_id, created, nonce = params.get("keyid"), params.get("created"), params.get("nonce")
        if not isinstance(key_id, str) or type(created) is not int or not isinstance(nonce, str):
            raise _unauthenticated(Detail.MISSING_PARAMETER)
        if not 0 < len(nonce) <= MAX_NONCE:
            raise _unauthenticated(Detail.MALFORMED)
        if params.get("alg", ALGORITHM) != ALGORITHM:
            raise _unauthenticated(Detail.ALGORITHM)
        covered = {name for name, item_params in members if isinstance(name, str) and not item_params}
        if not all(component in covered for component in REQUIRED_COMPONENTS):
            raise _unauthenticated(Detail.MISSING_COMPONENT)

        key = self._keys.get(key_id)
        if key is None:
            raise _unauthenticated(Detail.UNKNOWN_KEY)
        now = time.time()
        if key.expired(datetime.fromtimestamp(now, UTC).date()):
            raise _unauthenticated(Detail.KEY_EXPIRED)
        if abs(now - created) > WINDOW_S:
            raise _unauthenticated(Detail.CLOCK_SKEW)
        refusal = time_refusal(created, params.get("expires"), now, self._storage.remembers_since)
        if refusal is not None:
            raise _unauthenticated(refusal)

        url = self._target.of(request)
        if url is None:
            raise _unauthenticated(Detail.MALFORMED)
        try:
            (result,) = self._verifier.verify(
                _Message(request.method, url, headers), max_age=None, require_components=REQUIRED_COMPONENTS
            )
        except HTTPMessageSignaturesException:
            raise _unauthenticated(Detail.BAD_SIGNATURE) from None
        self._check_digest(result.covered_components['"content-digest"'], ex.body or b"")
        await self._fresh_nonce(ex, key, nonce, created, now)
        return Principal(key.client_id, "hmac", None, key.key_id)

    @staticmethod
    def _check_digest(signed_value: str, body: bytes) -> None:
        """The signed ``Content-Digest`` must have a ``sha-256`` member, and every member must match."""
        try:
            members = http_sf.parse(
                signed_value.encode("ascii"), tltype="dictionary", on_duplicate_key=_no_duplicates
            )
            if not isinstance(members, dict) or "sha-256" not in members:
                raise _unauthenticated(Detail.DIGEST_MISMATCH)
            ContentDigest.verify(signed_value, body)
        except (ValueError, UnicodeEncodeError, HTTPMessageSignaturesException):
            raise _unauthenticated(Detail.DIGEST_MISMATCH) from None

    async def _fresh_nonce(self, ex: Exchange, key: HmacKey, nonce: str, created: int, now: float) -> None:
        storage = self._storage
        # Hashed: a fixed-size storage key, and a key id and nonce can never run into each other.
        name = hashlib.sha256(f"{key.key_id}\n{nonce}".encode()).hexdigest()[:40]
        ttl = max(1.0, created + WINDOW_S - now + 1)  # until this signature could no longer pass
        try:
            stored = await storage.kv.set_if_absent(storage.key("hmac-nonce", name), b"1", ttl)
        except StorageUnavailable:
            refusal = storage.unavailable(Detail.HMAC_NONCE)
            if refusal is not None:
                raise refusal from None
            ex.detail = skipped(ex.detail, Detail.NONCE_SKIPPED)  # on_error = "open": passed, and recorded
            return
        if not stored:
            raise _unauthenticated(Detail.REPLAYED)


def build_hmac(ctx: AuthContext) -> HmacAuthenticator:
    keys = [
        HmacKey(key.id, key.secret.get_secret_value().encode("utf-8"), client.id, key.expires)
        for client in ctx.config.clients
        for key in client.hmac_keys
    ]
    services = ctx.services
    return HmacAuthenticator(keys, TargetUri(ctx.config.settings.server.public_url), services.storage)
