"""One request on its way through the pipeline: what the stages learned, and what the logs show.

Stages fill the exchange in as they pass. Raw message parts (body bytes, recipients, the parsed
message) stay on the exchange for later stages and never reach a log; the ``log_*`` fields hold
only the redacted forms, and the records below are built from those alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import netaddr
from aiohttp import web

if TYPE_CHECKING:
    from gateway.callbacks.base import Verified
    from gateway.callbacks.events import Event
    from gateway.identity.auth import Principal
    from gateway.messages.base import Message
    from gateway.recipients.phone import Destination
    from gateway.server.policy import Client, CompiledRoute, Policy


@dataclass(slots=True, eq=False)
class Exchange:
    request: web.Request
    policy: Policy
    request_id: str
    started: float  # perf_counter at arrival
    method: str
    path: str  # scrubbed path and query, for logs only

    # where it comes from (client address stage)
    peer: netaddr.IPAddress | None = None
    address: netaddr.IPAddress | None = None
    ip: str = ""

    # routing
    route: CompiledRoute | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    # identity
    principal: Principal | None = None
    client: Client | None = None

    # the message (raw; never logged)
    body: bytes | None = None
    message: Message | None = None
    destinations: tuple[Destination, ...] = ()
    callback: Event | None = None  # a verified vendor callback (webhook routes)
    #: "send" or "check" once the OTP caps found this request to be one (their stage sets it).
    otp_kind: str | None = None
    #: The pumping guard's view of an OTP send or check (country, HMAC ids, approved): audited.
    conversion: dict[str, Any] | None = None
    #: Called by the forward stage with the vendor's status and decoded answer, before the
    #: outcome record is written (the pumping guard reads a check's verdict there).
    answer_hook: Callable[[Exchange, int, bytes | None], None] | None = None
    signature: Verified | None = None  # what the vendor's signature covers (webhook routes)

    # what the logs show (redacted)
    log_recipients: list[str] | None = None
    log_sender: str | list[str] | None = None
    log_body: dict[str, Any] | list[dict[str, Any]] | None = None
    #: Codes and other secret-bearing fields (Message.secrets), redacted like bodies.
    log_secrets: list[dict[str, Any] | None] | None = None
    recipient_count: int | None = None

    # outcome
    status: int | None = None
    reason: str | None = None
    detail: str | None = None
    upstream_ms: float | None = None
    vendor_message_id: str | None = None
    vendor_status: str | None = None  # a callback's delivery status (webhook routes)
    audited: bool = False  # a request record (allow or deny) has been written
    decision: str | None = None  # that record's decision: "allow" or "deny"
    #: Set when the forward stage starts: from then on the vendor may have the request.
    upstream_attempted: bool = False

    #: The stage that refused the request (the stage loop sets it), for tracing.
    refused_by: str | None = None
    #: The request's OpenTelemetry span when ``[tracing]`` is on (gateway/tracing/otel.py).
    trace: Any = None

    #: Headers stages add to the answer (RateLimit-*, ...), whatever the answer is.
    response_headers: dict[str, str] = field(default_factory=dict)
    #: What a stage took in ``run`` and settles in ``after`` (an idempotency claim, OTP slots),
    #: by stage name.
    held: dict[str, Any] = field(default_factory=dict)

    @property
    def client_id(self) -> str | None:
        return self.client.id if self.client is not None else None

    @property
    def route_name(self) -> str | None:
        return self.route.name if self.route is not None else None

    def audit_fields(self) -> dict[str, Any]:
        """The request's part of an audit record; the audit log adds ts, event, decision and chain."""
        fields = {
            "request_id": self.request_id,
            "client": self.client_id,
            "auth": self.principal.method if self.principal is not None else None,
            "key_id": self.principal.key_id if self.principal is not None else None,
            "route": self.route_name,
            "ip": self.ip,
            "method": self.method,
            "path": self.path,
            "recipients": self.log_recipients,
            "recipient_count": self.recipient_count,
            "countries": sorted({d.region or "ZZ" for d in self.destinations}) if self.destinations else None,
            "sender": self.log_sender,
            "body": self.log_body,
            "secrets": self.log_secrets,
        }
        if self.conversion is not None:
            fields["conversion"] = self.conversion
        if self.callback is not None:  # a verified vendor callback: what it reports
            fields["vendor_message_id"] = self.vendor_message_id
            fields["vendor_status"] = self.vendor_status
            fields["verified_fields"] = self.callback.verified_fields  # body, query or none
        return fields
