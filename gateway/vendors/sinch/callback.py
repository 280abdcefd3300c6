"""Sinch SMS callbacks signed with HMAC: ``x-sinch-webhook-signature`` is the base64
HMAC-SHA256 of ``body.nonce.timestamp`` with the secret set on the service plan's callback.

``x-sinch-webhook-signature-algorithm`` must be ``HmacSHA256`` when given; the timestamp
(Unix seconds) must be within the tolerance window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from gateway.callbacks.base import BODY, SignatureError, SignedRequest, Verified, equal, one_header, within
from gateway.core.events import Detail

__all__ = ["SinchVerifier", "signature"]

SIGNATURE = "x-sinch-webhook-signature"
ALGORITHM = "x-sinch-webhook-signature-algorithm"
NONCE = "x-sinch-webhook-signature-nonce"
TIMESTAMP = "x-sinch-webhook-signature-timestamp"


def signature(secret: bytes, body: bytes, nonce: str, timestamp: str) -> str:
    signed = body + b"." + nonce.encode("utf-8") + b"." + timestamp.encode("utf-8")
    return base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


class SinchVerifier:
    __slots__ = ("_secret", "_tolerance")

    def __init__(self, secret: bytes, tolerance_s: float) -> None:
        self._secret = secret
        self._tolerance = tolerance_s

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        headers = request.headers
        given = one_header(headers, SIGNATURE)
        algorithm = one_header(headers, ALGORITHM, required=False)
        if algorithm is not None and algorithm.lower() != "hmacsha256":
            raise SignatureError(Detail.UNSUPPORTED_ALGORITHM)
        nonce = one_header(headers, NONCE)
        timestamp = one_header(headers, TIMESTAMP)
        assert given is not None and nonce is not None and timestamp is not None
        if not equal(signature(self._secret, request.body, nonce, timestamp), given):
            raise SignatureError(Detail.BAD_SIGNATURE)
        within(timestamp, now, self._tolerance)
        return Verified(BODY, query_signed=False)
