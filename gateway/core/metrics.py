"""What feature metrics share: a counter fed with a service's running total, and the flush contract.

Counts that long-lived services keep anyway (storage failures, JWKS fetches, log write failures,
connections refused at accept) are read when the metrics flush, off the request path, so they cost
the request path nothing. They still go through prometheus-client counters rather than a custom
collector because only its own metric classes write the multiprocess files every worker's scrape
reads (``server.workers > 1``).
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter

__all__ = ["Cumulative", "MetricSource"]


class MetricSource(Protocol):
    """A feature's metric families, brought up to date by the server's flush (before every scrape,
    and every second in a worker process)."""

    def flush(self) -> None: ...


class Cumulative:
    """A counter fed with a running total: it grows by what the total grew since the last flush
    (a total that went down belongs to a new service, so all of it is new)."""

    __slots__ = ("_counter", "_last")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._last: dict[tuple[str, ...], float] = {}

    def update(self, total: float, *labels: str) -> None:
        last = self._last.get(labels, 0.0)
        self._last[labels] = total
        grown = total - last if total >= last else total
        if grown:
            (self._counter.labels(*labels) if labels else self._counter).inc(grown)
