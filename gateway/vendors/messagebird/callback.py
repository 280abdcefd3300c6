"""MessageBird ``MessageBird-Signature-JWT``: a JWT (HS256/384/512) signed with the account's
signing key, as MessageBird's own validator checks it.

Claims: ``iss`` must be ``MessageBird``; ``nbf`` and ``exp`` are required and checked with one
second of leeway; ``url_hash`` is the hex SHA-256 of the full URL called (scheme, host, path and
query, exactly as configured at MessageBird); ``payload_hash`` is the hex SHA-256 of the raw body
and must be present exactly when there is a body.
"""

from __future__ import annotations

import hashlib

from gateway.callbacks import jws
from gateway.callbacks.base import BODY, QUERY, SignatureError, SignedRequest, Verified, equal, one_header
from gateway.core.events import Detail

__all__ = ["ALGORITHMS", "HEADER", "LEEWAY_S", "MessageBirdVerifier", "check"]

HEADER = "MessageBird-Signature-JWT"
ALGORITHMS = ("HS256", "HS384", "HS512")
LEEWAY_S = 1


def check(token: str, secret: bytes, url: str, body: bytes, now: float) -> dict:
    """The claims of a valid signature for this URL and body at ``now``; raises otherwise."""
    claims = jws.verify(token, secret, ALGORITHMS)
    if claims.get("iss") != "MessageBird":
        raise SignatureError(Detail.BAD_ISSUER)
    nbf = jws.number_claim(claims, "nbf")
    exp = jws.number_claim(claims, "exp")
    if nbf is None or exp is None:
        raise SignatureError(Detail.MISSING_TIMESTAMP)
    if nbf > now + LEEWAY_S or exp <= now - LEEWAY_S:
        raise SignatureError(Detail.EXPIRED)
    url_hash = claims.get("url_hash")
    if not isinstance(url_hash, str) or not equal(hashlib.sha256(url.encode("utf-8")).hexdigest(), url_hash):
        raise SignatureError(Detail.URL_MISMATCH)
    payload_hash = claims.get("payload_hash")
    if payload_hash is not None and not isinstance(payload_hash, str):
        raise SignatureError(Detail.MALFORMED_TOKEN)
    if bool(body) != bool(payload_hash):
        raise SignatureError(Detail.BODY_MISMATCH)
    if body and not equal(hashlib.sha256(body).hexdigest(), payload_hash or ""):
        raise SignatureError(Detail.BODY_MISMATCH)
    return claims


class MessageBirdVerifier:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        token = one_header(request.headers, HEADER)
        assert token is not None
        check(token, self._secret, request.url, request.body, now)
        return Verified(BODY if request.body else QUERY, query_signed=True)  # url_hash: the whole URL
