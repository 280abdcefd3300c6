"""``[upstream]`` and ``[upstream.credentials]``: the vendor the gateway forwards to.

The provider's own ``[upstream.<provider>]`` table is validated by the provider's model, which
the loader is handed: this schema knows no provider.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.model import KeyProblem, Model
from gateway.config.schema.values import Timeout, is_loopback_host


class CredentialsConfig(Model):
    type: Literal["basic", "bearer", "header", "query", "none", "aws-sigv4"] = "basic"
    username: str = ""
    password: SecretStr | None = None
    token: SecretStr | None = None
    name: str = ""
    value: SecretStr | None = None
    #: aws-sigv4: the signing region and service (username = access key id, password = secret
    #: access key, token = session token if the credentials are temporary).
    region: Annotated[str, Field(pattern=r"^([a-z]{2}(-[a-z]+)+-[0-9]+)?$")] = ""
    service: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")] = "sns"

    @model_validator(mode="after")
    def _needed_fields(self) -> CredentialsConfig:
        need = {
            "basic": ("username", "password"),
            "bearer": ("token",),
            "header": ("name", "value"),
            "query": ("name", "value"),
            "aws-sigv4": ("username", "password", "region"),
        }.get(self.type, ())
        missing = [key for key in need if not getattr(self, key)]
        if missing:
            raise KeyProblem(missing[0], f"type = {self.type!r} needs {' and '.join(missing)}")
        if self.type == "header" and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", self.name):
            raise KeyProblem("name", f"name {self.name!r} is not a valid HTTP header name")
        return self


class UpstreamConfig(Model):
    provider: str = "twilio"
    base_url: str = "https://api.twilio.com"
    account_id: str = ""
    connect_timeout_s: Timeout = 3
    timeout_s: Timeout = 15
    ca_file: str = ""
    pin_sha256: tuple[str, ...] = ()
    credentials: CredentialsConfig = CredentialsConfig(type="none")
    # ``provider`` is checked against the provider registry, and the provider's own table
    # (``[upstream.<provider>]``) by its model, in gateway/server/vendor_checks.py, which the
    # loader is handed: the schema knows no provider.

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an absolute https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use [upstream.credentials]")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("must use https:// (plain http is allowed only for loopback addresses)")
        return value.rstrip("/")

    @field_validator("pin_sha256")
    @classmethod
    def _pins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import base64
        import binascii

        for pin in value:
            try:
                raw = base64.b64decode(pin, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(f"{pin!r} is not a base64 SHA-256 digest (44 characters)")
        return value
