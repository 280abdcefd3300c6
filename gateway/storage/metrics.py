"""The limiter storage's metric families, read from the storage service's own counts at flush."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.core.metrics import Cumulative
from gateway.storage.service import StorageService

__all__ = ["StorageMetrics"]


class StorageMetrics:
    def __init__(self, registry: CollectorRegistry, storage: StorageService) -> None:
        self._storage = storage
        self._errors = Cumulative(
            Counter(
                "smsgw_storage_errors",
                "Limiter storage failures seen by requests, by what was being done",
                ["during"],
                registry=registry,
            )
        )
        self._trips = Cumulative(
            Counter(
                "smsgw_storage_round_trips",
                "Calls sent to the limiter storage (Redis): a command, a script or a pipeline each",
                registry=registry,
            )
        )
        self._up = Gauge(
            "smsgw_storage_up",
            "1 while the limiter storage answers (with several workers: the lowest of them)",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._up.set(1)

    def flush(self) -> None:
        storage = self._storage
        for during, total in list(storage.error_counts.items()):
            self._errors.update(total, during)
        self._up.set(1 if storage.up else 0)
        self._trips.update(storage.round_trips)
