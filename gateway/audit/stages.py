"""The audit stage as the policy lists it: the allow record, written before forwarding."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.audit.log import AuditDecision

if TYPE_CHECKING:
    from gateway.audit.log import AuditLog
    from gateway.config.schema import RouteConfig

__all__ = ["AuditBuild", "audit_decision"]


class AuditServices(Protocol):
    @property
    def audit(self) -> AuditLog: ...


class AuditBuild(Protocol):
    """The audit log, opened by the services before any policy is built."""

    @property
    def services(self) -> AuditServices: ...


def audit_decision(route: RouteConfig, b: AuditBuild) -> AuditDecision:
    return AuditDecision(b.services.audit)
