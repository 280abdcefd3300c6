"""Identity config: JWT issuers, HMAC keys, TLS subjects. A mistake is refused naming its file and
key; a key due for rotation is a warning from check-config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.test_config import MAIN, POLICY, Folder, assert_one, client, policy, route

TODAY = datetime.now(UTC).date()
STRONG = "Hq3x8PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Y-"  # strong, but written inline
ISSUER = {"issuer": "https://auth.example.test/", "audience": "smsgw"}
KEY = {
    "id": "billing-k1",
    "secret": "env:SMSGW_TEST_HMAC",
    "created": TODAY,
    "expires": TODAY + timedelta(60),
}


@pytest.fixture
def folder(tmp_path: Path, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Folder:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMSGW_TEST_SHORT", "short-secret-from-env")
    monkeypatch.setenv("SMSGW_TEST_HMAC", "hmac-secret-from-env-1f2e3d4c5b6a79880716")
    return Folder(tmp_path, pki)


def pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def key_files(tmp_path: Path) -> dict[str, str]:
    where = tmp_path / "keys"
    where.mkdir()
    files = {
        "rsa": pem(rsa.generate_private_key(65537, 2048)),
        "rsa1024": pem(rsa.generate_private_key(65537, 1024)),  # noqa: S505 (refused: that is the test)
        "ec": pem(ec.generate_private_key(ec.SECP256R1())),
        "junk": b"not a key\n",
    }
    for name, data in files.items():
        (where / f"{name}.pem").write_bytes(data)
    return {name: str(where / f"{name}.pem") for name in files}


def jwt_settings(*issuers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"auth": {"jwt": {"issuers": list(issuers), **extra}}}


MAIN_CASES = [
    (
        "no-key-source",
        [ISSUER],
        "auth.jwt.issuers[0].jwks_url",
        "set exactly one of jwks_url, public_key_file",
    ),
    (
        "two-key-sources",
        [{**ISSUER, "jwks_url": "https://auth.example.test/jwks", "secret": "env:SMSGW_TEST_HMAC"}],
        "auth.jwt.issuers[0].jwks_url",
        "set exactly one of",
    ),
    (
        "alg-none",
        [{**ISSUER, "secret": "env:SMSGW_TEST_HMAC", "algorithms": ["HS256", "none"]}],
        "auth.jwt.issuers[0].algorithms",
        "'none' is never accepted",
    ),
    (
        "alg-unknown",
        [{**ISSUER, "secret": "env:SMSGW_TEST_HMAC", "algorithms": ["HS1"]}],
        "auth.jwt.issuers[0].algorithms",
        "'HS1' is not one of",
    ),
    (
        "hs-with-public-key",
        [{**ISSUER, "public_key_file": "{rsa}", "algorithms": ["RS256", "HS256"]}],
        "auth.jwt.issuers[0].algorithms",
        "algorithm confusion",
    ),
    (
        "secret-with-rs",
        [{**ISSUER, "secret": "env:SMSGW_TEST_HMAC", "algorithms": ["RS256"]}],
        "auth.jwt.issuers[0].algorithms",
        "a secret verifies HS256/HS384/HS512 only",
    ),
    (
        "lifetime-too-short",
        [{**ISSUER, "secret": "env:SMSGW_TEST_HMAC", "algorithms": ["HS256"], "max_lifetime_s": 10}],
        "auth.jwt.issuers[0].max_lifetime_s",
        "greater than or equal to 60",
    ),
    (
        "lifetime-a-year",
        [{**ISSUER, "secret": "env:SMSGW_TEST_HMAC", "algorithms": ["HS256"], "max_lifetime_s": 31536000}],
        "auth.jwt.issuers[0].max_lifetime_s",
        "less than or equal to 2592000",
    ),
    (
        "jwks-http",
        [{**ISSUER, "jwks_url": "http://auth.example.test/jwks"}],
        "auth.jwt.issuers[0].jwks_url",
        "must be an https:// URL",
    ),
    (
        "weak-secret",
        [{**ISSUER, "secret": "env:SMSGW_TEST_SHORT", "algorithms": ["HS256"]}],
        "auth.jwt.issuers[0].secret",
        "at least 32 bytes",
    ),
    (
        "inline-secret",
        [{**ISSUER, "secret": STRONG, "algorithms": ["HS256"]}],
        "auth.jwt.issuers[0].secret",
        "secrets must not be written inline",
    ),
    (
        "key-file-missing",
        [{**ISSUER, "public_key_file": "keys/none.pem"}],
        "auth.jwt.issuers[0].public_key_file",
        "does not exist",
    ),
    (
        "key-file-junk",
        [{**ISSUER, "public_key_file": "{junk}"}],
        "auth.jwt.issuers[0].public_key_file",
        "is not a PEM public key",
    ),
    (
        "key-file-short-rsa",
        [{**ISSUER, "public_key_file": "{rsa1024}", "algorithms": ["RS256"]}],
        "auth.jwt.issuers[0].public_key_file",
        "at least 2048 bits",
    ),
    (
        "key-file-wrong-type",
        [{**ISSUER, "public_key_file": "{ec}", "algorithms": ["RS256"]}],
        "auth.jwt.issuers[0].public_key_file",
        "none of the issuer's algorithms (RS256)",
    ),
    (
        "ca-without-jwks",
        [{**ISSUER, "public_key_file": "{rsa}", "algorithms": ["RS256"], "jwks_ca_file": "ca.pem"}],
        "auth.jwt.issuers[0].jwks_ca_file",
        "applies only with jwks_url",
    ),
    (
        "issuer-twice",
        [{**ISSUER, "public_key_file": "{rsa}", "algorithms": ["RS256"]}] * 2,
        "auth.jwt.issuers",
        "is listed twice",
    ),
]


@pytest.mark.parametrize(("issuers", "key", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in MAIN_CASES])
def test_bad_issuer_is_refused_naming_the_key(
    folder: Folder, key_files: dict[str, str], issuers: list[dict[str, Any]], key: str, fragment: str
) -> None:
    issuers = [
        {k: v.format(**key_files) if isinstance(v, str) else v for k, v in issuer.items()}
        for issuer in issuers
    ]
    assert_one(folder.problems(jwt_settings(*issuers)), MAIN, key, fragment)


def test_token_size_limit_cannot_exceed_what_http_carries(folder: Folder) -> None:
    assert_one(
        folder.problems(jwt_settings(max_token_bytes=65536)),
        MAIN,
        "auth.jwt.max_token_bytes",
        "less than or equal",
    )


def two(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    return [client(**first), client(id="other", basic=[], **second)]


def keyed(**changes: Any) -> dict[str, Any]:
    """A policy whose one client has one HMAC key, changed as given."""
    return policy(clients=[client(hmac_keys=[{**KEY, **changes}])])


POLICY_CASES = [
    (
        "jwt-without-issuers",
        policy([route(auth=["jwt"])]),
        "route[0].auth",
        "'jwt' needs [[auth.jwt.issuers]]",
    ),
    (
        "mtls-without-client-ca",
        policy([route(auth=["mtls"])]),
        "route[0].auth",
        "'mtls' needs server.tls.client_ca_file",
    ),
    (
        "tls-subject-without-client-ca",
        policy(clients=[client(tls_subject="svc")]),
        "client[0].tls_subject",
        "needs server.tls.client_ca_file",
    ),
    ("hmac-weak-secret", keyed(secret="env:SMSGW_TEST_SHORT"), "client[0].hmac_keys[0].secret", "32 bytes"),
    (
        "hmac-inline-secret",
        keyed(secret=STRONG),
        "client[0].hmac_keys[0].secret",
        "must not be written inline",
    ),
    ("hmac-bad-id", keyed(id="a b"), "client[0].hmac_keys[0].id", "should match pattern"),
    (
        "hmac-expires-before-created",
        keyed(expires=TODAY - timedelta(1)),
        "client[0].hmac_keys[0].expires",
        "must be after created",
    ),
    (
        "hmac-id-twice",
        policy(clients=two({"hmac_keys": [KEY]}, {"hmac_keys": [KEY]})),
        "client[1].hmac_keys[0].id",
        "is already used",
    ),
    (
        "jwt-issuer-unknown",
        policy(clients=[client(jwt_issuer="https://nobody/")]),
        "client[0].jwt_issuer",
        "names no issuer",
    ),
    (
        "jwt-subject-twice",
        policy(clients=two({"jwt_subject": "svc"}, {"jwt_subject": "svc"})),
        "client[1].jwt_subject",
        "another client has this jwt_subject",
    ),
]


@pytest.mark.parametrize(("tables", "key", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in POLICY_CASES])
def test_bad_identity_policy_is_refused_naming_the_key(
    folder: Folder, tables: dict, key: str, fragment: str
) -> None:
    assert_one(folder.problems(None, tables), POLICY, key, fragment)


def test_tls_subjects_must_differ(folder: Folder) -> None:
    settings = {"server": {"tls": {"client_ca_file": str(folder.pki["ca"])}}}
    tables = policy(clients=two({"tls_subject": "svc.internal"}, {"tls_subject": "SVC.internal"}))
    assert_one(folder.problems(settings, tables), POLICY, "client[1].tls_subject", "another client has this")


def test_subjects_may_repeat_under_different_issuers(folder: Folder, key_files: dict[str, str]) -> None:
    issuers = [
        {**ISSUER, "public_key_file": key_files["rsa"], "algorithms": ["RS256"]},
        {
            **ISSUER,
            "issuer": "https://other.example.test/",
            "public_key_file": key_files["ec"],
            "algorithms": ["ES256"],
        },
    ]
    first = {"jwt_subject": "svc", "jwt_issuer": ISSUER["issuer"]}
    second = {"jwt_subject": "svc", "jwt_issuer": "https://other.example.test/"}
    config = folder.load(jwt_settings(*issuers), policy(clients=two(first, second)))
    assert not config.warnings
    # without jwt_issuer, any configured issuer could name the client: a warning says so
    config = folder.load(jwt_settings(*issuers), policy(clients=[client(jwt_subject="svc")]))
    assert [(w.key, w.message.split(":")[0]) for w in config.warnings] == [
        ("client[0].jwt_issuer", "several issuers are configured")
    ]


# --------------------------------------------------------------------------- rotation warnings


@pytest.mark.parametrize(
    ("dates", "key", "fragment"),
    [
        pytest.param(
            {"created": TODAY - timedelta(100)}, "created", "is 100 days old (over 90): rotate it", id="old"
        ),
        pytest.param(
            {"expires": TODAY + timedelta(10)}, "expires", f"expires on {TODAY + timedelta(10)}", id="soon"
        ),
        pytest.param({"expires": TODAY}, "expires", "has expired (refused): remove it", id="expired"),
        pytest.param({}, "", "has neither created nor expires", id="undated"),
    ],
)
def test_keys_due_for_rotation_are_warnings(
    folder: Folder, dates: dict[str, Any], key: str, fragment: str
) -> None:
    hmac_key = {"id": "billing-k1", "secret": "env:SMSGW_TEST_HMAC", **dates}
    config = folder.load(None, policy(clients=[client(hmac_keys=[hmac_key])]))
    (warning,) = config.warnings
    assert warning.file == POLICY
    assert warning.key == "client[0].hmac_keys[0]" + (f".{key}" if key else "")
    assert fragment in warning.message


def test_a_fresh_key_is_quiet(folder: Folder) -> None:
    assert not folder.load(None, policy(clients=[client(hmac_keys=[KEY])])).warnings
