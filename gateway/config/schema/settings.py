"""The main config file (:class:`Settings`): its sections, with ``[policies]`` and ``[tracing]``."""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway.config.model import Model
from gateway.config.schema.alerts import AlertsConfig
from gateway.config.schema.auth import AuthConfig
from gateway.config.schema.logs import LoggingConfig
from gateway.config.schema.server import AdminConfig, HSTSConfig, ServerConfig
from gateway.config.schema.storage import LimitsConfig, StorageConfig
from gateway.config.schema.upstream import UpstreamConfig
from gateway.config.schema.values import Cidr


class PoliciesConfig(Model):
    dir: str = "policies"


class TracingConfig(Model):
    """OpenTelemetry spans over OTLP/HTTP (gateway/tracing/otel.py); needs the ``otel`` extra."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "smsgw"
    #: Callers (TCP peers) whose W3C ``traceparent`` the span continues; others start a new trace.
    trust_traceparent_from: tuple[Cidr, ...] = ()
    sample_ratio: float = Field(1.0, ge=0, le=1)
    export_interval_s: float = Field(5.0, gt=0, le=300)
    timeout_s: float = Field(10.0, gt=0, le=60)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (the collector's /v1/traces)")
        return value


class Settings(Model):
    """The main config file."""

    server: ServerConfig = ServerConfig()
    hsts: HSTSConfig = HSTSConfig()
    admin: AdminConfig = AdminConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    storage: StorageConfig = StorageConfig()
    limits: LimitsConfig = LimitsConfig()
    logging: LoggingConfig = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    auth: AuthConfig = AuthConfig()
    policies: PoliciesConfig = PoliciesConfig()
    alerts: AlertsConfig = AlertsConfig()
    tracing: TracingConfig = TracingConfig()
