"""HMAC-signed JWTs (HS256/384/512) as the vendors send them, checked by PyJWT's JWS layer.

PyJWT decodes the segments, checks the algorithm against the caller's list and compares the HMAC
in constant time. Only its signature layer is used: the claims' times are checked by the schemes
against the ``now`` they are given, not by the library's clock. The algorithms the caller may name
are fixed here to the three HMAC ones, so ``none`` and every asymmetric algorithm are refused
whatever the header says, and a token cannot pick how it is checked.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Final

from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.exceptions import InvalidAlgorithmError, InvalidKeyError, InvalidSignatureError, PyJWTError

from gateway.callbacks.base import SignatureError
from gateway.core.events import Detail

__all__ = ["HMAC_ALGORITHMS", "MAX_TOKEN", "number_claim", "sign", "verify"]

MAX_TOKEN = 8192
HMAC_ALGORITHMS: Final = ("HS256", "HS384", "HS512")


class _VendorKeyHMAC(HMACAlgorithm):
    """PyJWT's HMAC, without its short-key warning: the vendor chose the key, and a warning per
    callback would only fill the log."""

    def check_key_length(self, key: bytes) -> str | None:
        return None


def _hmac_only() -> PyJWS:
    """A JWS checker that knows the HMAC algorithms and nothing else (not even ``none``)."""
    jws = PyJWS(algorithms=())
    for name, digest in zip(
        HMAC_ALGORITHMS, (HMACAlgorithm.SHA256, HMACAlgorithm.SHA384, HMACAlgorithm.SHA512), strict=True
    ):
        jws.register_algorithm(name, _VendorKeyHMAC(digest))
    return jws


_JWS: Final = _hmac_only()


def _object(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise SignatureError(Detail.MALFORMED_TOKEN) from None
    if not isinstance(doc, dict):
        raise SignatureError(Detail.MALFORMED_TOKEN)
    return doc


def verify(token: str, secret: bytes, algorithms: Collection[str]) -> dict[str, Any]:
    """The claims of a token signed with ``secret`` by one of ``algorithms``; raises otherwise.

    Refusals: ``unsupported_algorithm`` (an ``alg`` not in ``algorithms``, or not HMAC),
    ``bad_signature``, ``malformed_token`` (anything that is not a compact JWS of a JSON object).
    """
    if len(token) > MAX_TOKEN or not token.isascii():
        raise SignatureError(Detail.MALFORMED_TOKEN)
    try:
        decoded = _JWS.decode_complete(token, secret, algorithms=list(algorithms))
    except InvalidAlgorithmError:
        raise SignatureError(Detail.UNSUPPORTED_ALGORITHM) from None
    except (InvalidSignatureError, InvalidKeyError):  # a key PyJWT will not use verifies nothing
        raise SignatureError(Detail.BAD_SIGNATURE) from None
    except PyJWTError:
        raise SignatureError(Detail.MALFORMED_TOKEN) from None
    return _object(decoded["payload"])


def sign(claims: dict[str, Any], secret: bytes, algorithm: str = "HS256") -> str:
    """A token as the vendors make them (tests and ``smsgw`` tooling)."""
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return _JWS.encode(payload, secret, algorithm, headers={"typ": "JWT"})


def number_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SignatureError(Detail.MALFORMED_TOKEN)
    return float(value)
