"""Vonage signed SMS callbacks: the ``sig`` parameter over every other parameter.

The signed string is ``&key=value`` for each parameter but ``sig``, keys sorted, with ``&`` and
``=`` inside values replaced by ``_``. The dashboard offers five algorithms: ``md5-hash`` (MD5 of
the string followed by the secret; the dashboard's default), ``hmac-md5``, ``hmac-sha1``,
``hmac-sha256``, ``hmac-sha512`` (keyed with the signature secret). The hex output is compared
case-insensitively. The signed ``timestamp`` parameter must be within the tolerance window.

Parameters come from the query (GET), a form body, or a flat JSON object (POST). A parameter
given twice is refused: the signature covers one value, and a reader could take the other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Final

from gateway.callbacks.base import (
    BODY,
    QUERY,
    SignatureError,
    SignedRequest,
    Verified,
    equal,
    form_pairs,
    is_form,
    is_json,
    query_pairs,
    single_valued,
    within,
)
from gateway.core.events import Detail

__all__ = ["ALGORITHMS", "VonageSigVerifier", "params_of", "signature", "signing_string"]

ALGORITHMS: Final = ("md5-hash", "hmac-md5", "hmac-sha1", "hmac-sha256", "hmac-sha512")
_HMAC = {"hmac-md5": "md5", "hmac-sha1": "sha1", "hmac-sha256": "sha256", "hmac-sha512": "sha512"}


def signing_string(params: Mapping[str, str]) -> str:
    return "".join(
        f"&{key}={params[key].replace('&', '_').replace('=', '_')}" for key in sorted(params) if key != "sig"
    )


def signature(secret: bytes, params: Mapping[str, str], algorithm: str = "md5-hash") -> str:
    """Lowercase hex, as Vonage sends it in ``sig``."""
    text = signing_string(params).encode("utf-8")
    if algorithm == "md5-hash":
        return hashlib.md5(text + secret, usedforsecurity=False).hexdigest()
    return hmac.new(secret, text, _HMAC[algorithm]).hexdigest()


def signs_query(request: SignedRequest) -> bool:
    """Vonage signs the query of a GET (or of a request without a body), else the body only."""
    return request.method == "GET" or not request.body


def params_of(request: SignedRequest) -> dict[str, str]:
    """The parameters Vonage signed: the query of a GET, else the form or flat JSON body."""
    if signs_query(request):
        return single_valued(query_pairs(request.url))
    if is_form(request.content_type):
        return single_valued(form_pairs(request.body))
    if is_json(request.content_type):
        try:
            doc = json.loads(request.body, object_pairs_hook=lambda pairs: single_valued(_flat(pairs)))
        except (ValueError, RecursionError):
            raise SignatureError(Detail.MALFORMED) from None
        if not isinstance(doc, dict):
            raise SignatureError(Detail.MALFORMED)
        return doc
    raise SignatureError(Detail.UNSIGNED_BODY)


def _flat(pairs: list[tuple[str, object]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise SignatureError(Detail.MALFORMED)  # nested values are not in Vonage's signed string
        out.append((key, str(value)))
    return out


class VonageSigVerifier:
    __slots__ = ("_algorithm", "_secret", "_tolerance")

    def __init__(self, secret: bytes, algorithm: str, tolerance_s: float) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown Vonage signature algorithm {algorithm!r}")
        self._secret = secret
        self._algorithm = algorithm
        self._tolerance = tolerance_s

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        params = params_of(request)
        given = params.get("sig", "").lower()  # as the SDK reads it: no space around the hex
        if not given:
            raise SignatureError(Detail.MISSING_SIGNATURE)
        if not equal(signature(self._secret, params, self._algorithm), given):
            raise SignatureError(Detail.BAD_SIGNATURE)
        timestamp = params.get("timestamp")
        if timestamp is None:
            raise SignatureError(Detail.MISSING_TIMESTAMP)
        within(timestamp, now, self._tolerance)
        in_query = signs_query(request)
        return Verified(QUERY if in_query else BODY, query_signed=in_query)
