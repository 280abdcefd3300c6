"""Vonage signed webhooks (Messages API and others): ``Authorization: Bearer <JWT>``, HS256 with
the account's signature secret.

The token carries ``iat`` (it must be within the tolerance window) and ``payload_hash``, the hex
SHA-256 of the body: a body that does not hash to it is refused, and so is a body sent under a
token that has no ``payload_hash`` (the signature would not cover it).
"""

from __future__ import annotations

import hashlib

from gateway.callbacks import jws
from gateway.callbacks.base import BODY, SignatureError, SignedRequest, Verified, equal, one_header
from gateway.core.events import Detail

__all__ = ["LEEWAY_S", "VonageJwtVerifier", "verify_token"]

LEEWAY_S = 30  # clock skew allowed for iat in the future, exp and nbf


def verify_token(token: str, secret: bytes) -> dict:
    """The claims of a token Vonage signed (signature only; times are checked by the verifier)."""
    return jws.verify(token, secret, ("HS256",))


class VonageJwtVerifier:
    __slots__ = ("_secret", "_tolerance")

    def __init__(self, secret: bytes, tolerance_s: float) -> None:
        self._secret = secret
        self._tolerance = tolerance_s

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        authorization = one_header(request.headers, "Authorization")
        assert authorization is not None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SignatureError(Detail.MISSING_SIGNATURE)
        claims = verify_token(token.strip(), self._secret)
        iat = jws.number_claim(claims, "iat")
        if iat is None:
            raise SignatureError(Detail.MISSING_TIMESTAMP)
        if iat > now + LEEWAY_S or iat < now - self._tolerance:
            raise SignatureError(Detail.EXPIRED)
        exp = jws.number_claim(claims, "exp")
        nbf = jws.number_claim(claims, "nbf")
        if (exp is not None and exp <= now - LEEWAY_S) or (nbf is not None and nbf > now + LEEWAY_S):
            raise SignatureError(Detail.EXPIRED)
        payload_hash = claims.get("payload_hash")
        if payload_hash is None:
            if request.body:
                raise SignatureError(Detail.UNSIGNED_BODY)
        elif not isinstance(payload_hash, str) or not equal(
            hashlib.sha256(request.body).hexdigest(), payload_hash.lower()
        ):
            raise SignatureError(Detail.BODY_MISMATCH)
        return Verified(BODY, query_signed=False)
