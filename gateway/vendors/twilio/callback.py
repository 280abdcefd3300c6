"""Twilio ``X-Twilio-Signature``: base64 HMAC (SHA-1, or SHA-256 when
``X-Twilio-Webhooks-Signature-Settings`` says so) over the URL followed by every POST parameter,
keys sorted, each key's values sorted and de-duplicated, written ``key + value``.

- A JSON (or any non-form) body is not in the signed string: Twilio then puts
  ``bodySHA256=<hex SHA-256 of the body>`` in the URL, and the body must hash to it. A non-form
  body without it is unsigned and refused.
- Twilio signs the URL inconsistently with and without an explicit port (``:443``/``:80``), so
  both forms are accepted, as the official validator does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from gateway.callbacks.base import (
    BODY,
    QUERY,
    SignatureError,
    SignedRequest,
    Verified,
    equal,
    form_pairs,
    grouped,
    is_form,
    one_header,
    query_pairs,
)
from gateway.core.events import Detail

__all__ = ["SIGNATURE_HEADER", "TwilioVerifier", "body_hash", "port_variants", "signature"]

SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
_DIGESTS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}


def signature(
    secret: bytes, url: str, params: Iterable[tuple[str, str]], algorithm: str = "HMAC_SHA1"
) -> str:
    """The header value Twilio sends for ``url`` and these POST parameters."""
    text = url
    for key, values in sorted(grouped(list(params)).items()):
        for value in sorted(set(values)):
            text += key + value
    return base64.b64encode(hmac.new(secret, text.encode("utf-8"), _DIGESTS[algorithm]).digest()).decode()


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def port_variants(url: str) -> tuple[str, str]:
    """``url`` without and with an explicit port (the scheme's default when none is written)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, url
    cut = len(rest)
    for mark in "/?#":
        index = rest.find(mark)
        if index != -1:
            cut = min(cut, index)
    netloc, tail = rest[:cut], rest[cut:]
    host, port = netloc, ""
    if netloc.startswith("["):  # [v6]:port
        close = netloc.find("]")
        host, port = netloc[: close + 1], netloc[close + 2 :] if netloc[close + 1 : close + 2] == ":" else ""
    elif ":" in netloc:
        host, _, port = netloc.rpartition(":")
    default = "443" if scheme.lower() == "https" else "80"
    return f"{scheme}://{host}{tail}", f"{scheme}://{host}:{port or default}{tail}"


def _algorithm(request: SignedRequest) -> str:
    """The digest the settings header names, read only where every reader agrees.

    Twilio's SDKs look for the text ``algorithm=HMAC_SHA256`` anywhere in the header; a reader that
    splits on commas and folds case would read ``&algorithm=HMAC_SHA256``, ``algorithm=hmac_sha256``
    or two ``algorithm`` entries differently. So the word may appear once, as one whole entry with
    one of the two exact values; any other mention of it is refused as malformed.
    """
    settings = one_header(request.headers, SETTINGS_HEADER, required=False)
    if settings is None or "algorithm" not in settings.lower():
        return "HMAC_SHA1"
    if settings.lower().count("algorithm") != 1:
        raise SignatureError(Detail.MALFORMED)
    for part in settings.split(","):
        name, eq, value = part.strip().partition("=")
        if name == "algorithm" and eq:
            if value not in _DIGESTS:
                raise SignatureError(Detail.UNSUPPORTED_ALGORITHM)
            return value
    raise SignatureError(Detail.MALFORMED)


class TwilioVerifier:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __call__(self, request: SignedRequest, now: float) -> Verified:
        given = one_header(request.headers, SIGNATURE_HEADER)
        assert given is not None
        algorithm = _algorithm(request)
        hashes = [v for k, v in query_pairs(request.url) if k == "bodySHA256"]
        params: list[tuple[str, str]] = []
        body_ok = True
        if hashes:
            if len(hashes) > 1:
                raise SignatureError(Detail.MALFORMED)
            body_ok = equal(body_hash(request.body), hashes[0].lower())
        elif request.body:
            if request.method != "POST" or not is_form(request.content_type):
                raise SignatureError(Detail.UNSIGNED_BODY)
            params = form_pairs(request.body)
        matches = [
            equal(signature(self._secret, url, params, algorithm), given)
            for url in port_variants(request.url)
        ]
        if not any(matches):
            raise SignatureError(Detail.BAD_SIGNATURE)
        if not body_ok:
            raise SignatureError(Detail.BODY_MISMATCH)
        # Twilio signs the whole URL: its fields are in the body, or in the query of a GET.
        return Verified(BODY if request.body else QUERY, query_signed=True)
