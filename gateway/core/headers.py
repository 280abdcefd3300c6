"""Header names with a meaning for security: one list for the proxy and the log redactor.

A credential header a client sends is meant for the gateway and must never reach the vendor or a
log; a header that describes the client's network, or asks a server to reroute the request, must
never reach the vendor either. Names are compared in lower case with ``_`` read as ``-``: CGI-style
servers (WSGI, PHP, many API frameworks) fold both to the same variable, so ``X_Api_Key`` is read as
``X-Api-Key`` somewhere down the line.
"""

from __future__ import annotations

import re

__all__ = [
    "CLIENT_NETWORK_HEADERS",
    "CREDENTIAL_HEADERS",
    "NOT_CREDENTIAL_HEADERS",
    "is_client_network_header",
    "is_credential_header",
]

#: Credentials, or signatures made with one (lower case). Names ending in a credential word are
#: caught by :func:`is_credential_header` too; this list holds those the suffix rule misses and the
#: well-known ones, so a reader sees them. Each vendor package declares the headers its callbacks
#: are signed in (``Vendor.signature_headers``); the suffix rule covers them, and a test holds
#: every declared one to it, so this module names no vendor.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "signature",
        "signature-input",
        "x-api-key",
        "api-key",
        "apikey",
        "x-apikey",
        "x-auth-token",
        "api-token",
        "x-access-token",
        "x-amz-security-token",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        # webhook signature conventions (Standard Webhooks, GitHub-style HMAC)
        "webhook-signature",
        "x-hub-signature",
        "x-hub-signature-256",
    }
)

#: Names the suffix rule would catch that are not credentials: ``Idempotency-Key`` is the client's
#: retry handle (the gateway reads it and never forwards it; it is safe to log).
NOT_CREDENTIAL_HEADERS = frozenset({"idempotency-key"})

#: The last word of a name that carries a credential (``X-Csrf-Token``, ``X-Goog-Api-Key``,
#: ``Client-Secret``, ``X-Original-Authorization``...), or the whole name being that word; it may be
#: followed by the version or algorithm tags vendors add (``-V3``, ``-256``, ``-JWT``, ``-Ed25519``,
#: ``-Ma-V2`` for a main account), but not by another word (``X-Signature-Version`` is no secret).
_CREDENTIAL_WORD = re.compile(
    r"(?:^|[-.])(?:token|key|apikey|secret|signature|password|passwd|auth|authorization|credentials?|cookie)"
    r"(?:-(?:ma|v\d+|\d+|jwt|ed25519))*$"
)

#: The client's own network details, and requests to reroute or re-method the request (lower case).
CLIENT_NETWORK_HEADERS = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "fastly-client-ip",
        "via",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-original-uri",
        "x-rewrite-url",
        "x-original-host",
    }
)

_FORWARDED_PREFIX = "x-forwarded-"


def _normal(name: str) -> str:
    lower = name.lower()
    return lower.replace("_", "-") if "_" in lower else lower


def is_credential_header(name: str) -> bool:
    """True for a header whose value is a credential or a signature made with one."""
    lower = _normal(name)
    if lower in CREDENTIAL_HEADERS:
        return True
    if lower in NOT_CREDENTIAL_HEADERS:
        return False
    return _CREDENTIAL_WORD.search(lower) is not None


def is_client_network_header(name: str) -> bool:
    """True for a header that describes the client's network or reroutes the request (every
    ``X-Forwarded-*`` included): never for the vendor's eyes."""
    lower = _normal(name)
    return lower in CLIENT_NETWORK_HEADERS or lower.startswith(_FORWARDED_PREFIX)
