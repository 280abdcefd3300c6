"""Sealed bodies: a message body encrypted to the reviewers' public key (``logging.body = "seal"``).

The gateway holds only the public key, so a stolen gateway host or log file reveals nothing;
the reviewers keep the private key elsewhere and open bodies with ``smsgw audit unseal``. Two
key types, both with AES-256-GCM for the body and a fresh data key per message:

- X25519: an ephemeral key pair per message; the data key is HKDF-SHA256 over the shared secret
  (salt: ephemeral public key + recipient public key).
- RSA (2048 bits or more): a random data key wrapped with RSA-OAEP (SHA-256).

The associated data binds the algorithm and the key id, so a sealed value cannot be replayed
under another algorithm. A sealed body never says how it was padded: its length shows (as the
``length`` of the other modes does).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "ALG_RSA",
    "ALG_X25519",
    "SealError",
    "SealKey",
    "UnsealKey",
    "is_sealed_shape",
    "load_seal_key",
    "load_unseal_key",
    "make_key_pair",
    "seal_key_problem",
]

ALG_X25519 = "x25519-hkdf-sha256-aes256gcm"
ALG_RSA = "rsa-oaep-sha256-aes256gcm"
MIN_RSA_BITS = 2048
_INFO = b"smsgw seal v1"
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

PublicKey = x25519.X25519PublicKey | rsa.RSAPublicKey
PrivateKey = x25519.X25519PrivateKey | rsa.RSAPrivateKey


class SealError(Exception):
    """A key that cannot be used, or a sealed value that cannot be opened (says which, never why
    in terms of the content)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise SealError("not a sealed value")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise SealError("not a sealed value") from None


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id_of(key: PublicKey) -> str:
    """Which key a body was sealed to, so a reviewer picks the right private key after a change."""
    return "s" + hashlib.sha256(_spki(key)).hexdigest()[:16]


def _aad(alg: str, key_id: str) -> bytes:
    return _INFO + b"|" + alg.encode("ascii") + b"|" + key_id.encode("ascii")


def _hkdf(shared: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(shared)


def _raw(key: x25519.X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class SealKey:
    """The reviewers' public key, loaded once at start; ``seal`` runs on the request path."""

    key: PublicKey
    key_id: str

    @property
    def alg(self) -> str:
        return ALG_X25519 if isinstance(self.key, x25519.X25519PublicKey) else ALG_RSA

    def seal(self, text: str) -> dict[str, str]:
        plaintext = text.encode("utf-8")
        nonce = os.urandom(12)
        alg = self.alg
        aad = _aad(alg, self.key_id)
        if isinstance(self.key, x25519.X25519PublicKey):
            ephemeral = x25519.X25519PrivateKey.generate()
            epk = _raw(ephemeral.public_key())
            data_key = _hkdf(ephemeral.exchange(self.key), epk + _raw(self.key))
            ct = AESGCM(data_key).encrypt(nonce, plaintext, aad)
            return {"alg": alg, "key_id": self.key_id, "epk": _b64(epk), "nonce": _b64(nonce), "ct": _b64(ct)}
        data_key = AESGCM.generate_key(bit_length=256)
        wrapped = self.key.encrypt(data_key, _OAEP)
        ct = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        return {"alg": alg, "key_id": self.key_id, "ek": _b64(wrapped), "nonce": _b64(nonce), "ct": _b64(ct)}


@dataclass(frozen=True, slots=True)
class UnsealKey:
    """The reviewers' private key (``smsgw audit unseal``); never loaded by the gateway."""

    key: PrivateKey
    key_id: str

    def open(self, sealed: Any) -> str:
        """The body text; :class:`SealError` when it is not sealed to this key or was altered."""
        if not is_sealed_shape(sealed):
            raise SealError("not a sealed value")
        if sealed["key_id"] != self.key_id:
            raise SealError(f"sealed to another key ({sealed['key_id']})")
        alg = sealed["alg"]
        nonce, ct = _unb64(sealed["nonce"]), _unb64(sealed["ct"])
        try:
            if alg == ALG_X25519:
                if not isinstance(self.key, x25519.X25519PrivateKey):
                    raise SealError("sealed to an X25519 key; this is an RSA key")
                epk = _unb64(sealed["epk"])
                shared = self.key.exchange(x25519.X25519PublicKey.from_public_bytes(epk))
                data_key = _hkdf(shared, epk + _raw(self.key.public_key()))
            else:
                if not isinstance(self.key, rsa.RSAPrivateKey):
                    raise SealError("sealed to an RSA key; this is an X25519 key")
                data_key = self.key.decrypt(_unb64(sealed["ek"]), _OAEP)
            plaintext = AESGCM(data_key).decrypt(nonce, ct, _aad(alg, sealed["key_id"]))
        except (InvalidTag, ValueError):
            raise SealError(
                "cannot be opened with this key (another key, or the value was altered)"
            ) from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise SealError("opened, but not UTF-8 text") from None


_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_SEALED_KEYS = {
    ALG_X25519: {"alg", "key_id", "epk", "nonce", "ct"},
    ALG_RSA: {"alg", "key_id", "ek", "nonce", "ct"},
}


def is_sealed_shape(value: Any) -> bool:
    """What ``SealKey.seal`` writes: the right keys, each a base64url string (nothing in clear)."""
    if not isinstance(value, dict):
        return False
    keys = _SEALED_KEYS.get(value.get("alg"))  # type: ignore[arg-type]
    if keys is None or set(value) != keys:
        return False
    if not isinstance(value["key_id"], str) or not value["key_id"].startswith("s"):
        return False
    return all(
        isinstance(value[name], str) and _B64URL.fullmatch(value[name]) for name in keys - {"alg", "key_id"}
    )


# --------------------------------------------------------------------------- keys


def _public_problem(key: object) -> str | None:
    if isinstance(key, x25519.X25519PublicKey):
        return None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"is a {key.key_size}-bit RSA key; use {MIN_RSA_BITS} bits or more (or X25519)"
        return None
    return "is not an X25519 or RSA public key (make a pair with `smsgw keygen seal`)"


def _read_public(path: Path) -> PublicKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SealError(f"{path} does not exist") from None
    except OSError as exc:
        raise SealError(f"{path} cannot be read ({exc.strerror})") from None
    if b"PRIVATE KEY" in data:
        raise SealError(
            f"{path} holds a private key: give the gateway only the public key "
            "(the private key belongs with the reviewers, never on the gateway host)"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise SealError(f"{path} is not a PEM public key (make a pair with `smsgw keygen seal`)") from None
    problem = _public_problem(key)
    if problem:
        raise SealError(f"{path} {problem}")
    return key  # type: ignore[return-value]


def seal_key_problem(path: Path) -> str | None:
    """Why ``logging.seal_public_key_file`` cannot be used, for check-config; ``None`` when it can."""
    try:
        _read_public(path)
    except SealError as exc:
        return str(exc)
    return None


def load_seal_key(path: Path) -> SealKey:
    key = _read_public(path)
    return SealKey(key, key_id_of(key))


def load_unseal_key(path: Path, password: bytes | None = None) -> UnsealKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SealError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        raise SealError(f"{path} is encrypted: give its passphrase") from None
    except ValueError:
        raise SealError(f"{path} is not a PEM private key (or the passphrase is wrong)") from None
    if not isinstance(key, x25519.X25519PrivateKey | rsa.RSAPrivateKey):
        raise SealError(f"{path} is not an X25519 or RSA private key")
    return UnsealKey(key, key_id_of(key.public_key()))


def make_key_pair(kind: str = "x25519", rsa_bits: int = 3072) -> tuple[bytes, bytes, str]:
    """``(private PEM, public PEM, key id)`` for ``smsgw keygen seal``."""
    private: PrivateKey
    if kind == "x25519":
        private = x25519.X25519PrivateKey.generate()
    elif kind == "rsa":
        if rsa_bits < MIN_RSA_BITS:
            raise SealError(f"RSA keys need {MIN_RSA_BITS} bits or more")
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        raise SealError(f"unknown key type {kind!r}; expected x25519 or rsa")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem, key_id_of(public)


def write_key_pair(private_path: Path, public_path: Path, kind: str = "x25519") -> str:
    """Write a new pair; never overwrites a file. The private key file is created with mode 0600."""
    private_pem, public_pem, key_id = make_key_pair(kind)
    for path in (private_path, public_path):
        if path.exists():
            raise SealError(f"{path} exists; not overwritten")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    os.chmod(private_path, 0o600)  # whatever the umask
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(public_pem)
    return key_id
