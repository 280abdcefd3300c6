"""Client connections closed at accept, read from the listeners' shared connection count at flush."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from gateway.core.metrics import Cumulative
from gateway.transport.connections import ConnectionLimits

__all__ = ["ConnectionMetrics"]


class ConnectionMetrics:
    def __init__(self, registry: CollectorRegistry, limits: ConnectionLimits) -> None:
        self._limits = limits
        self._refused = Cumulative(
            Counter(
                "smsgw_connections_refused",
                "Client connections closed at accept (server.max_connections, max_connections_per_ip)",
                registry=registry,
            )
        )

    def flush(self) -> None:
        self._refused.update(self._limits.refused)
