"""The JWT issuers' key set fetches, read from the JWKS service's counts at flush."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from gateway.core.metrics import Cumulative
from gateway.identity.jwks import JwksService

__all__ = ["JwksMetrics"]


class JwksMetrics:
    def __init__(self, registry: CollectorRegistry, jwks: JwksService) -> None:
        self._jwks = jwks
        self._refreshes = Cumulative(
            Counter(
                "smsgw_jwks_refreshes",
                "JWKS key set fetches, by key set URL and result",
                ["url", "result"],
                registry=registry,
            )
        )

    def flush(self) -> None:
        for url, fetches, failures in self._jwks.counts():
            self._refreshes.update(fetches - failures, url, "ok")
            self._refreshes.update(failures, url, "failed")
