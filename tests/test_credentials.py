"""gateway/transport/credentials.py: what each kind of vendor credential puts on the wire and keeps secret."""

from __future__ import annotations

import base64

from gateway.config.schema import CredentialsConfig
from gateway.transport.credentials import VendorCredentials


def test_credentials_basic() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="basic", username="AC1", password="tok:en"))
    token = base64.b64encode(b"AC1:tok:en").decode()
    assert creds.headers == (("Authorization", f"Basic {token}"),)
    assert creds.query == ()
    assert creds.secrets == {"tok:en", token}
    assert creds.username == "AC1"
    assert creds.header_names == {"authorization"}


def test_credentials_bearer() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="bearer", token="bt-123"))
    assert creds.headers == (("Authorization", "Bearer bt-123"),)
    assert creds.query == ()
    assert creds.secrets == {"bt-123"}
    assert creds.username == ""


def test_credentials_header() -> None:
    creds = VendorCredentials.from_config(
        CredentialsConfig(type="header", name="X-Vendor-Key", value="hv-1", username="acct")
    )
    assert creds.headers == (("X-Vendor-Key", "hv-1"),)
    assert creds.query == ()
    assert creds.secrets == {"hv-1"}
    assert creds.username == "acct"
    assert creds.header_names == {"x-vendor-key"}


def test_credentials_query() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="query", name="api_key", value="qv-1"))
    assert creds.headers == ()
    assert creds.query == (("api_key", "qv-1"),)
    assert creds.secrets == {"qv-1"}
    assert creds.header_names == frozenset()


def test_credentials_none() -> None:
    creds = VendorCredentials.from_config(CredentialsConfig(type="none"))
    assert (creds.headers, creds.query, creds.secrets, creds.username) == ((), (), frozenset(), "")


def test_no_vendor_secret_in_a_repr() -> None:
    """A debug print, an f-string or an exception that formats the credentials shows no secret."""
    kinds = [
        CredentialsConfig(type="basic", username="AC1", password="canary-pw-5c1e"),
        CredentialsConfig(type="bearer", token="canary-token-5c1e"),
        CredentialsConfig(type="header", name="X-Api-Key", value="canary-value-5c1e"),
        CredentialsConfig(type="query", name="api_key", value="canary-query-5c1e"),
        CredentialsConfig(
            type="aws-sigv4", username="AKIDEXAMPLE", password="canary-aws-5c1e", region="eu-west-1"
        ),
    ]
    for cfg in kinds:
        creds = VendorCredentials.from_config(cfg)
        assert creds.secrets, cfg.type
        for text in (repr(creds), str(creds), f"{creds!r}", repr(creds.aws)):
            assert "canary" not in text, (cfg.type, text)
            assert "5c1e" not in text
        if cfg.type == "basic":
            assert base64.b64encode(b"AC1:canary-pw-5c1e").decode() not in repr(creds)
