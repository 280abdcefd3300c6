"""Credentials made the way clients make them, by libraries independent of the gateway's:
JWTs by joserfc, RFC 9421 signatures by http-message-signatures, JWKS served over real TLS."""

from __future__ import annotations

import base64
import json
import ssl
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aiohttp import web
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

ISSUER = "https://auth.example.test/"
AUDIENCE = "smsgw"
SUBJECT = "billing-svc"
HMAC_KEY_ID = "billing-2026-11"
HMAC_SECRET = "Hq3x8PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Y-"  # as `smsgw keygen hmac` makes one
JWT_SECRET = "Jr7c2VYm9dQe4sLx0pNa8tKb6wHf1uGz3iOj5yRk_E-"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": now, "exp": now + 300}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def token(key: Any, alg: str, payload: dict[str, Any], kid: str | None = None) -> str:
    """A JWS made by joserfc, the independent library."""
    header: dict[str, Any] = {"alg": alg}
    if kid is not None:
        header["kid"] = kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns that EdDSA is deprecated by RFC 9864
        return jose_jwt.encode(header, payload, key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """A token no library would make: alg none, empty signature."""
    return f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}."


def hs256_with(secret: bytes, payload: dict[str, Any], kid: str | None = None) -> str:
    """HS256 keyed with arbitrary bytes (the RS public key, for the algorithm-confusion attack)."""
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@dataclass
class Keys:
    rsa: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}))
    ec: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", parameters={"kid": "ec-1"}))
    ed: OKPKey = field(default_factory=lambda: OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"}))
    hs: OctKey = field(default_factory=lambda: OctKey.import_key(JWT_SECRET))

    def pem_files(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for name, key in (("rsa", self.rsa), ("ec", self.ec), ("ed", self.ed)):
            out[name] = folder / f"{name}.pem"
            out[name].write_bytes(key.as_pem(private=False))
        return out


# --------------------------------------------------------------------------- a JWKS endpoint


@dataclass
class JwksServer:
    """An issuer's JWKS endpoint on loopback over TLS; counts fetches; can be stopped."""

    keys: list[dict[str, Any]]
    fetches: int = 0
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self, pki: dict[str, Path], port: int = 0) -> None:
        async def jwks(_: web.Request) -> web.Response:
            self.fetches += 1
            return web.json_response({"keys": self.keys})

        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", jwks)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki["vendor_cert"], pki["vendor_key"])
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=ctx).start()
        bound = self.runner.addresses[0][1]
        self.url = f"https://127.0.0.1:{bound}/.well-known/jwks.json"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def public_jwk(key: Any) -> dict[str, Any]:
    return key.as_dict(private=False)


# --------------------------------------------------------------------------- RFC 9421 by the other library


def library_signed(
    method: str,
    url: str,
    body: bytes,
    *,
    key_id: str = HMAC_KEY_ID,
    secret: str = HMAC_SECRET,
    nonce: str | None = None,
    created: int | None = None,
    components: tuple[str, ...] = ("@method", "@target-uri"),
    with_digest: bool = True,
    alg: bool = True,
) -> dict[str, str]:
    """Headers made by ``http-message-signatures`` over a ``requests`` prepared request."""
    import datetime
    import secrets

    prepared = requests.Request(method, url, data=body).prepare()
    signer = HTTPMessageSigner(
        signature_algorithm=HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: secret.encode()}),
    )
    signer.sign(
        prepared,
        key_id=key_id,
        nonce=secrets.token_urlsafe(16) if nonce is None else nonce,
        created=datetime.datetime.fromtimestamp(created, datetime.UTC) if created is not None else None,
        covered_component_ids=components,
        body=body if with_digest else None,
        include_alg=alg,
        label="sig1",
    )
    names = ("Content-Digest", "Signature-Input", "Signature")
    return {name: prepared.headers[name] for name in names if name in prepared.headers}
