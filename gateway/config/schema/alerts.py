"""``[alerts]``: the anomaly rules and the alert webhook."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.model import KeyProblem, Model
from gateway.config.schema.values import Name, PositiveDuration, parse_duration, strong_secret

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
        strong_secret(value)
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
