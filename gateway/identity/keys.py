"""Public keys for JWT verification: which key types fit which JWS algorithm.

A token is verified only with a key whose type fits its ``alg`` (RSA for RS/PS, the named curve
for ES, Ed25519 for EdDSA). HMAC algorithms never get a public key: that pairing is the
algorithm-confusion attack, where the public key, which everyone has, becomes an HMAC secret.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = ["PublicKey", "PublicKeyError", "key_fits", "load_public_key"]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


class PublicKeyError(ValueError):
    """A key file that does not hold a usable public key (the message names no key material)."""


def key_fits(alg: str, key: object) -> bool:
    """Can ``key`` verify a signature made with ``alg``? Never for an HS algorithm."""
    if alg[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey)
    if alg in _CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _CURVES[alg]
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey)
    return False


def load_public_key(pem: bytes, algorithms: Iterable[str]) -> PublicKey:
    """A PEM public key (SubjectPublicKeyInfo) or certificate that fits one of ``algorithms``."""
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise PublicKeyError("is not a PEM public key or certificate") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise PublicKeyError(f"holds a {type(key).__name__}, not an RSA, EC or Ed25519 public key")
    algorithms = tuple(algorithms)
    if not any(key_fits(alg, key) for alg in algorithms):
        raise PublicKeyError(
            f"holds a key that none of the issuer's algorithms ({', '.join(algorithms)}) use"
        )
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise PublicKeyError(f"holds a {key.key_size}-bit RSA key; at least 2048 bits are needed")
    return key
