"""Request-scoped state that the chain fills in as it goes and the logs read at the end.

Only redacted values are ever stored here: the raw body and numbers stay local to the handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import netaddr


@dataclass(slots=True)
class RequestContext:
    request_id: str
    method: str
    path: str  # scrubbed path and query
    ip: str = ""
    peer: netaddr.IPAddress | None = None  # the TCP peer, parsed once
    route: str | None = None
    client: str | None = None
    recipients: list[str] | None = None
    recipient_count: int | None = None
    sender: str | None = None
    body: dict[str, Any] | None = None
    status: int | None = None
    reason: str | None = None
    upstream_ms: float | None = None
    vendor_message_id: str | None = None
    audited: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
