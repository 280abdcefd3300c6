"""How message bodies, numbers, paths and headers appear in logs.

The audit log must be useful to reviewers without ever holding a body, a recipient or a
credential in clear text (docs/logs.md). Everything here is pure and cheap: the
:class:`Redactor` is built once from config and called on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from hashlib import blake2b
from secrets import token_bytes
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, unquote_plus

from gateway.core.headers import is_credential_header

if TYPE_CHECKING:
    from gateway.core.seal import SealKey

__all__ = [
    "BODY_MODES",
    "MAX_LOGGED_CHARS",
    "MAX_SENDER_CHARS",
    "RECIPIENT_MODES",
    "REDACTED",
    "Redactor",
    "escape_unencodable",
    "field_name_forms",
    "hmac_hex",
    "key_id_for",
    "mask_digits",
    "mask_number",
]

REDACTED = "REDACTED"
MIN_HASH_KEY_BYTES = 32
BODY_MODES = frozenset({"hash", "redact", "mask", "seal", "drop"})
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

_DIGIT = re.compile(r"\d")  # str pattern: matches every Unicode decimal digit (category Nd)
_KEY_ID_PREFIX = b"smsgw-key-id:"


def hmac_hex(key: bytes, text: str) -> str:
    """Keyed so that only a reviewer holding the key can link a log record to a known text."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def key_id_for(key: bytes) -> str:
    """Lets reviewers tell which key produced a hash after rotation, without revealing the key."""
    return "k" + hashlib.sha256(_KEY_ID_PREFIX + key).hexdigest()[:8]


#: Logged paths, queries and header values are cut to this many characters (after scrubbing), so
#: one request cannot write an unbounded log line.
MAX_LOGGED_CHARS = 512
#: The sender in audit records: long enough for any alphanumeric sender, short code or E.164 number.
MAX_SENDER_CHARS = 32
TRUNCATED = "…"
#: Scrubbed paths remembered per redactor (at most 512 characters each), least recently used first out.
_PATHS_KEPT = 1024
_PATH_KEY = token_bytes(32)
_PATH_HASH = blake2b(key=_PATH_KEY, digest_size=16)  # keyed once; each path hashes with a copy

# A phone number as people and URLs write it: 7 or more digits, neighbours separated by nothing, one
# separator, or a pair like the ``) `` of ``(555) 123-4567``; separators are space, ``-``, ``.``,
# ``(``, ``)``, ``+``, raw or percent-encoded; a digit may be percent-encoded too (``%37`` is ``7``).
# Digits and separators are disjoint and each repetition starts with a digit, so matching is linear
# in the input (no nested ambiguity to backtrack into).
_D = r"(?:\d|%3\d)"
_SEP = r"(?:[ \-.()+]|%2[0bBdDeE89])"
#: A phone number in a path, query, header or sender: logged masked, so a number in an unrouted URL
#: (say a lookup API) never reaches a log in clear.
_NUMBER_LIKE = re.compile(rf"(?:\+|%2[bB])?{_D}(?:{_SEP}{{0,2}}{_D}){{6,}}")
#: An ISO date is 8 digits, but no number: ``/2010-04-01/`` in Twilio's paths, and the basic form
#: when a time follows (``X-Amz-Date: 20260101T000000Z``). Kept; a bare ``20260101`` is masked.
_ISO_DATE = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")
_ISO_BASIC_DATE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")

#: Lone surrogates: how aiohttp hands over header bytes that are not UTF-8 (``surrogateescape``).
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_QUERY_SEPARATOR = re.compile(r"([&;])")  # capturing: the separators are kept in the output
_NAME_CUT = re.compile(r"[\[.]")
#: Query names whose value names an account (legacy vendor APIs take ``username`` and ``password``
#: in the query; SMSAPI's and Messente's do): half a credential, and often an e-mail address.
_ACCOUNT_NAMES: Final = frozenset({"username", "user", "login", "email", "account"})


def _is_date(match: re.Match[str]) -> bool:
    text = match[0]
    if _ISO_DATE.fullmatch(text):
        return True
    end = match.end()
    return match.string[end : end + 1] == "T" and _ISO_BASIC_DATE.fullmatch(text) is not None


def _mask_match(match: re.Match[str]) -> str:
    return match[0] if _is_date(match) else mask_number(match[0])


def _mask_numbers(text: str) -> str:
    return _NUMBER_LIKE.sub(_mask_match, text)


def _has_number(text: str) -> bool:
    return any(not _is_date(m) for m in _NUMBER_LIKE.finditer(text))


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def escape_unencodable(text: str) -> str:
    """Bytes that were not UTF-8 become ``\\xNN``, so JSON encoding and ``.encode()`` never fail."""
    if text.isascii():
        return text
    return _SURROGATE.sub(_escape_surrogate, text)


def _cap(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def mask_number(raw: str) -> str:
    """Keep country code and last digits for support work; a fixed filler hides the length."""
    if len(raw) < 9:
        return "****"
    return raw[:5] + "****" + raw[-2:]


def mask_digits(text: str) -> str:
    """OTP codes, account and card numbers are digits; the wording around them is kept."""
    return _DIGIT.sub("*", text)


def field_name_forms(name: str) -> tuple[str, str]:
    """The name a lenient parser reads, as ``(whole, base)``: percent-decoded (twice, for a
    framework that decodes again), NULs removed, surrounding space stripped, case-folded; ``base``
    is cut at the first ``[`` or ``.`` (PHP and qs read ``to[]``, ``to[0]`` and ``to.x`` as ``to``)."""
    if "%" in name or "+" in name:
        name = unquote_plus(name, errors="replace")
        if "%" in name:
            name = unquote(name, errors="replace")
    if "\x00" in name:
        name = name.replace("\x00", "")
    whole = name.strip().casefold()
    cut = _NAME_CUT.search(whole)
    return whole, (whole[: cut.start()].strip() if cut else whole)


class Redactor:
    """Applies the configured log modes; validation happens here so a wrong one cannot exist."""

    __slots__ = (
        "_body_mode",
        "_key_id",
        "_mac",
        "_paths",
        "_query_names",
        "_recipient_mode",
        "_seal_key",
        "_secret_values",
        "_secrets",
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
        seal_key: SealKey | None = None,
    ) -> None:
        if body_mode == "seal" and seal_key is None:
            raise ValueError('logging.body = "seal" needs the reviewers\' public key (seal_public_key_file)')
        if body_mode not in BODY_MODES:
            raise ValueError(f"unknown logging.body mode {body_mode!r}; expected one of {sorted(BODY_MODES)}")
        if recipient_mode not in RECIPIENT_MODES:
            expected = sorted(RECIPIENT_MODES)
            raise ValueError(f"unknown logging.recipient mode {recipient_mode!r}; expected one of {expected}")
        key = bytes(hash_key) if hash_key is not None else None
        if "hash" in (body_mode, recipient_mode) and (key is None or len(key) < MIN_HASH_KEY_BYTES):
            raise ValueError(f"logging.hash_key must be at least {MIN_HASH_KEY_BYTES} bytes for hash mode")
        self._body_mode = body_mode
        self._seal_key = seal_key if body_mode == "seal" else None
        self._recipient_mode = recipient_mode
        #: Keyed once: each hash starts from a copy (``hmac_hex``'s result, without keying again).
        self._mac = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None
        self._key_id = key_id if key_id is not None else (key_id_for(key) if key is not None else None)
        self._secret_values = frozenset(v for v in secret_values if v)
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(self._secret_values, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        names: set[str] = set()
        for name in SECRET_QUERY_NAMES | secret_query_names:
            names.update(field_name_forms(name))
        self._query_names = frozenset(names - {""})
        self._paths: OrderedDict[bytes, str] = OrderedDict()

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
        """The audit record's ``body`` field (docs/logs.md)."""
        if text is None:
            return None
        mode = self._body_mode
        if mode == "hash":
            return {
                "hmac_sha256": self._hmac_hex(text),
                "key_id": self._key_id,
                "length": len(text),
            }
        if mode == "redact":
            return {"redacted": True, "length": len(text)}
        if mode == "mask":
            return {"masked": mask_digits(text)}
        if mode == "seal":
            assert self._seal_key is not None  # guaranteed by __init__
            return {"sealed": self._seal_key.seal(text)}
        return None

    def _hmac_hex(self, text: str) -> str:
        assert self._mac is not None  # guaranteed by __init__ for the hash modes
        mac = self._mac.copy()
        mac.update(text.encode("utf-8"))
        return mac.hexdigest()

    def secret(self, text: str) -> dict | None:
        """A code or other secret-bearing field: as a body, except that ``mask`` hides it whole
        (a code's letters are as secret as its digits)."""
        if self._body_mode == "mask":
            return {"redacted": True, "length": len(text)}
        return self.body(text)

    def recipients(self, items: Sequence[tuple[str, str | None]]) -> list[str] | None:
        """Uses the E.164 form when known so the same number always hashes the same way."""
        mode = self._recipient_mode
        if mode == "drop":
            return None
        if mode == "hash":
            return [self._hmac_hex(e164 or raw) for raw, e164 in items]
        return [mask_number(e164 or raw) for raw, e164 in items]

    def sender(self, text: str | None) -> str | None:
        """The audit record's ``sender``: a client may put a phone number there, or anything long."""
        if text is None:
            return None
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        return _cap(_mask_numbers(escape_unencodable(text)), MAX_SENDER_CHARS)

    def path(self, path: str, query_string: str = "") -> str:
        """Credentials ride in query strings and path segments of legacy vendor APIs; numbers and
        message fields turn up there too. Scrubbed first, then cut, so a cut never half-shows one.

        Clients send the same few paths again and again, and scrubbing one is regex work (about
        12 µs for a Twilio path): the scrubbed form is remembered by a keyed hash of the raw one,
        so no raw path (which may hold a number or a credential) outlives its request.
        """
        if len(path) + len(query_string) > MAX_LOGGED_CHARS:
            return self._path(path, query_string)
        digest = _PATH_HASH.copy()
        digest.update(path.encode("utf-8", "surrogatepass"))
        digest.update(b"\xff")  # never in UTF-8: the two parts cannot run into each other
        digest.update(query_string.encode("utf-8", "surrogatepass"))
        key = digest.digest()
        paths = self._paths
        logged = paths.get(key)
        if logged is None:
            logged = paths[key] = self._path(path, query_string)
            if len(paths) > _PATHS_KEPT:
                paths.popitem(last=False)
        else:
            paths.move_to_end(key)
        return logged

    def _path(self, path: str, query_string: str) -> str:
        if not query_string and "?" in path:
            path, _, query_string = path.partition("?")
        path = _cap(_mask_numbers(self._scrub_path(escape_unencodable(path))))
        if not query_string:
            return path
        query = self._query(escape_unencodable(query_string))
        return path + "?" + _cap(_mask_numbers(query))

    def _scrub_path(self, path: str) -> str:
        secrets = self._secrets
        if secrets is None:
            return path
        path = secrets.sub(REDACTED, path)
        if "%" in path:  # an encoded secret is found segment by segment (``%2F`` stays in one)
            segments = path.split("/")
            if any("%" in s and secrets.search(unquote(s, errors="replace")) for s in segments):
                path = "/".join(
                    REDACTED if "%" in s and secrets.search(unquote(s, errors="replace")) else s
                    for s in segments
                )
        return path

    def _holds_secret(self, text: str) -> bool:
        """Raw or form-decoded: clients encode differently."""
        secrets = self._secrets
        if secrets is None or not text:
            return False
        if secrets.search(text) is not None:
            return True
        if "%" not in text and "+" not in text:
            return False
        return secrets.search(unquote_plus(text, errors="replace")) is not None

    def _is_secret_name(self, name: str) -> bool:
        whole, base = field_name_forms(name)
        names = self._query_names
        return (
            base in names
            or whole in names
            or base in _ACCOUNT_NAMES
            or is_credential_header(base)
            or (whole != base and is_credential_header(whole))
        )

    def _query(self, query_string: str) -> str:
        # ``;`` separates parameters for many servers (and Python's own parsers before 3.10).
        parts = _QUERY_SEPARATOR.split(query_string)
        for i in range(0, len(parts), 2):  # odd indexes hold the separators
            part = parts[i]
            if not part:
                continue
            name, eq, value = part.partition("=")
            if self._holds_secret(name):  # a bare token ("?abc123") may itself be a credential
                parts[i] = REDACTED
            elif eq and (self._is_secret_name(name) or self._holds_secret(value)):
                parts[i] = name + "=" + REDACTED
        return "".join(parts)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Debug logging of request headers. Repeated headers (multidicts) are joined with ", " as
        HTTP allows, so none is lost; each logged value is escaped and cut to a bounded length."""
        values: dict[str, list[str]] = {}
        names: dict[str, str] = {}  # lowercase name -> first casing seen
        for name, value in headers.items():
            if is_credential_header(name) or self._holds_secret(value) or _has_number(value):
                value = REDACTED
            else:
                value = _cap(escape_unencodable(value))
            lower = name.lower()
            seen = values.get(lower)
            if seen is None:
                names[lower] = escape_unencodable(name)
                values[lower] = [value]
            else:
                seen.append(value)
        out: dict[str, str] = {}
        for lower, items in values.items():
            if len(items) == 1:
                out[names[lower]] = items[0]
            elif all(v == REDACTED for v in items):
                out[names[lower]] = REDACTED
            else:
                out[names[lower]] = _cap(", ".join(items))
        return out
