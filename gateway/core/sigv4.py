"""AWS Signature Version 4, checked on requests that boto3 sends to the gateway.

Pure functions over the request's parts (no I/O), so they are tested against signatures that
botocore makes. The gateway signs its own upstream requests with botocore itself
(``gateway/transport/credentials.py``); this module only verifies what clients send.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

__all__ = ["ALGORITHM", "SigV4Header", "canonical_request", "parse_authorization", "signature"]

ALGORITHM: Final = "AWS4-HMAC-SHA256"
_CREDENTIAL: Final = re.compile(
    r"(?P<key>[A-Za-z0-9+/=_-]{1,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]{1,32})/"
    r"(?P<service>[a-z0-9-]{1,32})/aws4_request",
    re.ASCII,
)
_SIGNED_HEADERS: Final = re.compile(r"[a-z0-9-]+(?:;[a-z0-9-]+)*", re.ASCII)
_HEX_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}", re.ASCII)
_AMZ_DATE: Final = re.compile(r"\d{8}T\d{6}Z", re.ASCII)


@dataclass(frozen=True, slots=True)
class SigV4Header:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(value: str) -> SigV4Header | None:
    """None for anything that is not exactly one well-formed SigV4 header."""
    scheme, _, rest = value.partition(" ")
    if scheme != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, val = item.strip().partition("=")
        if not eq or name in parts:
            return None
        parts[name] = val
    if set(parts) != {"Credential", "SignedHeaders", "Signature"}:
        return None
    credential = _CREDENTIAL.fullmatch(parts["Credential"])
    if (
        credential is None
        or not _SIGNED_HEADERS.fullmatch(parts["SignedHeaders"])
        or not _HEX_SIGNATURE.fullmatch(parts["Signature"])
    ):
        return None
    signed = tuple(parts["SignedHeaders"].split(";"))
    if list(signed) != sorted(set(signed)):
        return None
    return SigV4Header(
        credential["key"],
        credential["date"],
        credential["region"],
        credential["service"],
        signed,
        parts["Signature"],
    )


def amz_time(value: str) -> datetime | None:
    if not _AMZ_DATE.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _canonical_query(raw_query: str) -> str:
    # As botocore builds it from a URL whose query is already encoded.
    if not raw_query:
        return ""
    pairs = [pair.partition("=")[::2] for pair in raw_query.split("&")]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, Iterable[str]]],
    payload_sha256: str,
) -> str:
    """``headers``: each signed header's lower-case name and its values, in any order."""
    lines = []
    names = []
    for name, values in sorted(headers):
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
        names.append(name)
    return "\n".join(
        [
            method.upper(),
            quote(raw_path, safe="/~"),
            _canonical_query(raw_query),
            "\n".join(lines) + "\n",
            ";".join(names),
            payload_sha256,
        ]
    )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signature(secret: str, header: SigV4Header, amz_date: str, canonical: str) -> str:
    """The hex signature a holder of ``secret`` makes over ``canonical``."""
    to_sign = "\n".join(
        [ALGORITHM, amz_date, header.scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    key = _hmac(("AWS4" + secret).encode("utf-8"), header.date)
    for part in (header.region, header.service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
