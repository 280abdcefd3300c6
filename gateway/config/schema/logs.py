"""``[logging]``: the access and audit logs, their redaction and keys."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from gateway.config.model import KeyProblem, Model
from gateway.config.schema.values import key_weakness


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

    @property
    def hash_key_bytes(self) -> bytes | None:
        """``hash_key`` as the bytes HMACs take; None when it is not set."""
        return self.hash_key.get_secret_value().encode("utf-8") if self.hash_key else None

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
