"""What every vendor's sandbox stand-in shares: the state it checks credentials against, and a
record of what it received, for tests to assert on. Each vendor package serves its own paths
(``sandbox.py`` there); ``gateway/commands/sandbox.py`` mounts them all.
"""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = ["SANDBOX_KEY", "Received", "SandboxState", "basic_ok", "form_of", "json_doc", "record", "token_ok"]


@dataclass
class Received:
    """What the sandbox saw of one request, for tests to assert on."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SandboxState:
    account_sid: str
    auth_token: str
    bearer_token: str
    received: list[Received] = field(default_factory=list)


SANDBOX_KEY: web.AppKey[SandboxState] = web.AppKey("sandbox.state")


def basic_ok(header: str | None, username: str, password: str) -> bool:
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return hmac.compare_digest((header or "").encode(), expected.encode())


def token_ok(header: str | None, scheme: str, token: str) -> bool:
    return hmac.compare_digest((header or "").encode(), f"{scheme} {token}".encode())


async def record(request: web.Request) -> bytes:
    body = await request.read()
    request.app[SANDBOX_KEY].received.append(
        Received(request.method, request.path, request.query_string, dict(request.headers), body)
    )
    return body


def json_doc(body: bytes) -> dict | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def form_of(body: bytes) -> dict[str, str] | None:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
    except (ValueError, UnicodeDecodeError):
        return None
