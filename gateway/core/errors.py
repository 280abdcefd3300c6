"""Gateway-made errors: one exception type that carries a reason code (docs/request-path.md).

Stages raise :class:`GatewayError` (usually through :func:`refuse`); the pipeline turns it into the
JSON error body. Messages are fixed strings chosen by the raiser and must never contain a body, a
number or a credential. ``detail`` says more for the audit log (a :class:`~gateway.core.events.Detail`:
``expired``, ``bad_signature``, ``replayed``, ...) and is never sent to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Reason(StrEnum):
    """Every reason code the gateway answers with: the one table of them (docs/request-path.md,
    "Reason codes", is checked against it). A member is its wire string, so records and bodies
    that carry one are the same bytes as with the plain string."""

    status: int
    meaning: str
    #: The one other status the code may be answered with, as a documented separate outcome.
    redirect: int | None

    def __new__(cls, value: str, status: int, meaning: str, redirect: int | None = None) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.meaning = meaning
        member.redirect = redirect
        return member

    # the request path's codes, in the order of the stages
    TLS_REQUIRED = (
        "tls_required",
        403,
        "the request came over plain HTTP; GET/HEAD are redirected to HTTPS instead (308 + `Location`) "
        'with `server.http.action = "redirect"`',
        308,
    )
    BODY_TOO_LARGE = "body_too_large", 413, "the body is larger than the route allows"
    ROUTE_NOT_FOUND = "route_not_found", 404, "no route matches the path"
    METHOD_NOT_ALLOWED = (
        "method_not_allowed",
        405,
        "the route does not accept the method (`Allow` lists those it does)",
    )
    IP_NOT_ALLOWED = (
        "ip_not_allowed",
        403,
        "the client address is not on the route's or the client's allowlist",
    )
    UNAUTHENTICATED = "unauthenticated", 401, "no valid credential (`WWW-Authenticate` says which kinds)"
    FORBIDDEN = "forbidden", 403, "the client lacks a scope the route needs"
    BAD_REQUEST = "bad_request", 400, "a malformed or ambiguous request"
    UNKNOWN_FIELD = (
        "unknown_field",
        400,
        "a body field or query parameter the vendor's reader does not declare, in any spelling the vendor "
        "could bind",
    )
    FIELD_NOT_ALLOWED = (
        "field_not_allowed",
        403,
        "a declared control field, channel or callback URL the route's policy does not allow",
    )
    INVALID_RECIPIENT = "invalid_recipient", 422, "a recipient is not a valid E.164 number"
    DESTINATION_NOT_ALLOWED = (
        "destination_not_allowed",
        403,
        "a recipient's country or number type is not allowed on the route",
    )
    SENDER_NOT_ALLOWED = "sender_not_allowed", 403, "the sender is not on the client's `senders` list"
    RATE_LIMITED = "rate_limited", 429, "a rate limit is reached (`Retry-After`)"
    OTP_RETRY_CAP = (
        "otp_retry_cap",
        429,
        "an OTP cap for the number or verification is reached (`Retry-After`)",
    )
    LIMITER_UNAVAILABLE = (
        "limiter_unavailable",
        503,
        'the limiter storage is down and `on_error = "closed"` (`Retry-After`)',
    )
    UPSTREAM_UNAVAILABLE = "upstream_unavailable", 502, "the vendor could not be reached or answered unusably"
    UPSTREAM_TIMEOUT = "upstream_timeout", 504, "the vendor did not answer in time"
    # extensions
    EXPECTATION_FAILED = "expectation_failed", 417, "an `Expect` other than `100-continue`"
    BODY_TIMEOUT = "body_timeout", 408, "the body did not arrive within `server.body_timeout_s`"
    AUDIT_UNAVAILABLE = "audit_unavailable", 503, "the pre-send audit record could not be written"
    INTERNAL_ERROR = (
        "internal_error",
        500,
        "a bug; logged by exception type and code location only",
    )
    CALLBACK_IN_PROGRESS = (
        "callback_in_progress",
        409,
        "a copy of a vendor callback that is being forwarded right now (`Retry-After`); the vendor "
        "delivers it again later",
    )
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch", 422, "an `Idempotency-Key` reused for another request"
    IDEMPOTENCY_IN_FLIGHT = (
        "idempotency_in_flight",
        409,
        "a repeat while the first request with its key is still running",
    )
    ANOMALY_BLOCKED = (
        "anomaly_blocked",
        429,
        "an alert rule in `block` mode refused it (`Retry-After` when the block ends with a window)",
    )


#: Reason code -> HTTP status, for callers that look codes up by their string.
REASONS: Final[Mapping[str, int]] = MappingProxyType({reason.value: reason.status for reason in Reason})


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
    code: Reason, message: str, headers: Mapping[str, str] | None = None, detail: str | None = None
) -> GatewayError:
    """The error for a reason code; its status comes from the :class:`Reason` table."""
    return GatewayError(code.status, code, message, headers or {}, detail)


def redirect(code: Reason, message: str, location: str) -> GatewayError:
    """The code's documented other outcome: its ``redirect`` status with ``Location``."""
    if code.redirect is None:
        raise ValueError(f"{code} has no redirect outcome in the table")
    return GatewayError(code.redirect, code, message, {"Location": location})


def bad_request(message: str, detail: str | None = None) -> GatewayError:
    return refuse(Reason.BAD_REQUEST, message, detail=detail)


def invalid_recipient(message: str = "a recipient is not a valid E.164 phone number") -> GatewayError:
    return refuse(Reason.INVALID_RECIPIENT, message)
