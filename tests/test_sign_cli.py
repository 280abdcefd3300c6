"""``smsgw keygen hmac|basic`` and ``smsgw sign`` as clients run them (real subprocesses)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from http_message_signatures import HTTPMessageVerifier, MappingKeyResolver
from http_message_signatures.algorithms import HMAC_SHA256
from multidict import CIMultiDict

from gateway.config.schema import BasicCredentialConfig, HMACKeyConfig
from tests.conftest import CLIENT_USER, GatewayFactory, Vendor, policy
from tests.test_cli import SMSGW, TIMEOUT, run

URL = f"https://127.0.0.1:8443/2010-04-01/Accounts/{CLIENT_USER}/Messages.json"
BODY = "To=%2B37255512367&From=MyBank&Body=hello"


def test_keygen_hmac_prints_a_secret_and_its_config_lines() -> None:
    result = run("keygen", "hmac", "--client", "billing")
    assert result.returncode == 0, result.stderr
    secret, *rest = result.stdout.splitlines()
    table = tomllib.loads("\n".join(rest))["client"]["hmac_keys"][0]
    today = datetime.now(UTC).date()
    assert table["id"] == f"billing-{today:%Y-%m}"
    assert (table["created"], table["expires"]) == (today, today + timedelta(days=90))
    env = table["secret"].removeprefix("env:")
    assert env == f"SMSGW_HMAC_BILLING_{today:%Y_%m}"
    HMACKeyConfig(**{**table, "secret": secret})  # what [[client.hmac_keys]] accepts
    assert run("keygen", "hmac", "--client", "billing").stdout.split()[0] != secret
    bad = run("keygen", "hmac", "--key-id", "no spaces please")
    assert bad.returncode == 2 and "not a valid key id" in bad.stderr


def test_keygen_basic_prints_a_whole_table() -> None:
    result = run("keygen", "basic", "--username", "AC0000billing")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    table = tomllib.loads("\n".join(lines[1:]))["client"]["basic"][0]
    assert table["username"] == "AC0000billing"
    BasicCredentialConfig(**table)


@dataclass
class _Message:
    method: str
    url: str
    headers: CIMultiDict[str]


def test_sign_prints_headers_the_independent_library_verifies() -> None:
    secret = "Hq3x8PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Y-"
    env = {**os.environ, "MY_HMAC": secret}
    result = subprocess.run(
        [*SMSGW, "sign", "--key-id", "k1", "--secret-env", "MY_HMAC", "--data", BODY, "POST", URL],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    headers = CIMultiDict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert set(headers) == {"Content-Digest", "Signature-Input", "Signature"}
    assert secret not in result.stdout
    verifier = HTTPMessageVerifier(
        signature_algorithm=HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={"k1": secret.encode()}, private_keys={}),
    )
    (verified,) = verifier.verify(_Message("POST", URL, headers), body=BODY.encode())
    assert verified.parameters["keyid"] == "k1"
    missing = run("sign", "--key-id", "k1", "--secret-env", "SMSGW_TEST_NOT_SET", "POST", URL)
    assert missing.returncode == 2 and "SMSGW_TEST_NOT_SET is not set" in missing.stderr


async def test_sign_send_runs_the_request(
    make_gateway: GatewayFactory, vendor: Vendor, monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    secret = "Hq3x8PZJ0kTn4bWc7yRm2sLd9fHg6aKe1uXo5iBw_Y-"
    monkeypatch.setenv("SMSGW_TEST_HMAC", secret)
    key = {"id": "billing-k1", "secret": "env:SMSGW_TEST_HMAC", "created": datetime.now(UTC).date()}
    gw = await make_gateway(
        vendor.base_url, policies=policy(route={"auth": ["hmac"]}, client={"hmac_keys": [key]})
    )
    url = gw.base + gw.send_path

    async def sign_send(secret_value: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *SMSGW,
            "sign", "--key-id", "billing-k1", "--secret-env", "CLIENT_HMAC", "--data", BODY,
            "--send", "--ca-file", str(pki["ca"]), "POST", url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "CLIENT_HMAC": secret_value, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
        return process.returncode or 0, out.decode()

    code, out = await sign_send(secret)
    assert (code, out.splitlines()[0]) == (0, "HTTP 201")
    assert len(vendor.received) == 1
    code, out = await sign_send(secret[::-1])
    assert (code, out.splitlines()[0]) == (1, "HTTP 401")
    assert '"unauthenticated"' in out
