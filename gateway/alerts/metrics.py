"""Anomaly alerts and their webhook deliveries: rare events, counted when they happen."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["AlertMetrics"]


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._alerts = Counter(
            "smsgw_alerts", "Anomaly alerts raised, by rule and action", ["rule", "action"], registry=registry
        )
        self._webhook = Counter(
            "smsgw_alert_webhook",
            "Alert webhook POSTs by result (delivered, retried, failed, dropped)",
            ["result"],
            registry=registry,
        )

    def alert(self, rule: str, action: str) -> None:
        self._alerts.labels(rule, action).inc()

    def alert_webhook(self, result: str) -> None:
        self._webhook.labels(result).inc()
