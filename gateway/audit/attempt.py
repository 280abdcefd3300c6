"""One attempt at the far side, timed and audited the same way wherever the gateway forwards.

A send goes to the vendor (``transport/proxy.py``), a verified callback to an internal service
(``callbacks/forward.py``). Both stages write the request's outcome record from the same fields in
the same order; keeping that here means the two records cannot drift apart.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.audit.log import AuditLog
    from gateway.core.errors import GatewayError
    from gateway.core.exchange import Exchange

__all__ = ["Attempt"]


class Attempt:
    """Started when the forwarding starts: from then on the far side may have the request."""

    __slots__ = ("_audit", "_ex", "_started")

    def __init__(self, audit: AuditLog, ex: Exchange) -> None:
        self._audit = audit
        self._ex = ex
        ex.upstream_attempted = True
        self._started = time.perf_counter()

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self._started) * 1000, 3)

    def failed(self, exc: GatewayError) -> None:
        """No answer (unreachable, too slow, refused by the gateway's own bounds): the outcome
        record carries the refusal the client gets."""
        ex = self._ex
        ex.status, ex.reason, ex.detail = exc.status, exc.code, exc.detail
        ex.upstream_ms = self.elapsed_ms()
        self._audit.outcome(ex, ex.upstream_ms)

    def answered(self, status: int, upstream_ms: float) -> None:
        """The far side answered; :meth:`record` writes the outcome once the stage has read it."""
        self._ex.status = status
        self._ex.upstream_ms = upstream_ms

    def record(self) -> None:
        self._audit.outcome(self._ex, self.elapsed_ms())
