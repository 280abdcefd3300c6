"""The ``[route.webhook]`` table: per-route settings a signature scheme or the forwarding needs.

Which keys apply to which ``signature`` scheme is checked in ``gateway/callbacks/config.py``; a key
that does not apply is refused rather than ignored. (The model is declared like
``gateway.config.model.Model`` without importing it: the config schema imports this module.)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["WebhookOptions"]


class WebhookOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    #: vonage: md5-hash | hmac-md5 | hmac-sha1 | hmac-sha256 | hmac-sha512; hmac: sha1 | sha256 | sha512
    algorithm: str = ""
    #: hmac: the header that holds the signature
    header: str = Field("", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]*$", max_length=64)
    encoding: Literal["hex", "base64", "base64url"] = "hex"
    prefix: str = Field("", max_length=32)
    #: vonage, vonage-jwt, sinch: how far the signed timestamp may be from now
    tolerance_s: int = Field(300, ge=10, le=86400)
    #: forwarding to forward_to: the whole exchange must end within this
    timeout_s: float = Field(10, gt=0, le=60)
    #: forwarding over https to a private CA
    ca_file: str = ""
    #: hmac: where the vendor's message id and status are (a field name or a JSON pointer)
    message_id: str = ""
    status: str = ""

    @field_validator("message_id", "status")
    @classmethod
    def _field(cls, value: str) -> str:
        if len(value) > 128 or any(ord(c) < 0x20 for c in value):
            raise ValueError("must be a field name or a JSON pointer such as /data/id")
        return value
