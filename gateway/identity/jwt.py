"""JWT bearer tokens (``Authorization: Bearer``) from the issuers in ``[[auth.jwt.issuers]]``.

What a token must be, checked in this order (the first failure is the audit ``detail``):

- at most ``auth.jwt.max_token_bytes`` (``oversized``), three base64url parts (``malformed``);
- from a configured issuer (``iss``; ``wrong_issuer``), with an ``alg`` on that issuer's
  ``algorithms`` list (``algorithm``) — ``none`` never is, and an HS algorithm only ever for an
  issuer configured with a ``secret``, so a public key can never serve as an HMAC secret;
- signed by one of the issuer's keys (``unknown_key`` when its ``kid`` is in no key set, also
  after a refetch; ``bad_signature``);
- ``exp`` present and not past, ``nbf``/``iat`` not in the future, ``aud`` holding the
  configured audience, all with ``leeway_s`` (``expired``, ``not_yet_valid``, ``missing_claim``,
  ``wrong_audience``);
- ``exp``, ``nbf`` and ``iat`` JSON numbers, never strings or booleans (``malformed_claim``: pyjwt
  reads ``"1893456000"`` and ``true`` as integers), and a lifetime (``exp`` - ``iat``, or ``exp`` -
  now without ``iat``) of at most the issuer's ``max_lifetime_s`` (``lifetime_too_long``): a
  stolen long-lived token would otherwise work for as long as its issuer wrote;
- naming a client: ``sub`` (or, without ``sub``, ``client_id``, then ``azp``) equal to a
  ``[[client]]``'s ``jwt_subject`` (``unknown_subject``).

Scopes come from ``scope`` (space separated) or ``scp`` (a list) and narrow the client's own.
Verified tokens are remembered (by SHA-256 of the token, bounded, until ``exp`` + leeway, and
only while the issuer's key set is unchanged) so a client reusing a token costs one hash.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from jwt import exceptions as jwt_errors

from gateway.core.errors import GatewayError, Reason, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.identity.auth import AuthContext, Principal
from gateway.identity.jwks import JwksCache
from gateway.identity.keys import PublicKey, key_fits, load_public_key

__all__ = ["CHALLENGE", "JwtAuthenticator", "JwtIssuer", "build_jwt"]

CHALLENGE = 'Bearer realm="smsgw"'
#: Verified tokens remembered at once; the oldest is forgotten first.
CACHE_SIZE = 10_000
#: A JWS in compact serialization: three unpadded base64url parts (an empty signature is left for
#: the algorithm check to refuse, so an ``alg: none`` token is audited as the attack it is).
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", re.ASCII)
#: ``[[auth.jwt.issuers]] max_lifetime_s`` when not set: a day.
DEFAULT_MAX_LIFETIME_S = 86400
#: Claims that are times: JSON numbers only (RFC 7519 NumericDate).
TIME_CLAIMS = ("exp", "nbf", "iat")
#: The first claim present names the client.
SUBJECT_CLAIMS = ("sub", "client_id", "azp")

_DECODE_OPTIONS: Any = {
    "require": ["exp", "iss", "aud"],
    "verify_signature": True,
    "enforce_minimum_key_length": True,
}


def _unauthenticated(detail: str) -> GatewayError:
    return refuse(Reason.UNAUTHENTICATED, "a valid credential is required", detail=detail)


#: pyjwt's errors -> audit details; subclasses come before their parents.
_DETAILS: tuple[tuple[type[Exception], str], ...] = (
    (jwt_errors.ExpiredSignatureError, Detail.EXPIRED),
    (jwt_errors.ImmatureSignatureError, Detail.NOT_YET_VALID),
    (jwt_errors.InvalidIssuerError, Detail.WRONG_ISSUER),
    (jwt_errors.InvalidAudienceError, Detail.WRONG_AUDIENCE),
    (jwt_errors.MissingRequiredClaimError, Detail.MISSING_CLAIM),
    (jwt_errors.InvalidSignatureError, Detail.BAD_SIGNATURE),
    (jwt_errors.InvalidAlgorithmError, Detail.ALGORITHM),
    (jwt_errors.InvalidKeyError, Detail.BAD_KEY),
    (jwt_errors.PyJWTError, Detail.MALFORMED),
)


def _detail_of(exc: Exception) -> str:
    return next(detail for kind, detail in _DETAILS if isinstance(exc, kind))


def claim_times_refusal(claims: Mapping[str, Any], now: float, max_lifetime_s: int) -> str | None:
    """Why a token's time claims refuse it (an audit detail), or None: each of ``exp``, ``nbf``,
    ``iat`` present is a finite JSON number (not a string or boolean), and the lifetime the token
    claims is at most ``max_lifetime_s`` (from ``iat``, or from now when it has none)."""
    for name in TIME_CLAIMS:
        value = claims.get(name)
        if name in claims and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        ):
            return Detail.MALFORMED_CLAIM
    exp = claims.get("exp")
    if exp is None:
        return Detail.MISSING_CLAIM
    iat = claims.get("iat")
    if exp - (iat if iat is not None else now) > max_lifetime_s:
        return Detail.LIFETIME_TOO_LONG
    return None


@dataclass(frozen=True, slots=True)
class JwtIssuer:
    """One ``[[auth.jwt.issuers]]`` entry, compiled: its keys come from exactly one source."""

    name: str
    audience: str
    algorithms: frozenset[str]
    leeway_s: int
    secret: bytes | None = None
    public_key: PublicKey | None = None
    jwks: JwksCache | None = None
    #: The longest lifetime (``exp`` - ``iat``) a token may claim.
    max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S

    async def keys(self, alg: str, kid: str | None) -> list[Any]:
        """Keys that may verify this token; never a public key for an HS algorithm."""
        if self.secret is not None:
            return [self.secret] if alg.startswith("HS") else []
        if alg.startswith("HS"):
            return []
        if self.public_key is not None:
            return [self.public_key] if key_fits(alg, self.public_key) else []
        assert self.jwks is not None
        return [k.key for k in await self.jwks.keys_for(kid) if k.allows(alg)]

    @property
    def generation(self) -> int:
        return self.jwks.keys.generation if self.jwks is not None else 0


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    until: float  # wall-clock seconds: exp + leeway
    issuer: JwtIssuer
    generation: int


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str] | None:
    """``scope`` (space separated) or ``scp`` (list, or a space separated string); None if absent."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return frozenset(value)
        raise _unauthenticated(Detail.MALFORMED)
    return None


class JwtAuthenticator:
    kind = "jwt"
    challenge = CHALLENGE
    needs_body = False

    __slots__ = ("_cache", "_issuers", "_max_bytes", "_subjects")

    def __init__(
        self,
        issuers: Sequence[JwtIssuer],
        subjects: Mapping[tuple[str, str], str],
        max_token_bytes: int = 8192,
    ) -> None:
        """``subjects`` maps ``(issuer, subject)`` to a client id."""
        self._issuers = {issuer.name: issuer for issuer in issuers}
        self._subjects = dict(subjects)
        self._max_bytes = max_token_bytes
        self._cache: OrderedDict[bytes, _Verified] = OrderedDict()

    def present(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header[:7].lower() == "bearer "

    async def authenticate(self, ex: Exchange) -> Principal:
        token = ex.request.headers.get("Authorization", "")[7:].strip(" \t")  # HTTP whitespace only
        if len(token.encode("utf-8", "surrogateescape")) > self._max_bytes:
            raise _unauthenticated(Detail.OVERSIZED)
        if not _COMPACT.fullmatch(token):
            # RFC 7515 compact form only: unpadded base64url. pyjwt also took padding and other
            # spellings of one token, and raised (a 500) on the surrogates that stand for header
            # bytes that are not UTF-8.
            raise _unauthenticated(Detail.MALFORMED)
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        known = self._cache.get(digest)
        if known is not None:
            if time.time() < known.until and known.generation == known.issuer.generation:
                return known.principal
            del self._cache[digest]
        principal, until, issuer, generation = await self._verify(token)
        self._cache[digest] = _Verified(principal, until, issuer, generation)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def _issuer_of(self, token: str) -> JwtIssuer:
        if len(self._issuers) == 1:
            return next(iter(self._issuers.values()))
        unverified = jwt.decode(token, options={"verify_signature": False})
        issuer = self._issuers.get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
        if issuer is None:
            raise _unauthenticated(Detail.WRONG_ISSUER)
        return issuer

    async def _verify(self, token: str) -> tuple[Principal, float, JwtIssuer, int]:
        try:
            header = jwt.get_unverified_header(token)
            alg, kid = header.get("alg"), header.get("kid")
            if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
                raise _unauthenticated(Detail.MALFORMED)
            issuer = self._issuer_of(token)
            if alg not in issuer.algorithms:  # "none" is never on the list
                raise _unauthenticated(Detail.ALGORITHM)
            generation = issuer.generation
            keys = await issuer.keys(alg, kid)
            if not keys:
                raise _unauthenticated(Detail.UNKNOWN_KEY)
            claims = self._decode(token, issuer, alg, keys)
        except jwt_errors.PyJWTError as exc:
            raise _unauthenticated(_detail_of(exc)) from None
        refusal = claim_times_refusal(claims, time.time(), issuer.max_lifetime_s)
        if refusal is not None:
            raise _unauthenticated(refusal)
        subject = next((claims[c] for c in SUBJECT_CLAIMS if c in claims), None)
        client_id = self._subjects.get((issuer.name, subject)) if isinstance(subject, str) else None
        if client_id is None:
            raise _unauthenticated(Detail.UNKNOWN_SUBJECT)
        principal = Principal(client_id, "jwt", scopes_of(claims), kid)
        return principal, float(claims["exp"]) + issuer.leeway_s, issuer, generation

    @staticmethod
    def _decode(token: str, issuer: JwtIssuer, alg: str, keys: list[Any]) -> dict[str, Any]:
        """Try each candidate key (several only for a token without ``kid``)."""
        failure: jwt_errors.PyJWTError | None = None
        for key in keys:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=issuer.audience,
                    issuer=issuer.name,
                    leeway=issuer.leeway_s,
                    options=_DECODE_OPTIONS,
                )
            except jwt_errors.InvalidSignatureError as exc:
                failure = exc
        assert failure is not None
        raise failure


def build_jwt(ctx: AuthContext) -> JwtAuthenticator:
    config = ctx.config
    jwt_cfg = config.settings.auth.jwt
    issuers = []
    for cfg in jwt_cfg.issuers:
        keys: dict[str, Any] = {}
        if cfg.secret is not None:
            keys["secret"] = cfg.secret.get_secret_value().encode("utf-8")
        elif cfg.public_key_file:
            pem = config.resolve_path(cfg.public_key_file).read_bytes()
            keys["public_key"] = load_public_key(pem, cfg.algorithms)
        else:
            keys["jwks"] = ctx.services.jwks.cache_for(cfg)
        issuers.append(
            JwtIssuer(
                cfg.issuer,
                cfg.audience,
                frozenset(cfg.algorithms),
                cfg.leeway_s,
                max_lifetime_s=cfg.max_lifetime_s,
                **keys,
            )
        )
    subjects: dict[tuple[str, str], str] = {}
    for client in config.clients:
        if client.jwt_subject:
            for name in [client.jwt_issuer] if client.jwt_issuer else [i.name for i in issuers]:
                subjects[(name, client.jwt_subject)] = client.id
    return JwtAuthenticator(issuers, subjects, jwt_cfg.max_token_bytes)
