"""The policy files (``policies/*.toml``): ``[[client]]`` and ``[[route]]``."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.model import KeyProblem, Model
from gateway.config.schema.values import (
    Cidr,
    CountryOrAny,
    DestinationCode,
    Duration,
    Name,
    Rates,
    parse_duration,
    strong_secret,
)
from gateway.config.webhook_options import WebhookOptions
from gateway.core.routing import PathTemplate, TemplateError


class HMACKeyConfig(Model):
    id: Name
    secret: SecretStr
    created: date | None = None
    expires: date | None = None

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        strong_secret(value)
        return value

    @model_validator(mode="after")
    def _dates(self) -> HMACKeyConfig:
        if self.created and self.expires and self.expires <= self.created:
            raise KeyProblem("expires", "must be after created")
        return self


EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


class BasicCredentialConfig(Model):
    username: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^:\x00-\x1f\x7f]+$")]
    password_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = ""
    #: The clear password (an env:/file: reference) instead of its hash: needed where the SDK
    #: signs with it instead of sending it (boto3's SigV4 for aws-sns).
    password: SecretStr | None = None

    @field_validator("password_sha256")
    @classmethod
    def _not_empty_password(cls, value: str) -> str:
        if value == EMPTY_SHA256:
            raise ValueError(
                "is the SHA-256 of the empty password: anyone could log in; "
                "make a credential with `smsgw keygen basic`"
            )
        return value

    @model_validator(mode="after")
    def _one_password(self) -> BasicCredentialConfig:
        if bool(self.password_sha256) == (self.password is not None):
            raise KeyProblem("password_sha256", "give exactly one of password_sha256 and password")
        if self.password is not None and not self.password.get_secret_value():
            raise KeyProblem("password", "is empty: anyone could log in")
        return self

    @property
    def digest(self) -> str:
        """The hex SHA-256 of the password, however it was configured."""
        if self.password is not None:
            return hashlib.sha256(self.password.get_secret_value().encode("utf-8")).hexdigest()
        return self.password_sha256


class ClientConfig(Model):
    id: Name
    scopes: tuple[str, ...] = ()
    jwt_subject: str = ""
    jwt_issuer: str = ""
    tls_subject: str = ""
    ip_allow: tuple[Cidr, ...] = ()
    senders: tuple[str, ...] = ()
    #: ISO 3166 alpha-2 codes, "*" (every country), or non-geographic calling codes ("+881");
    #: missing or empty allows no destination (gateway/config/cross_checks.py refuses that for a
    #: client that may send).
    countries: tuple[DestinationCode, ...] = ()
    rate_limits: Rates = ()
    hmac_keys: tuple[HMACKeyConfig, ...] = ()
    basic: tuple[BasicCredentialConfig, ...] = ()


class OTPConfig(Model):
    max_sends: int = Field(3, ge=1)
    window: Duration = "15 minutes"
    min_interval: Duration = "0 seconds"
    max_checks: int = Field(5, ge=1)
    detect: str = ""

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if parse_duration(value) == 0:
            raise ValueError("must be longer than 0 seconds")
        return value

    @field_validator("detect")
    @classmethod
    def _regex(cls, value: str) -> str:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression ({exc.msg})") from None
        return value


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RouteConfig(Model):
    name: Name
    methods: tuple[str, ...] = ("POST",)
    path: str
    kind: Literal["sms", "otp", "otp-check", "webhook"] = "sms"
    auth: tuple[Literal["jwt", "hmac", "basic", "mtls"], ...] = ()
    scopes: tuple[str, ...] = ()
    ip_allow: tuple[Cidr, ...] = ()
    rate_limits: Rates = ()
    recipient_limits: Rates = ()
    country_limits: dict[CountryOrAny, Rates] = Field(default_factory=dict)
    otp: OTPConfig | None = None
    #: Recipient number types this route sends to (phonenumbers' names); empty: any type.
    number_types: tuple[
        Literal[
            "fixed_line",
            "mobile",
            "fixed_line_or_mobile",
            "toll_free",
            "premium_rate",
            "shared_cost",
            "voip",
            "personal_number",
            "pager",
            "uan",
            "voicemail",
            "unknown",
        ],
        ...,
    ] = ()
    signature: str = ""
    signing_secret: SecretStr | None = None
    forward_to: str = ""
    #: [route.webhook]: checked per scheme in gateway/callbacks/config.py
    webhook: WebhookOptions | None = None
    #: Control and callback-URL fields of the vendor API this route lets through (names as in the
    #: tables of docs/vendors.md); checked against the route's reader when the config loads.
    allow_fields: tuple[str, ...] = ()
    #: Channels a channel field (Twilio Verify ``Channel``, ``whatsapp:`` numbers ...) may name.
    channels: tuple[str, ...] = ("sms",)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            if not channel or channel != channel.strip() or channel.casefold() != channel:
                raise ValueError(f"{channel!r}: write channel names in lower case, without spaces")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            PathTemplate.compile(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        upper = tuple(m.upper() for m in value)
        for method in upper:
            if method not in _METHODS:
                raise ValueError(f"{method!r} is not one of {', '.join(sorted(_METHODS))}")
        if not upper:
            raise ValueError("needs at least one method")
        return upper

    @model_validator(mode="after")
    def _auth_needed(self) -> RouteConfig:
        if self.kind != "webhook" and not self.auth:
            raise KeyProblem(
                "auth",
                "auth must name at least one of jwt, hmac, basic, mtls "
                "(only webhook routes may have auth = [])",
            )
        if self.kind == "webhook" and not self.forward_to:
            raise KeyProblem("forward_to", "a webhook route needs forward_to")
        return self


class PolicyFile(Model):
    client: tuple[ClientConfig, ...] = ()
    route: tuple[RouteConfig, ...] = ()
