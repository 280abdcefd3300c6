"""``smsgw init --provider NAME``: a starting config for every vendor that passes check-config with
no warning once the vendor's variables are set, serves real sends (the twilio one, in front of a
recording stand-in vendor), refuses what its policy does not allow, and never overwrites."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.commands.cli import main
from gateway.commands.init import STARTERS
from gateway.server.config import load_config
from gateway.server.main import start
from tests.conftest import Recorder, basic, client_ssl, error_of

SMSGW = [sys.executable, "-m", "gateway"]
#: Values for every variable a starter names (the test's stand-ins for the vendor's secrets).
VENDOR_ENV = {
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "twilio-token-0123456789abcdef",
    "VONAGE_API_KEY": "abcd1234",
    "VONAGE_API_SECRET": "vonage-secret-0123456789",
    "VONAGE_SIGNATURE_SECRET": "vonage-signature-secret-0123456789abcdef",
    "MESSENTE_API_USERNAME": "messente-user",
    "MESSENTE_API_PASSWORD": "messente-password-0123456789",
    "PLIVO_AUTH_ID": "MA" + "1" * 18,
    "PLIVO_AUTH_TOKEN": "plivo-token-0123456789",
    "SINCH_API_TOKEN": "sinch-token-0123456789",
    "SINCH_CALLBACK_SECRET": "sinch-callback-secret-0123456789abcdef",
    "INFOBIP_AUTHORIZATION": "App infobip-key-0123456789",
    "SMSAPI_TOKEN": "smsapi-token-0123456789",
    "MESSAGEBIRD_AUTHORIZATION": "AccessKey messagebird-key-0123456789",
    "MESSAGEBIRD_SIGNING_KEY": "messagebird-signing-key-0123456789abcdef",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SMSGW, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("provider", sorted(STARTERS))
def test_each_starter_passes_check_config_without_a_warning(
    tmp_path: Path, provider: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / provider
    assert main(["init", "--provider", provider, "--dir", str(folder)]) == 0
    names = re.findall(r"^([A-Z0-9_]+)=$", (folder / "secrets.env.example").read_text(), re.M)
    assert names and all(name in VENDOR_ENV for name in names)
    for name in names:
        monkeypatch.setenv(name, VENDOR_ENV[name])
    assert main(["check-config", "-c", str(folder / "config.toml")]) == 0
    out = capsys.readouterr()
    assert "OK (1 clients" in out.out and "warning" not in (out.out + out.err).lower(), out
    # secrets are private, and none is written into the config or the policy
    for name in ("hash_key", "client-password"):
        assert stat.S_IMODE((folder / "secrets" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "secrets").stat().st_mode) == 0o700
    password = (folder / "secrets" / "client-password").read_text()
    texts = (folder / "config.toml").read_text() + (folder / "policies" / f"{provider}.toml").read_text()
    assert password not in texts and (folder / "secrets" / "hash_key").read_text() not in texts
    # what the issue asks of a safe start: TLS, countries, limits, scopes, OTP caps, hashing
    policy = tomllib.loads((folder / "policies" / f"{provider}.toml").read_text())
    client = policy["client"][0]
    assert (
        client["countries"] and "*" not in client["countries"] and client["rate_limits"] and client["scopes"]
    )
    send = policy["route"][0]
    assert send["otp"]["max_sends"] and send["recipient_limits"]
    config = tomllib.loads((folder / "config.toml").read_text())
    assert config["server"]["tls"]["mode"] == "terminate" and config["logging"]["body"] == "hash"
    assert [r["kind"] for r in policy["route"]][1:] == (["webhook"] if STARTERS[provider].callback else [])


def test_init_never_overwrites(tmp_path: Path) -> None:
    """Through the installed command, as a user runs it."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "twilio.toml").write_text("# mine\n")
    done = run("init", "--provider", "twilio", "--dir", str(tmp_path))
    assert done.returncode == 2
    assert "twilio.toml exists; nothing was written" in done.stderr
    assert not (tmp_path / "config.toml").exists()
    assert (tmp_path / "policies" / "twilio.toml").read_text() == "# mine\n"


async def test_the_twilio_starter_serves_and_refuses(
    tmp_path: Path, pki: dict[str, Path], vendors: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    vendor = await vendors(recorder)
    folder = tmp_path / "gw"
    made = await asyncio.to_thread(run, "init", "--provider", "twilio", "--dir", str(folder))
    assert made.returncode == 0, made.stderr
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.setenv(name, VENDOR_ENV[name])
    # Only what a test must change: loopback ports, the stand-in vendor and its CA.
    config = (folder / "config.toml").read_text()
    config = config.replace('listen = "0.0.0.0:8443"', 'listen = "127.0.0.1:0"')
    config = config.replace('listen = "127.0.0.1:9000"', 'listen = "127.0.0.1:0"')
    config = config.replace(
        'base_url = "https://api.twilio.com"', f'base_url = "{vendor.base_url}"\nca_file = "{pki["ca"]}"'
    )
    config = config.replace('cert_file = "tls/cert.pem"', f'cert_file = "{pki["gateway_cert"]}"')
    config = config.replace('key_file = "tls/key.pem"', f'key_file = "{pki["gateway_key"]}"')
    (folder / "config.toml").write_text(config)
    policy = tomllib.loads((folder / "policies" / "twilio.toml").read_text())
    username = policy["client"][0]["basic"][0]["username"]
    password = (folder / "secrets" / "client-password").read_text()
    running = await start(load_config(folder / "config.toml"))
    try:
        url = f"https://127.0.0.1:{running.public_port}/2010-04-01/Accounts/{username}/Messages.json"
        auth = {"Authorization": basic(username, password)}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(pki))) as session:
            async with session.post(url, data={"To": "+14155550123", "Body": "hello"}, headers=auth) as r:
                assert r.status == 201, await r.text()
            async with session.post(url, data={"To": "+4915123456789", "Body": "hello"}, headers=auth) as r:
                assert (r.status, error_of(await r.read())["code"]) == (403, "destination_not_allowed")
            code = {"To": "+14155550124", "Body": "Your code is 482913"}
            statuses = []
            for _ in range(2):
                async with session.post(url, data=code, headers=auth) as r:
                    statuses.append(r.status)
            assert statuses == [201, 429]  # min_interval between two codes to one number
    finally:
        await running.stop()
    assert len(recorder.seen) == 2
    assert all(seen.headers["Authorization"] != auth["Authorization"] for seen in recorder.seen)
