"""How message bodies, numbers, paths and headers appear in logs.

The audit log must be useful to reviewers without ever holding a body, a recipient or a
credential in clear text (DESIGN.md, "Logs"). Everything here is pure and cheap: the
:class:`Redactor` is built once from config and called on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from urllib.parse import unquote, unquote_plus

__all__ = [
    "BODY_MODES",
    "RECIPIENT_MODES",
    "REDACTED",
    "Redactor",
    "hmac_hex",
    "key_id_for",
    "mask_digits",
    "mask_number",
]

REDACTED = "REDACTED"
MIN_HASH_KEY_BYTES = 32
BODY_MODES = frozenset({"hash", "redact", "mask", "drop"})
RECIPIENT_MODES = frozenset({"mask", "hash", "drop"})

# Query parameter names that carry credentials in the wild (vendor SDKs, legacy HTTP APIs).
SECRET_QUERY_NAMES = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "api_secret",
        "apisecret",
        "client_secret",
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "auth",
        "auth_token",
        "authorization",
        "sig",
        "signature",
        "x-api-key",
    }
)

# Header names (lowercase) whose values are credentials or signatures over credentials.
SECRET_HEADER_NAMES = frozenset(
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
        "x-auth-token",
        "x-twilio-signature",
        "x-plivo-signature-v2",
        "x-plivo-signature-v3",
        "x-messente-signature",
        "x-sinch-webhook-signature",
        "x-amz-security-token",
    }
)

_DIGIT = re.compile(r"\d")  # str pattern: matches every Unicode decimal digit (category Nd)
_KEY_ID_PREFIX = b"smsgw-key-id:"


def hmac_hex(key: bytes, text: str) -> str:
    """Keyed so that only a reviewer holding the key can link a log record to a known text."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def key_id_for(key: bytes) -> str:
    """Lets reviewers tell which key produced a hash after rotation, without revealing the key."""
    return "k" + hashlib.sha256(_KEY_ID_PREFIX + key).hexdigest()[:8]


#: A phone number in a path or query (``+3725…``, ``%2B3725…`` or bare digits): logged masked, so a
#: number in an unrouted URL (say a lookup API) never reaches a log in clear.
_NUMBER_LIKE = re.compile(r"(?:\+|%2[bB])?\d{7,}")


def _mask_match(match: re.Match[str]) -> str:
    return mask_number(match[0])


def mask_number(raw: str) -> str:
    """Keep country code and last digits for support work; a fixed filler hides the length."""
    if len(raw) < 9:
        return "****"
    return raw[:5] + "****" + raw[-2:]


def mask_digits(text: str) -> str:
    """OTP codes, account and card numbers are digits; the wording around them is kept."""
    return _DIGIT.sub("*", text)


def _is_secret(value: str, secrets: frozenset[str], plus: bool = False) -> bool:
    """Compares both the raw and the percent-decoded form: clients encode differently."""
    if value in secrets:
        return True
    if "%" in value or (plus and "+" in value):
        decoded = unquote_plus(value, errors="replace") if plus else unquote(value, errors="replace")
        return decoded in secrets
    return False


class Redactor:
    """Applies the configured log modes; validation happens here so a wrong one cannot exist."""

    __slots__ = (
        "_body_mode",
        "_hash_key",
        "_key_id",
        "_query_names",
        "_recipient_mode",
        "_secret_values",
    )

    def __init__(
        self,
        *,
        body_mode: str,
        recipient_mode: str,
        hash_key: bytes | None,
        key_id: str | None = None,
        secret_values: frozenset[str] = frozenset(),
        secret_query_names: frozenset[str] = frozenset(),
    ) -> None:
        if body_mode == "seal":
            raise ValueError('logging.body = "seal" is not supported yet')
        if body_mode not in BODY_MODES:
            raise ValueError(f"unknown logging.body mode {body_mode!r}; expected one of {sorted(BODY_MODES)}")
        if recipient_mode not in RECIPIENT_MODES:
            expected = sorted(RECIPIENT_MODES)
            raise ValueError(f"unknown logging.recipient mode {recipient_mode!r}; expected one of {expected}")
        key = bytes(hash_key) if hash_key is not None else None
        if "hash" in (body_mode, recipient_mode) and (key is None or len(key) < MIN_HASH_KEY_BYTES):
            raise ValueError(f"logging.hash_key must be at least {MIN_HASH_KEY_BYTES} bytes for hash mode")
        self._body_mode = body_mode
        self._recipient_mode = recipient_mode
        self._hash_key = key
        self._key_id = key_id if key_id is not None else (key_id_for(key) if key is not None else None)
        self._secret_values = frozenset(v for v in secret_values if v)
        self._query_names = SECRET_QUERY_NAMES | frozenset(n.lower() for n in secret_query_names)

    @property
    def body_mode(self) -> str:
        return self._body_mode

    @property
    def recipient_mode(self) -> str:
        return self._recipient_mode

    @property
    def key_id(self) -> str | None:
        return self._key_id

    def body(self, text: str | None) -> dict | None:
        """The audit record's ``body`` field (DESIGN.md, "Logs")."""
        if text is None:
            return None
        mode = self._body_mode
        if mode == "hash":
            assert self._hash_key is not None  # guaranteed by __init__
            return {
                "hmac_sha256": hmac_hex(self._hash_key, text),
                "key_id": self._key_id,
                "length": len(text),
            }
        if mode == "redact":
            return {"redacted": True, "length": len(text)}
        if mode == "mask":
            return {"masked": mask_digits(text)}
        return None

    def sender(self, text: str) -> str:
        """A sender ID as logged: bounded, and a number in it masked like a recipient."""
        return _NUMBER_LIKE.sub(_mask_match, text[:32])

    def recipients(self, items: Sequence[tuple[str, str | None]]) -> list[str] | None:
        """Uses the E.164 form when known so the same number always hashes the same way."""
        mode = self._recipient_mode
        if mode == "drop":
            return None
        if mode == "hash":
            assert self._hash_key is not None  # guaranteed by __init__
            key = self._hash_key
            return [hmac_hex(key, e164 or raw) for raw, e164 in items]
        return [mask_number(e164 or raw) for raw, e164 in items]

    def path(self, path: str, query_string: str = "") -> str:
        """Credentials ride in query strings and path segments of legacy vendor APIs."""
        if not query_string and "?" in path:
            path, _, query_string = path.partition("?")
        secrets = self._secret_values
        if secrets and "/" in path:
            segments = path.split("/")
            if any(_is_secret(s, secrets) for s in segments):
                path = "/".join(REDACTED if _is_secret(s, secrets) else s for s in segments)
        elif secrets and _is_secret(path, secrets):
            path = REDACTED
        path = _NUMBER_LIKE.sub(_mask_match, path)
        if not query_string:
            return path
        return path + "?" + _NUMBER_LIKE.sub(_mask_match, self._query(query_string))

    def _query(self, query_string: str) -> str:
        names = self._query_names
        secrets = self._secret_values
        out: list[str] = []
        for part in query_string.split("&"):
            name, eq, value = part.partition("=")
            if not eq:
                # A bare token ("?abc123") may itself be a credential.
                out.append(REDACTED if secrets and _is_secret(part, secrets, plus=True) else part)
                continue
            if unquote_plus(name, errors="replace").lower() in names or (
                secrets and _is_secret(value, secrets, plus=True)
            ):
                out.append(name + "=" + REDACTED)
            else:
                out.append(part)
        return "&".join(out)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Repeated headers (multidicts) are joined with ", " as HTTP allows, so none is lost."""
        secrets = self._secret_values
        out: dict[str, str] = {}
        seen: dict[str, str] = {}  # lowercase name -> first casing used in ``out``
        for name, value in headers.items():
            lower = name.lower()
            if lower in SECRET_HEADER_NAMES or (secrets and (value in secrets or value.strip() in secrets)):
                value = REDACTED
            first = seen.get(lower)
            if first is None:
                seen[lower] = name
                out[name] = value
            elif out[first] != REDACTED or value != REDACTED:
                out[first] = out[first] + ", " + value
        return out
