"""Plivo callback signatures, V2 (messaging) and V3 (voice/XML applications).

V2: ``X-Plivo-Signature-V2`` (or ``-Ma-V2``, made with the main account's token) is the base64
HMAC-SHA256 of ``scheme://host/path`` followed by ``X-Plivo-Signature-V2-Nonce``. **Neither the
query nor the body is signed**, so a V2 signature proves only that Plivo called this URL with
this nonce: the gateway binds each nonce to the first body it came with (``Verified.replay_nonce``),
so a captured signature cannot carry another body.

V3: ``X-Plivo-Signature-V3`` (several values may be comma-separated) is the base64 HMAC-SHA256 of
``URL.nonce``, where for a POST the URL's query is sorted and the sorted body parameters follow
(``base?k=v&k2=v2.`` + ``key+value``...), and for a GET every parameter is in the sorted query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlparse, urlunparse

from gateway.callbacks.base import (
    BODY,
    NOWHERE,
    QUERY,
    SignatureError,
    SignedRequest,
    Verified,
    equal,
    form_pairs,
    grouped,
    is_form,
    one_header,
)
from gateway.core.events import Detail

__all__ = ["PlivoV2Verifier", "PlivoV3Verifier", "v2_signature", "v3_base_url", "v3_signature"]

V2_HEADERS = ("X-Plivo-Signature-V2", "X-Plivo-Signature-Ma-V2")
V2_NONCE = "X-Plivo-Signature-V2-Nonce"
V3_HEADERS = ("X-Plivo-Signature-V3", "X-Plivo-Signature-Ma-V3")
V3_NONCE = "X-Plivo-Signature-V3-Nonce"


def _b64_hmac(secret: bytes, text: str) -> str:
    return base64.b64encode(hmac.new(secret, text.encode("utf-8"), hashlib.sha256).digest()).decode()


def _base(url: str) -> str:
    parts = urlparse(url)
    return urlunparse((parts.scheme, parts.netloc, parts.path, "", "", ""))


def v2_signature(secret: bytes, url: str, nonce: str) -> str:
    return _b64_hmac(secret, _base(url) + nonce)


def _sorted_query(params: Mapping[str, Sequence[str]]) -> str:
    return "&".join("&".join(f"{key}={value}" for value in sorted(params[key])) for key in sorted(params))


def _sorted_params(params: Mapping[str, Sequence[str]]) -> str:
    return "".join("".join(f"{key}{value}" for value in sorted(params[key])) for key in sorted(params))


def v3_base_url(method: str, url: str, params: Mapping[str, Sequence[str]]) -> str:
    """The string Plivo signs before ``.nonce``; ``params`` are the POST (or extra GET) parameters."""
    base = _base(url)
    query = parse_qs(urlparse(url).query, keep_blank_values=True)
    if method.upper() == "GET":
        merged = {**params, **query}
        text = _sorted_query(merged)
        return base + ("?" + text if text else "")
    text = _sorted_query(query)
    if text or params:
        base += "?" + text
    if text and params:
        base += "."
    return base + _sorted_params(params)


def v3_signature(
    secret: bytes, method: str, url: str, params: Mapping[str, Sequence[str]], nonce: str
) -> str:
    return _b64_hmac(secret, f"{v3_base_url(method, url, params)}.{nonce}")


class PlivoV2Verifier:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        given = [v for name in V2_HEADERS if (v := one_header(request.headers, name, required=False))]
        if not given:
            raise SignatureError(Detail.MISSING_SIGNATURE)
        nonce = one_header(request.headers, V2_NONCE)
        assert nonce is not None
        expected = v2_signature(self._secret, request.url, nonce)
        if not any([equal(expected, value) for value in given]):
            raise SignatureError(Detail.BAD_SIGNATURE)
        return Verified(NOWHERE, query_signed=False, replay_nonce=nonce)


class PlivoV3Verifier:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        given = [v for name in V3_HEADERS if (v := one_header(request.headers, name, required=False))]
        if not given:
            raise SignatureError(Detail.MISSING_SIGNATURE)
        nonce = one_header(request.headers, V3_NONCE)
        assert nonce is not None
        params: dict[str, list[str]] = {}
        if request.body:
            if request.method != "POST" or not is_form(request.content_type):
                raise SignatureError(Detail.UNSIGNED_BODY)
            params = grouped(form_pairs(request.body))
        expected = v3_signature(self._secret, request.method, request.url, params, nonce)
        candidates = [part.strip() for value in given for part in value.split(",")]
        if not any([equal(expected, candidate) for candidate in candidates]):
            raise SignatureError(Detail.BAD_SIGNATURE)
        return Verified(BODY if request.body else QUERY, query_signed=True)
