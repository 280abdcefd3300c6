"""A vendor-neutral HMAC header: ``header`` holds ``prefix`` + the HMAC (``algorithm``) of the raw
body, in ``encoding`` (hex, compared case-insensitively, base64 or base64url).

For vendors whose callback signature is not built in (or a relay of your own). It covers the
body only: pair it with a route ``ip_allow`` when the vendor publishes its addresses.
"""

from __future__ import annotations

import hmac
from typing import Final

from gateway.callbacks.base import BODY, SignatureError, SignedRequest, Verified, decode_digest, one_header
from gateway.core.events import Detail

__all__ = ["ALGORITHMS", "ENCODINGS", "HmacHeaderVerifier"]

ALGORITHMS: Final = ("sha1", "sha256", "sha512")
ENCODINGS: Final = ("hex", "base64", "base64url")


class HmacHeaderVerifier:
    __slots__ = ("_algorithm", "_encoding", "_header", "_prefix", "_secret")

    def __init__(self, secret: bytes, header: str, algorithm: str, encoding: str, prefix: str) -> None:
        if algorithm not in ALGORITHMS or encoding not in ENCODINGS:
            raise ValueError("unknown algorithm or encoding")
        self._secret = secret
        self._header = header
        self._algorithm = algorithm
        self._encoding = encoding
        self._prefix = prefix

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        given = one_header(request.headers, self._header)
        assert given is not None
        if not given.startswith(self._prefix):
            raise SignatureError(Detail.BAD_SIGNATURE)
        raw = decode_digest(given[len(self._prefix) :], (self._encoding,))
        expected = hmac.new(self._secret, request.body, self._algorithm).digest()
        if raw is None or not hmac.compare_digest(expected, raw):
            raise SignatureError(Detail.BAD_SIGNATURE)
        return Verified(BODY, query_signed=False)
