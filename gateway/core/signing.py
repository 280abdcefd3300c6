"""Sign requests to the gateway: RFC 9421 ``hmac-sha256`` with an RFC 9530 ``Content-Digest``.

For Python services that call the gateway; standard library only, so it can be copied into a
service that does not install smsgw. It is deliberately a separate implementation from the
gateway's verifier (which uses the ``http-message-signatures`` package): the tests check each
against the other.

    signer = Signer("billing-2026-11", os.environ["BILLING_HMAC"])

    # aiohttp: sign the exact bytes and URL you send
    body = urlencode({"To": "+37255512367", "From": "MyBank", "Body": "hello"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signer.headers("POST", url, body)}
    async with session.post(url, data=body, headers=headers) as response: ...

    # requests: the signer is an auth hook that signs the prepared request
    requests.post(url, data={"To": ..., "Body": ...}, auth=signer)

Every request gets a fresh ``nonce`` and ``created``: a signature is good once, for five minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ["COMPONENTS", "Signer", "content_digest", "sign", "signature_base", "target_uri"]

COMPONENTS: Final = ("@method", "@target-uri", "content-digest")
ALGORITHM: Final = "hmac-sha256"
LABEL: Final = "sig1"


def content_digest(body: bytes) -> str:
    """RFC 9530 ``Content-Digest`` with the SHA-256 of ``body``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def target_uri(url: str, allow_http: bool = False) -> str:
    """``@target-uri`` as the gateway rebuilds it: scheme and host lower-cased, the default port
    dropped, path and query exactly as written (sign the URL your client sends).

    ``allow_http``: the gateway's own alert POSTs may go to a plain-http internal service."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in (("https", "http") if allow_http else ("https",)) or not parts.hostname:
        raise ValueError("the URL must be absolute, https://HOST/PATH (the gateway speaks TLS only)")
    if "@" in parts.netloc:
        raise ValueError("the URL must not carry credentials")
    authority = parts.netloc.lower().removesuffix(":443" if scheme == "https" else ":80")
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{authority}{path}{query}"


def _sf_string(value: str, what: str) -> str:
    """An RFC 8941 String: printable ASCII, with ``"`` and ``\\`` escaped."""
    if not value or not all(" " <= c <= "~" for c in value):
        raise ValueError(f"{what} must be printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signature_params(created: int, key_id: str, nonce: str) -> str:
    components = " ".join(f'"{c}"' for c in COMPONENTS)
    return (
        f"({components});created={created};keyid={_sf_string(key_id, 'the key id')}"
        f';nonce={_sf_string(nonce, "the nonce")};alg="{ALGORITHM}"'
    )


def signature_base(method: str, uri: str, digest: str, params: str) -> bytes:
    """The RFC 9421 signature base: one line per covered component, then ``@signature-params``."""
    lines = [f'"@method": {method}', f'"@target-uri": {uri}', f'"content-digest": {digest}']
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode("ascii")


def sign(
    method: str,
    url: str,
    body: bytes,
    *,
    key_id: str,
    secret: str,
    created: int | None = None,
    nonce: str | None = None,
    allow_http: bool = False,
) -> dict[str, str]:
    """The three headers to send with this request: ``Content-Digest``, ``Signature-Input``,
    ``Signature``. The key is the UTF-8 bytes of ``secret`` (as ``smsgw keygen hmac`` prints it)."""
    method = method.upper()
    digest = content_digest(body)
    params = signature_params(
        int(time.time()) if created is None else created,
        key_id,
        secrets.token_urlsafe(24) if nonce is None else nonce,
    )
    base = signature_base(method, target_uri(url, allow_http), digest, params)
    mac = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).digest()
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(mac).decode('ascii')}:",
    }


class Signer:
    """A client's key: ``headers(...)`` for any HTTP client, and a ``requests`` auth hook."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id = key_id
        self._secret = secret

    def __repr__(self) -> str:  # never the secret
        return f"Signer(key_id={self.key_id!r})"

    def headers(self, method: str, url: str, body: bytes | str | None = b"") -> dict[str, str]:
        data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        return sign(method, url, data, key_id=self.key_id, secret=self._secret)

    def __call__(self, request: Any) -> Any:
        """``requests`` calls this with the prepared request: sign what will be sent."""
        body = request.body
        if body is not None and not isinstance(body, bytes | str):
            raise ValueError("a streamed body cannot be signed; pass bytes")
        request.headers.update(self.headers(request.method, request.url, body))
        return request
