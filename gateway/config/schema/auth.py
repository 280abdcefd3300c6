"""``[auth.jwt]``: the JWT issuers and what their tokens may be signed with."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.model import KeyProblem, Model
from gateway.config.schema.values import strong_secret

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
        return strong_secret(value)

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
