"""Where each vendor's SDK puts its credential, so a gateway-issued one works there unchanged.

A client's ``[[client.basic]]`` credential is a username and a password. An SDK that sends HTTP
Basic (Twilio, Plivo, Vonage v4, Messente Omnimessage, Infobip) sends both; one that sends a token
(Sinch and SMSAPI ``Bearer``, Infobip ``App``, MessageBird ``AccessKey``) sends the password as the
token; Messente's legacy API puts both in the query; boto3 signs the request with SigV4, using the
username as the access key id and the password as the secret key. The slot only reads what was
sent; ``identity/basic.py`` decides whether it is valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import unquote_plus

from aiohttp import web

from gateway.core import sigv4
from gateway.messages.forms import field_base, query_names

__all__ = [
    "BASIC",
    "BasicSlot",
    "CredentialSlot",
    "Presented",
    "QuerySlot",
    "SigV4Slot",
    "TokenSlot",
    "parse_basic",
]

#: A client's SigV4 ``X-Amz-Date`` may differ from the gateway's clock by this much (AWS allows 15
#: minutes; the gateway keeps to its own 5-minute window for signed requests).
SIGV4_SKEW_S: Final = 300


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """``(username, password)`` of an ``Authorization: Basic`` header, or None if it is not one."""
    if not authorization:
        return None
    scheme, _, param = authorization.partition(" ")
    if scheme.lower() != "basic" or not param:
        return None
    try:
        decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


@dataclass(frozen=True, slots=True)
class Presented:
    """A credential as sent. ``username`` None: the secret alone names the client (tokens)."""

    username: str | None
    password: str | None = None
    #: Signed slots: checks the signature given the client's clear secret (``[[client.basic]]``
    #: ``password``), since a signature cannot be checked against a hash of it.
    verify: Callable[[str], bool] | None = None


class CredentialSlot(Protocol):
    name: str
    #: True when reading needs the body (a signature over the payload).
    needs_body: bool
    #: Client query parameters the slot reads: never forwarded, never logged.
    query_names: frozenset[str]

    def present(self, request: web.Request) -> bool: ...

    def read(self, request: web.Request, body: bytes | None) -> Presented | None:
        """The credential, or None when it is malformed (answered 401)."""
        ...


class BasicSlot:
    name = "basic"
    needs_body = False
    query_names: frozenset[str] = frozenset()
    __slots__ = ()

    def present(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "")[:6].lower() == "basic "

    def read(self, request: web.Request, body: bytes | None) -> Presented | None:
        parsed = parse_basic(request.headers.get("Authorization"))
        return Presented(parsed[0], parsed[1]) if parsed is not None else None


BASIC: Final = BasicSlot()


class TokenSlot:
    """``Authorization: <scheme> <token>``: the token is the client's gateway-issued password."""

    needs_body = False
    query_names: frozenset[str] = frozenset()
    __slots__ = ("_prefix", "name")

    def __init__(self, scheme: str) -> None:
        self.name = scheme.lower()
        self._prefix = scheme.lower() + " "

    def present(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header[: len(self._prefix)].lower() == self._prefix

    def read(self, request: web.Request, body: bytes | None) -> Presented | None:
        values = request.headers.getall("Authorization", ())
        if len(values) != 1:
            return None
        token = values[0][len(self._prefix) :].strip()
        return Presented(None, token) if token else None


class QuerySlot:
    """Username and password as query parameters (Messente's legacy API). Each exactly once and
    written exactly so: a repeated or folded name could be read differently by the vendor."""

    needs_body = False
    name = "query"
    __slots__ = ("_password", "_username", "query_names")

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self.query_names = frozenset({username.casefold(), password.casefold()})

    def present(self, request: web.Request) -> bool:
        raw = request.raw_path.partition("?")[2]
        return bool(raw) and any(field_base(n) in self.query_names for n in query_names(raw))

    def read(self, request: web.Request, body: bytes | None) -> Presented | None:
        found: dict[str, list[str]] = {self._username: [], self._password: []}
        for part in request.raw_path.partition("?")[2].replace(";", "&").split("&"):
            raw_name, _, raw_value = part.partition("=")
            name = unquote_plus(raw_name, errors="strict") if "%" in raw_name or "+" in raw_name else raw_name
            if field_base(name) not in self.query_names:
                continue
            if name not in found:
                return None  # folded (USERNAME, password[]): the vendor may read it differently
            try:
                found[name].append(unquote_plus(raw_value, errors="strict"))
            except UnicodeDecodeError:
                return None
        user, password = found[self._username], found[self._password]
        if len(user) != 1 or len(password) != 1 or not user[0] or not password[0]:
            return None
        return Presented(user[0], password[0])


class SigV4Slot:
    """``Authorization: AWS4-HMAC-SHA256 ...`` as boto3 makes it: the access key id is the client's
    username, the secret key its password. Host, ``X-Amz-Date`` and the payload must be signed."""

    name = "aws-sigv4"
    needs_body = True
    query_names: frozenset[str] = frozenset()
    __slots__ = ("_service",)

    def __init__(self, service: str) -> None:
        self._service = service

    def present(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "").startswith(sigv4.ALGORITHM + " ")

    def read(self, request: web.Request, body: bytes | None) -> Presented | None:
        values = request.headers.getall("Authorization", ())
        header = sigv4.parse_authorization(values[0]) if len(values) == 1 else None
        if header is None or header.service != self._service or body is None:
            return None
        if not {"host", "x-amz-date"} <= set(header.signed_headers):
            return None
        dates = request.headers.getall("X-Amz-Date", ())
        when = sigv4.amz_time(dates[0]) if len(dates) == 1 else None
        if when is None or dates[0][:8] != header.date or abs(when.timestamp() - time.time()) > SIGV4_SKEW_S:
            return None
        payload = hashlib.sha256(body).hexdigest()
        declared = request.headers.getall("X-Amz-Content-SHA256", ())
        if declared and (len(declared) != 1 or declared[0] != payload):
            return None  # UNSIGNED-PAYLOAD or a hash of other bytes: the body would not be covered
        path, _, query = request.raw_path.partition("?")
        signed = [(name, request.headers.getall(name, ())) for name in header.signed_headers]
        if any(not values for _, values in signed):
            return None
        canonical = sigv4.canonical_request(request.method, path, query, signed, payload)
        amz_date = dates[0]

        def verify(secret: str) -> bool:
            expected = sigv4.signature(secret, header, amz_date, canonical)
            return hmac.compare_digest(expected, header.signature)

        return Presented(header.access_key, verify=verify)
