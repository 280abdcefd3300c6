"""Sealed bodies (``logging.body = "seal"``): only the holder of the reviewers' private key reads them.

Round trips with both key types, a body that another key cannot open, a gateway that holds only
the public key (and refuses a private one), and ``smsgw keygen seal`` / ``smsgw audit unseal``.
"""

from __future__ import annotations

import contextlib
import io
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.commands.cli import main
from gateway.commands.review import body_problem
from gateway.core.redaction import Redactor
from gateway.core.seal import (
    ALG_RSA,
    ALG_X25519,
    SealError,
    SealKey,
    UnsealKey,
    is_sealed_shape,
    key_id_of,
    make_key_pair,
)
from gateway.server.config import ConfigError, load_config
from tests.conftest import GatewayFactory, Vendor, write_config

TEXTS = ["Your code is 4711", "Kood: 123 456 ✓ é 日本", ""]


def pair(kind: str, rsa_bits: int = 2048) -> tuple[SealKey, UnsealKey]:
    private_pem, public_pem, key_id = make_key_pair(kind, rsa_bits)
    private = serialization.load_pem_private_key(private_pem, password=None)
    public = serialization.load_pem_public_key(public_pem)
    assert key_id == key_id_of(public)  # type: ignore[arg-type]
    return SealKey(public, key_id), UnsealKey(private, key_id)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[SealKey, UnsealKey]]:
    return {
        "x25519": pair("x25519"),
        "x25519-other": pair("x25519"),
        "rsa": pair("rsa"),
        "rsa-other": pair("rsa"),
    }


@pytest.mark.parametrize("kind", ["x25519", "rsa"])
@pytest.mark.parametrize("text", TEXTS)
def test_seal_round_trip(keys, kind: str, text: str) -> None:
    seal, unseal = keys[kind]
    sealed = seal.seal(text)
    assert sealed["alg"] == (ALG_X25519 if kind == "x25519" else ALG_RSA)
    assert is_sealed_shape(sealed)
    assert body_problem({"sealed": sealed}) is None
    assert unseal.open(sealed) == text
    assert text.encode() not in json.dumps(sealed).encode() or text == ""
    assert seal.seal(text) != sealed  # a fresh data key and nonce every time


@pytest.mark.parametrize(
    ("kind", "other"),
    [("x25519", "x25519-other"), ("rsa", "rsa-other"), ("x25519", "rsa"), ("rsa", "x25519")],
)
def test_a_sealed_body_cannot_be_opened_with_another_key(keys, kind: str, other: str) -> None:
    sealed = keys[kind][0].seal("Your code is 4711")
    with pytest.raises(SealError):
        keys[other][1].open(sealed)
    # Not even when the record is edited to name the other key: the key id is bound to the value.
    relabelled = {**sealed, "key_id": keys[other][1].key_id}
    with pytest.raises(SealError, match=r"cannot be opened|sealed to an"):
        keys[other][1].open(relabelled)


@pytest.mark.parametrize("kind", ["x25519", "rsa"])
def test_an_altered_sealed_body_does_not_open(keys, kind: str) -> None:
    seal, unseal = keys[kind]
    sealed = seal.seal("Your code is 4711")
    ct = sealed["ct"]
    flipped = ct[:-2] + ("A" if ct[-2] != "A" else "B") + ct[-1]
    with pytest.raises(SealError, match="altered"):
        unseal.open({**sealed, "ct": flipped})
    with pytest.raises(SealError, match="not a sealed value"):
        unseal.open({**sealed, "nonce": "not base64!"})


def test_redactor_seals_bodies_and_needs_a_key(keys) -> None:
    seal, unseal = keys["x25519"]
    redactor = Redactor(body_mode="seal", recipient_mode="mask", hash_key=None, seal_key=seal)
    body = redactor.body("Your code is 4711")
    assert set(body) == {"sealed"}
    assert unseal.open(body["sealed"]) == "Your code is 4711"
    assert redactor.body(None) is None
    with pytest.raises(ValueError, match="seal_public_key_file"):
        Redactor(body_mode="seal", recipient_mode="mask", hash_key=None)


def smsgw(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("kind", ["x25519", "rsa"])
def test_keygen_seal_writes_a_private_key_only_its_owner_reads(tmp_path: Path, kind: str) -> None:
    private, public = tmp_path / "reviewers.pem", tmp_path / "seal.pub.pem"
    code, out, err = smsgw(
        "keygen", "seal", "--type", kind, "--private", str(private), "--public", str(public)
    )
    assert code == 0, err
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PRIVATE" not in public.read_bytes()
    assert f'seal_public_key_file = "{public}"' in out
    code, _, err = smsgw("keygen", "seal", "--private", str(private), "--public", str(tmp_path / "x.pem"))
    assert code == 2 and "exists; not overwritten" in err


async def test_a_gateway_seals_bodies_and_reviewers_unseal_them(
    make_gateway: GatewayFactory, vendor: Vendor, tmp_path: Path
) -> None:
    private, public = tmp_path / "reviewers" / "seal.pem", tmp_path / "seal.pub.pem"
    private.parent.mkdir()
    assert smsgw("keygen", "seal", "--private", str(private), "--public", str(public))[0] == 0
    gw = await make_gateway(
        vendor.base_url, settings={"logging": {"body": "seal", "seal_public_key_file": str(public)}}
    )
    secret_text = "Your code is 480213, never share it"
    assert (await gw.send({"To": "+37255512367", "From": "MyBank", "Body": secret_text})).status == 201
    assert (await gw.send({"To": "+37255512368", "From": "MyBank", "Body": "second"})).status == 201
    loaded = next(r for r in gw.audit_all() if r["event"] == "config_loaded")
    assert loaded["body_mode"] == "seal" and loaded["seal_key_id"].startswith("s")
    assert secret_text not in gw.logs() and "480213" not in gw.logs()
    audit = str(gw.folder / "logs" / "audit.jsonl")
    assert smsgw("audit", "verify", audit)[0] == 0  # sealed bodies are a redacted shape

    code, out, err = smsgw("audit", "unseal", "--key", str(private), audit)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["event"], r["body"]["unsealed"]) for r in records] == [
        ("request", secret_text),
        ("outcome", secret_text),
        ("request", "second"),
        ("outcome", "second"),
    ]
    assert "4 body(ies) opened" in err and "clear text" in err

    other = tmp_path / "other.pem"
    assert smsgw("keygen", "seal", "--private", str(other), "--public", str(tmp_path / "other.pub"))[0] == 0
    code, out, err = smsgw("audit", "unseal", "--key", str(other), audit)
    assert code == 1
    assert secret_text not in out
    assert "4 body(ies) not opened: sealed to another key" in err


def test_check_config_refuses_a_private_key_or_a_weak_one_as_the_seal_key(tmp_path: Path, pki) -> None:
    private, public = tmp_path / "seal.pem", tmp_path / "seal.pub.pem"
    assert smsgw("keygen", "seal", "--private", str(private), "--public", str(public))[0] == 0
    weak = tmp_path / "weak.pub.pem"
    weak.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (must be refused)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cases = {
        private: "holds a private key",
        weak: "1024-bit RSA key",
        pki["gateway_cert"]: "is not a PEM public key",
    }
    for path, message in cases.items():
        config = write_config(
            tmp_path / "gw",
            pki,
            "https://127.0.0.1:1",
            {"logging": {"body": "seal", "seal_public_key_file": str(path)}},
        )
        with pytest.raises(ConfigError) as caught:
            load_config(config)
        (problem,) = caught.value.problems
        assert problem.key == "logging.seal_public_key_file"
        assert message in problem.message
    config = write_config(
        tmp_path / "gw",
        pki,
        "https://127.0.0.1:1",
        {"logging": {"body": "seal", "seal_public_key_file": str(public)}},
    )
    assert load_config(config).settings.logging.body == "seal"
