"""Messente ``X-Messente-Signature``: HMAC-SHA256 of the raw body, keyed with the API password
(delivery reports) or the inbound Shared Secret (inbound messages).

Messente does not say whether the digest is sent as hex or base64, so either is accepted: both
carry the same 32 bytes, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

from gateway.callbacks.base import BODY, SignatureError, SignedRequest, Verified, decode_digest, one_header
from gateway.core.events import Detail

__all__ = ["HEADER", "MessenteVerifier", "digest"]

HEADER = "X-Messente-Signature"


def digest(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()


class MessenteVerifier:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        given = one_header(request.headers, HEADER)
        assert given is not None
        raw = decode_digest(given, ("hex", "base64")) if len(given) in (64, 44) else None
        if raw is None or not hmac.compare_digest(digest(self._secret, request.body), raw):
            raise SignatureError(Detail.BAD_SIGNATURE)
        return Verified(BODY, query_signed=False)
