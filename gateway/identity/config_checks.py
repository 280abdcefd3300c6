"""check-config for the JWT issuers' key files: each must exist, and a public key must load for
the algorithms the issuer lists (gateway/identity/keys.py), or no token could ever verify."""

from __future__ import annotations

from gateway.config import Config, Problem
from gateway.identity.keys import PublicKeyError, load_public_key

__all__ = ["issuer_key_files"]


def issuer_key_files(config: Config, file: str) -> list[Problem]:
    problems: list[Problem] = []
    for i, issuer in enumerate(config.settings.auth.jwt.issuers):
        where = f"auth.jwt.issuers[{i}]"
        for key in ("public_key_file", "jwks_ca_file"):
            value = getattr(issuer, key)
            if value and not config.resolve_path(value).is_file():
                problems.append(Problem(file, f"{where}.{key}", f"{value} does not exist"))
            elif key == "public_key_file" and value:
                try:
                    load_public_key(config.resolve_path(value).read_bytes(), issuer.algorithms)
                except (OSError, PublicKeyError) as exc:
                    problems.append(Problem(file, f"{where}.{key}", str(exc)))
    return problems
