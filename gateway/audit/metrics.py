"""Log records that could not be written, read from the log sinks' own failure counts at flush."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from gateway.core.metrics import Cumulative

__all__ = ["LogMetrics"]


class _Counted(Protocol):
    @property
    def failures(self) -> int: ...


class LogMetrics:
    def __init__(self, registry: CollectorRegistry, logs: Mapping[str, _Counted]) -> None:
        """``logs``: each log by the name its ``log`` label carries (``access``, ``audit``)."""
        self._logs = dict(logs)
        self._failures = Cumulative(
            Counter(
                "smsgw_log_write_failures",
                "Log records that could not be written, by log",
                ["log"],
                registry=registry,
            )
        )

    def flush(self) -> None:
        for name, sink in self._logs.items():
            self._failures.update(sink.failures, name)
