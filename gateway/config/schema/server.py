"""``[server]`` (with ``[server.tls]`` and ``[server.http]``), ``[hsts]`` and ``[admin]``."""

from __future__ import annotations

import os
from typing import Annotated, Literal
from urllib.parse import urlsplit

import netaddr
from pydantic import BeforeValidator, Field, field_validator, model_validator

from gateway.config.model import KeyProblem, Model
from gateway.config.schema.values import Listen, OptionalListen, Timeout, TrustedProxy


class TLSConfig(Model):
    mode: Literal["terminate", "offloaded"] = "terminate"
    cert_file: str = ""
    key_file: str = ""
    min_version: Literal["1.2", "1.3"] = "1.2"
    client_ca_file: str = ""

    @field_validator("min_version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError('write the version as a string: "1.2" or "1.3"')
        return value


class PlainHTTPConfig(Model):
    listen: OptionalListen = ""
    action: Literal["reject", "redirect"] = "reject"


def _workers(value: object) -> object:
    """``"auto"``: one worker per core this process may run on, resolved once when the file loads."""
    if value == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return min(cores or 1, 64)
    if isinstance(value, str):
        raise ValueError('an integer (1 to 64 worker processes) or "auto" (one per core)')
    return value


class ServerConfig(Model):
    listen: Listen = "0.0.0.0:8443"
    workers: Annotated[int, BeforeValidator(_workers)] = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    trusted_proxies: tuple[TrustedProxy, ...] = ()
    public_url: str = ""
    shutdown_timeout_s: Timeout = 20
    handshake_timeout_s: float = Field(10, gt=0, le=60)
    header_timeout_s: float = Field(10, gt=0, le=120)
    body_timeout_s: float = Field(30, gt=0, le=600)
    keepalive_timeout_s: float = Field(15, gt=0, le=3600)
    max_connections: int = Field(4096, ge=1, le=1_000_000)
    max_connections_per_ip: int = Field(256, ge=1, le=1_000_000)
    #: Where ``smsgw serve`` writes its process id (``smsgw reload`` signals it); "" writes none.
    pid_file: str = "smsgw.pid"
    tls: TLSConfig = TLSConfig()
    http: PlainHTTPConfig = PlainHTTPConfig()

    @field_validator("trusted_proxies")
    @classmethod
    def _not_everyone(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Entries that each look narrow can still add up to every address."""
        trusted = netaddr.IPSet(value)
        for everything in ("0.0.0.0/0", "::/0"):
            if netaddr.IPSet([everything]).issubset(trusted):
                raise ValueError(
                    f"together these are every IPv{netaddr.IPNetwork(everything).version} address: "
                    "they would let any client forge X-Forwarded-For"
                )
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
                raise ValueError("must be an https:// origin such as https://sms-gw.example.com")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _connection_caps(self) -> ServerConfig:
        if self.max_connections_per_ip > self.max_connections:
            raise KeyProblem("max_connections_per_ip", "must not be larger than max_connections")
        return self


class HSTSConfig(Model):
    max_age_s: int = Field(31536000, ge=0, le=2 * 31536000)
    include_subdomains: bool = True
    preload: bool = False

    @model_validator(mode="after")
    def _preload_rules(self) -> HSTSConfig:
        if self.preload and (self.max_age_s < 31536000 or not self.include_subdomains):
            raise KeyProblem("preload", "preload needs max_age_s >= 31536000 and include_subdomains = true")
        return self


class AdminConfig(Model):
    listen: Listen = "127.0.0.1:9000"
