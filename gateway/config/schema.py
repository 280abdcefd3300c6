"""The config contract (config.example.toml, docs/configuration.md) as frozen pydantic models.

Validation here is per key; checks that span keys or files live in ``loader.py``.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import date
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

import netaddr
import phonenumbers
from limits import parse_many
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.config.model import KeyProblem, Model
from gateway.config.webhook_options import WebhookOptions
from gateway.core.routing import PathTemplate, TemplateError

# --- reusable value types -------------------------------------------------------------------

_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")


def parse_listen(value: str) -> tuple[str, int]:
    match = _LISTEN.match(value)
    if not match or int(match["port"]) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:8443 or [::]:8443)")
    return match["v6"] or match["host"], int(match["port"])


def _listen(value: str) -> str:
    parse_listen(value)
    return value


def _optional_listen(value: str) -> str:
    return _listen(value) if value else value


_MAPPED = netaddr.IPNetwork("::ffff:0:0/96")


def _network(value: str) -> netaddr.IPNetwork:
    """A CIDR in normal form; IPv4-mapped IPv6 entries become IPv4.

    Client addresses are compared as IPv4 when they arrive IPv4-mapped (identity/ip.py), so an
    entry written as ``::ffff:10.0.0.0/104`` would otherwise match nothing. A prefix shorter
    than /96 also holds addresses that are not mapped and stays IPv6.
    """
    try:
        network = netaddr.IPNetwork(value).cidr
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address or CIDR") from None
    if network.version == 6 and network.prefixlen >= 96 and network in _MAPPED:
        network = netaddr.IPNetwork(f"{network.ip.ipv4()}/{network.prefixlen - 96}")
    return network


def _cidr(value: str) -> str:
    return str(_network(value))


def _trusted_proxy(value: str) -> str:
    network = _network(value)
    if network.prefixlen == 0:
        raise ValueError(
            f"{value!r} is every IPv{network.version} address: it would let any client forge X-Forwarded-For"
        )
    return str(network)


def _rate(item: str) -> str:
    try:
        parsed = parse_many(item)
    except ValueError:
        raise ValueError(f"{item!r} is not a rate like '600/minute' or '5/hour'") from None
    if any(rate.amount < 1 for rate in parsed):
        raise ValueError(f"{item!r} allows nothing; a rate needs at least 1 per period")
    return item


_DURATION = re.compile(r"^\s*(\d+)\s+(second|minute|hour|day)s?\s*$")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_duration(value: str) -> int:
    """Seconds in a config duration such as ``"15 minutes"``."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like '30 seconds' or '15 minutes'")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code")
    return value.upper()


#: Calling codes that belong to no country (phonenumbers' region "001"): satellite phones
#: (+870 Inmarsat, +881 Iridium/Globalstar), international networks (+882, +883), UIFN freephone
#: and shared-cost (+800, +808), UPT (+878), +888 and premium rate (+979). Costly and rarely a
#: real customer, so a classic toll-fraud target: a client reaches them only by naming the code
#: in ``countries`` ("+881"); ``"*"`` never includes them (gateway/recipients/phone.py).
NON_GEOGRAPHIC_CODES = frozenset(f"+{code}" for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)


def _destination(value: str) -> str:
    if value == "*" or value in NON_GEOGRAPHIC_CODES:
        return value
    if value.startswith("+"):
        codes = ", ".join(sorted(NON_GEOGRAPHIC_CODES))
        raise ValueError(
            f"{value!r} is not a non-geographic calling code ({codes}); name a country by its "
            "ISO 3166 alpha-2 code"
        )
    return _country(value)


Listen = Annotated[str, AfterValidator(_listen)]
OptionalListen = Annotated[str, AfterValidator(_optional_listen)]
Cidr = Annotated[str, AfterValidator(_cidr)]
TrustedProxy = Annotated[str, AfterValidator(_trusted_proxy)]
Rates = tuple[Annotated[str, AfterValidator(_rate)], ...]
Duration = Annotated[str, AfterValidator(_duration)]
Country = Annotated[str, AfterValidator(_country)]
CountryOrAny = Annotated[str, AfterValidator(lambda v: v if v == "*" else _country(v))]
DestinationCode = Annotated[str, AfterValidator(_destination)]
Timeout = Annotated[float, Field(gt=0, le=600)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


# --- main file --------------------------------------------------------------------------------


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
    # (``[upstream.<provider>]``) by its model, in loader.py: the schema knows no provider.

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


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return netaddr.IPAddress(host).is_loopback()
    except (netaddr.AddrFormatError, ValueError):
        return False


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


MIN_KEY_BYTES = 32
MIN_KEY_DISTINCT = 8


def key_weakness(text: str) -> str | None:
    """Why a key cannot be random bytes, or ``None``; says nothing about the key itself."""
    if len(text.encode("utf-8")) < MIN_KEY_BYTES:
        return f"must be at least {MIN_KEY_BYTES} bytes"
    distinct = len(set(text))
    if distinct == 1:
        return "is one character repeated, not a random key"
    if distinct < MIN_KEY_DISTINCT:
        return f"has fewer than {MIN_KEY_DISTINCT} different characters, not a random key"
    return None


class LoggingConfig(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: The operational log on stderr: text lines, or JSON lines with the request id (oplog.py).
    format: Literal["text", "json"] = "text"
    access_log: str = "-"
    audit_log: str = "logs/audit.jsonl"
    body: Literal["hash", "redact", "mask", "seal", "drop"] = "hash"
    recipient: Literal["mask", "hash", "drop"] = "mask"
    hash_key: SecretStr | None = None
    hash_key_id: str = ""
    seal_public_key_file: str = ""
    retention_days: int = Field(90, ge=1, le=3650)
    rotate_bytes: int = Field(104857600, ge=0, le=1 << 40)  # 0: never by size
    rotate_daily: bool = True
    chain_key: SecretStr | None = None

    @field_validator("hash_key", "chain_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """An HMAC key an attacker can guess lets them confirm a guessed number or body offline."""
        text = value.get_secret_value() if value is not None else ""
        weakness = key_weakness(text) if text else None
        if weakness:
            raise ValueError(f"{info.field_name} {weakness} (make one with `smsgw keygen hash-key`)")
        return value

    @model_validator(mode="after")
    def _hash_key(self) -> LoggingConfig:
        if "hash" in (self.body, self.recipient):
            key = self.hash_key.get_secret_value() if self.hash_key else ""
            if len(key.encode("utf-8")) < 32:
                raise KeyProblem(
                    "hash_key",
                    "hash_key must be at least 32 bytes when body or recipient is 'hash' "
                    "(make one with `smsgw keygen hash-key`)",
                )
        if 0 < self.rotate_bytes < 1024:
            raise KeyProblem("rotate_bytes", "must be 0 (no size rotation) or at least 1024")
        if self.body == "seal" and not self.seal_public_key_file:
            raise KeyProblem("seal_public_key_file", "body = 'seal' needs seal_public_key_file")
        return self


#: JWS algorithms an issuer may list (RFC 7518 and RFC 8037); ``none`` is never one of them.
JWT_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
)  # fmt: skip
JWT_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


def _https_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"must be an https:// URL ({what} is fetched over verified TLS only)")
    if parts.username or parts.password or parts.fragment:
        raise ValueError("must not carry credentials or a fragment")
    return value


class JWTIssuerConfig(Model):
    issuer: Annotated[str, Field(min_length=1, max_length=512)]
    audience: Annotated[str, Field(min_length=1, max_length=512)]
    jwks_url: str = ""
    jwks_ca_file: str = ""
    jwks_refresh_s: int = Field(300, ge=30, le=86400)
    jwks_timeout_s: float = Field(5, gt=0, le=30)
    public_key_file: str = ""
    secret: SecretStr | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    leeway_s: int = Field(30, ge=0, le=300)
    #: Tokens claiming a longer lifetime (exp - iat, or exp - now without iat) are refused.
    max_lifetime_s: int = Field(86400, ge=60, le=30 * 86400)

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str) -> str:
        return _https_url(value, "the key set") if value else value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("needs at least one algorithm")
        for alg in value:
            if alg.lower() == "none":
                raise ValueError("'none' is never accepted: an unsigned token proves nothing")
            if alg not in JWT_ALGORITHMS:
                raise ValueError(f"{alg!r} is not one of {', '.join(JWT_ALGORITHMS)}")
        return value

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        weakness = key_weakness(value.get_secret_value()) if value is not None else None
        if weakness:
            raise ValueError(f"secret {weakness} (make one with `smsgw keygen hmac`)")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> JWTIssuerConfig:
        sources = [k for k in ("jwks_url", "public_key_file", "secret") if getattr(self, k)]
        if len(sources) != 1:
            raise KeyProblem(
                "jwks_url", "set exactly one of jwks_url, public_key_file or secret (the issuer's keys)"
            )
        hmac_algs = [a for a in self.algorithms if a in JWT_HMAC_ALGORITHMS]
        if self.secret is not None and len(hmac_algs) != len(self.algorithms):
            raise KeyProblem(
                "algorithms", 'a secret verifies HS256/HS384/HS512 only: set algorithms = ["HS256"]'
            )
        if self.secret is None and hmac_algs:
            raise KeyProblem(
                "algorithms",
                f"{hmac_algs[0]} with a public key would let anyone who has the public key sign "
                "tokens (algorithm confusion); HS algorithms need a secret",
            )
        if self.jwks_ca_file and not self.jwks_url:
            raise KeyProblem("jwks_ca_file", "applies only with jwks_url")
        return self


class JWTConfig(Model):
    issuers: tuple[JWTIssuerConfig, ...] = ()
    max_token_bytes: int = Field(8192, ge=1024, le=8192)

    @field_validator("issuers")
    @classmethod
    def _distinct(cls, value: tuple[JWTIssuerConfig, ...]) -> tuple[JWTIssuerConfig, ...]:
        seen: set[str] = set()
        for issuer in value:
            if issuer.issuer in seen:
                raise ValueError(f"issuer {issuer.issuer!r} is listed twice")
            seen.add(issuer.issuer)
        return value


class AuthConfig(Model):
    jwt: JWTConfig = JWTConfig()


class PoliciesConfig(Model):
    dir: str = "policies"


def _positive_duration(value: str) -> str:
    if parse_duration(value) == 0:
        raise ValueError("must be longer than 0 seconds")
    return value


PositiveDuration = Annotated[str, AfterValidator(_positive_duration)]
AlertAction = Literal["alert", "block"]


class AlertWebhookConfig(Model):
    """Each alert is also POSTed here, signed (gateway/alerts/anomalies.py)."""

    url: str
    secret: SecretStr
    key_id: Name = "smsgw-alerts"
    timeout_s: float = Field(5, gt=0, le=60)
    retries: int = Field(5, ge=0, le=20)
    queue: int = Field(1000, ge=1, le=100_000)
    ca_file: str = ""

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        weakness = key_weakness(value.get_secret_value())
        if weakness:
            raise ValueError(f"secret {weakness} (make one with `smsgw keygen hmac`)")
        return value


class AuthFailuresRule(Model):
    """More than ``threshold`` authentication failures from one client address within ``window``."""

    action: AlertAction = "alert"
    threshold: int = Field(20, ge=1, le=1_000_000)
    window: PositiveDuration = "1 minute"


class ClientVolumeRule(Model):
    """A client's messages in one ``window`` over ``multiple`` times its average window of the
    ``baseline`` before, and over ``min_messages``."""

    action: AlertAction = "alert"
    multiple: float = Field(5.0, gt=1, le=1000)
    window: PositiveDuration = "1 minute"
    baseline: PositiveDuration = "1 hour"
    min_messages: int = Field(100, ge=1, le=100_000_000)

    @model_validator(mode="after")
    def _windows(self) -> ClientVolumeRule:
        window, baseline = parse_duration(self.window), parse_duration(self.baseline)
        if baseline % window or baseline < window:
            raise KeyProblem("baseline", "must be a whole number of windows")
        if baseline // window > MAX_BASELINE_WINDOWS:
            raise KeyProblem("baseline", f"may span at most {MAX_BASELINE_WINDOWS} windows")
        return self


#: A client's baseline is read as this many counters at most (one call per client and window).
MAX_BASELINE_WINDOWS = 1440


class NumberPrefixRule(Model):
    """More than ``threshold`` distinct numbers within ``window`` in one number prefix (the number
    without its last 4 digits): SMS pumping runs through consecutive numbers of one range."""

    action: AlertAction = "alert"
    threshold: int = Field(20, ge=1, le=10_000)
    window: PositiveDuration = "1 hour"


class NewCountryRule(Model):
    """A send to a country outside the client's usual ones: those it sent to while it was
    ``learn`` old, and since (alert mode), and not forgotten (``remember``)."""

    action: AlertAction = "alert"
    learn: PositiveDuration = "7 days"
    remember: PositiveDuration = "90 days"

    @model_validator(mode="after")
    def _learn_within_memory(self) -> NewCountryRule:
        if parse_duration(self.remember) < parse_duration(self.learn):
            raise KeyProblem("remember", "must not be shorter than learn")
        return self


ConversionSubject = Literal["country", "prefix", "address"]


class ConversionRule(Model):
    """OTP sends against successful checks, per destination country, number prefix and client
    address (gateway/alerts/conversion.py): pumped codes are never entered, so their conversion falls.

    ``learn`` records what the rule would refuse and alerts nobody; ``alert`` also raises an
    alert; ``block`` refuses new OTP sends there with 429 ``anomaly_blocked``.
    """

    action: Literal["learn", "alert", "block"] = "learn"
    window: PositiveDuration = "1 hour"
    check_window: PositiveDuration = "10 minutes"
    min_sends: int = Field(20, ge=1, le=1_000_000)
    threshold: float = Field(0.2, gt=0, lt=1)
    by: tuple[ConversionSubject, ...] = ("country", "prefix", "address")

    @model_validator(mode="after")
    def _windows(self) -> ConversionRule:
        window, check = parse_duration(self.window), parse_duration(self.check_window)
        if window % check or window < 3 * check:
            raise KeyProblem("window", "must be a whole number of check_windows, at least three")
        if window // check > MAX_CONVERSION_BUCKETS:
            raise KeyProblem("window", f"may span at most {MAX_CONVERSION_BUCKETS} check_windows")
        if not self.by or len(set(self.by)) != len(self.by):
            raise KeyProblem("by", "names each of country, prefix, address at most once, and one at least")
        return self


#: A conversion subject is read as twice this many counters at most (one storage call a send).
MAX_CONVERSION_BUCKETS = 48


class AlertsConfig(Model):
    """Anomaly rules (a rule is on when its table is present) and where alerts go."""

    webhook: AlertWebhookConfig | None = None
    auth_failures: AuthFailuresRule | None = None
    client_volume: ClientVolumeRule | None = None
    number_prefix: NumberPrefixRule | None = None
    new_country: NewCountryRule | None = None
    conversion: ConversionRule | None = None


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


# --- policy files -----------------------------------------------------------------------------


class HMACKeyConfig(Model):
    id: Name
    secret: SecretStr
    created: date | None = None
    expires: date | None = None

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr) -> SecretStr:
        weakness = key_weakness(value.get_secret_value())
        if weakness:
            raise ValueError(f"secret {weakness} (make one with `smsgw keygen hmac`)")
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
    #: missing or empty allows no destination (loader.py refuses it for a client that may send).
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
