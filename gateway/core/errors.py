"""Gateway-made errors: one exception type that carries a reason code (docs/request-path.md).

Stages raise :class:`GatewayError` (usually through :func:`refuse`); the pipeline turns it into the
JSON error body. Messages are fixed strings chosen by the raiser and must never contain a body, a
number or a credential. ``detail`` says more for the audit log (``expired``, ``bad_signature``,
``replayed``, ...) and is never sent to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

#: Every reason code the gateway answers with, and its HTTP status: the one table of them.
REASONS: Final[Mapping[str, int]] = MappingProxyType(
    {
        # the request path's codes, in the order of the stages (docs/request-path.md)
        "tls_required": 403,
        "body_too_large": 413,
        "route_not_found": 404,
        "method_not_allowed": 405,
        "ip_not_allowed": 403,
        "unauthenticated": 401,
        "forbidden": 403,
        "bad_request": 400,
        "unknown_field": 400,
        "field_not_allowed": 403,
        "invalid_recipient": 422,
        "destination_not_allowed": 403,
        "sender_not_allowed": 403,
        "rate_limited": 429,
        "otp_retry_cap": 429,
        "limiter_unavailable": 503,
        "upstream_unavailable": 502,
        "upstream_timeout": 504,
        # extensions (docs/request-path.md, "Reason codes")
        "expectation_failed": 417,
        "body_timeout": 408,
        "audit_unavailable": 503,
        "internal_error": 500,
        "callback_in_progress": 409,
        "idempotency_mismatch": 422,
        "idempotency_in_flight": 409,
        "anomaly_blocked": 429,
    }
)


@dataclass(eq=False)
class GatewayError(Exception):
    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    detail: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def refuse(
    code: str, message: str, headers: Mapping[str, str] | None = None, detail: str | None = None
) -> GatewayError:
    """The error for a reason code; its status comes from :data:`REASONS`."""
    return GatewayError(REASONS[code], code, message, headers or {}, detail)


def bad_request(message: str, detail: str | None = None) -> GatewayError:
    return refuse("bad_request", message, detail=detail)


def invalid_recipient(message: str = "a recipient is not a valid E.164 phone number") -> GatewayError:
    return refuse("invalid_recipient", message)
