"""``[storage]`` (memory or Redis) and ``[limits]``."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, field_validator

from gateway.config.model import Model


class StorageConfig(Model):
    url: str = "memory://"
    on_error: Literal["closed", "open"] = "closed"
    key_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = "smsgw:"
    timeout_s: float = Field(0.5, gt=0, le=30)
    password: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        schemes = ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster")
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise ValueError(f"must start with one of {', '.join(s + '://' for s in schemes)}")
        if parts.scheme == "memory":
            return value
        if "@" in parts.netloc and ":" in parts.netloc.rpartition("@")[0]:
            raise ValueError(
                'must not hold a password; set storage.password ("env:NAME" or "file:PATH") instead'
            )
        hosts = parts.netloc.rpartition("@")[2]
        if not hosts or any(not _REDIS_HOST.match(h) for h in hosts.split(",")):
            raise ValueError("must name HOST:PORT (several, comma-separated, for sentinel and cluster)")
        if parts.scheme == "redis+sentinel" and not parts.path.strip("/"):
            raise ValueError("a sentinel URL names the service: redis+sentinel://HOST:PORT,HOST:PORT/SERVICE")
        if parts.scheme in ("redis", "rediss") and "," in hosts:
            raise ValueError("names one server; use redis+sentinel:// or redis+cluster:// for several")
        # redis-py reads query parameters as client options that override the gateway's (a
        # password, ssl_cert_reqs=none, timeouts): only TLS file locations may be given there.
        allowed = _REDISS_QUERY if parts.scheme == "rediss" else frozenset()
        names = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
        if parts.fragment or names - allowed or (parts.query and not names):
            hint = f" (only {', '.join(sorted(allowed))})" if allowed else ""
            raise ValueError(f"must not carry query parameters or a fragment{hint}")
        return value


_REDISS_QUERY = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile"})


_REDIS_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$")


class LimitsConfig(Model):
    strategy: Literal["sliding-window-counter", "moving-window", "fixed-window"] = "sliding-window-counter"
