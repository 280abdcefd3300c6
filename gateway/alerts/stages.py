"""The alert stages as the policy lists them: the authentication-failure watch, the anomaly
counters and the pumping guard. Each factory takes the route and what it needs of the policy
being built; the rules' state lives in the alert service, shared by every route and reload."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.alerts.anomalies import AlertService, CheckAnomalies, WatchAuthFailures
from gateway.alerts.conversion import GuardConversion

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.config.schema import RouteConfig
    from gateway.storage.service import StorageService

__all__ = ["AlertsBuild", "build_anomalies", "build_auth_watch", "build_conversion"]


class AlertsServices(Protocol):
    @property
    def storage(self) -> StorageService: ...

    @property
    def alerts(self) -> AlertService: ...


class AlertsBuild(Protocol):
    """The config (the rules) and the storage and alert service (server/policy.py's ``Build`` has them)."""

    @property
    def config(self) -> Config: ...

    @property
    def services(self) -> AlertsServices: ...


def build_auth_watch(route: RouteConfig, b: AlertsBuild) -> WatchAuthFailures | None:
    rules = b.services.alerts.rules(b.config.settings.alerts)
    return WatchAuthFailures(rules.auth) if rules.auth is not None else None


def build_anomalies(route: RouteConfig, b: AlertsBuild) -> CheckAnomalies | None:
    """Sends only: an OTP check sends no message."""
    rules = b.services.alerts.rules(b.config.settings.alerts)
    if not rules.sends or route.kind == "otp-check":
        return None
    return CheckAnomalies(rules, b.services.storage)


def build_conversion(route: RouteConfig, b: AlertsBuild) -> GuardConversion | None:
    """OTP routes only (sends and checks); the rule's state lives in the alert service."""
    cfg = b.config.settings.alerts.conversion
    if cfg is None or route.kind == "webhook":
        return None
    if route.kind == "sms" and (route.otp is None or not route.otp.detect):
        return None
    guard = b.services.alerts.conversion(cfg)
    return GuardConversion(guard, b.services.alerts, route.name)
