"""``smsgw demo``: the sandbox vendor and a gateway in front of it, ready for curl.

Everything lives in one folder (default ``.smsgw-demo``): a self-signed certificate made on the
first run, generated secrets (mode 0600), a config and a policy that pass ``check-config``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.commands.keygen import random_token
from gateway.commands.sandbox import SandboxState, build_sandbox_app
from gateway.server.config import load_config
from gateway.server.main import start

DEMO_CLIENT_USER = "AC00000000000000000000000000demo"
DEMO_RECIPIENT = "+37255512367"


def make_self_signed(
    cert_path: Path, key_path: Path, hosts: tuple[str, ...] = ("localhost",), days: int = 365
) -> None:
    """A self-signed certificate (its own CA: trust the certificate file itself) for ``hosts``,
    127.0.0.1 and ::1; the key is written with mode 0600. For demos and examples only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smsgw demo")])
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName(h) for h in hosts] + [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _secret(path: Path, make: str | None = None) -> str:
    if not path.exists():
        _write_private(path, ((make or random_token()) + "\n").encode())
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class DemoFolder:
    path: Path
    vendor_sid: str
    vendor_token: str
    client_password: str


def prepare_folder(directory: Path) -> DemoFolder:
    """Make the certificate and secrets on the first run; reuse them afterwards."""
    directory = directory.absolute()
    secrets_dir = directory / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / "policies").mkdir(exist_ok=True)
    cert, key = directory / "cert.pem", secrets_dir / "key.pem"
    if not cert.exists() or not key.exists():
        make_self_signed(cert, key)
    _secret(secrets_dir / "log_hash_key")
    return DemoFolder(
        directory,
        vendor_sid=_secret(secrets_dir / "vendor_account_sid", "AC" + secrets.token_hex(16)),
        vendor_token=_secret(secrets_dir / "vendor_token"),
        client_password=_secret(secrets_dir / "client_password"),
    )


def write_config(folder: DemoFolder, sandbox_port: int, port: int, admin_port: int) -> Path:
    """Write the config and policy for this run (the sandbox's port changes every run)."""
    directory, vendor_sid = folder.path, folder.vendor_sid
    digest = hashlib.sha256(folder.client_password.encode()).hexdigest()
    (directory / "config.toml").write_text(
        f"""# Written by `smsgw demo`; secrets are in ./secrets (mode 0600).
[server]
listen = "127.0.0.1:{port}"
[server.tls]
cert_file = "cert.pem"
key_file = "secrets/key.pem"

[admin]
listen = "127.0.0.1:{admin_port}"

[upstream]
provider = "twilio"
base_url = "http://127.0.0.1:{sandbox_port}"   # the built-in sandbox vendor
[upstream.credentials]
type = "basic"
username = "{vendor_sid}"
password = "file:secrets/vendor_token"

[logging]
access_log = "logs/access.jsonl"
audit_log = "logs/audit.jsonl"
body = "hash"
recipient = "mask"
hash_key = "file:secrets/log_hash_key"

[policies]
dir = "policies"
"""
    )
    (directory / "policies" / "demo.toml").write_text(
        f"""[[client]]
id = "demo-app"
scopes = ["sms:send"]
countries = ["EE", "LV", "LT", "FI", "US", "GB", "DE"]
rate_limits = ["60/minute", "1000/day"]

[[client.basic]]
username = "{DEMO_CLIENT_USER}"
password_sha256 = "{digest}"

[[route]]
name = "twilio-send"
methods = ["POST"]
path = "/2010-04-01/Accounts/{{account}}/Messages.json"
kind = "sms"
auth = ["basic"]
scopes = ["sms:send"]
"""
    )
    return directory / "config.toml"


def curl_lines(folder: DemoFolder, port: int, admin_port: int) -> str:
    directory, password = folder.path, folder.client_password
    cacert = shlex.quote(str(directory / "cert.pem"))
    url = f"https://localhost:{port}/2010-04-01/Accounts/{DEMO_CLIENT_USER}/Messages.json"
    form = (
        f"--data-urlencode 'To={DEMO_RECIPIENT}' -d From=MyBank --data-urlencode 'Body=Your code is 123456'"
    )
    audit = directory / "logs" / "audit.jsonl"
    return "\n".join(
        [
            "smsgw demo is running. Paste these in another terminal:",
            "",
            "# 1. a send that succeeds (201 from the sandbox vendor):",
            f"curl -sS --cacert {cacert} -u '{DEMO_CLIENT_USER}:{password}' {url} {form}",
            "",
            "# 2. refused: a wrong credential (401 unauthenticated):",
            f"curl -sS --cacert {cacert} -u '{DEMO_CLIENT_USER}:wrong' {url} {form}",
            "",
            "# 3. the audit log: no body and no number in clear text",
            f"tail -n 4 {shlex.quote(str(audit))}",
            "",
            f"# health: curl -sS http://127.0.0.1:{admin_port}/healthz",
            "Stop with Ctrl-C.",
        ]
    )


async def run_demo(directory: Path, port: int, admin_port: int, ready: asyncio.Event | None = None) -> None:
    folder = prepare_folder(directory)
    state = SandboxState(folder.vendor_sid, folder.vendor_token, random_token())
    sandbox = web.AppRunner(build_sandbox_app(state), access_log=None, handle_signals=False)
    await sandbox.setup()
    site = web.TCPSite(sandbox, "127.0.0.1", 0)
    await site.start()
    sandbox_port = int(sandbox.addresses[0][1])
    config = load_config(write_config(folder, sandbox_port, port, admin_port))
    running = await start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(curl_lines(folder, running.public_port, running.admin_port), flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await running.stop()
        await sandbox.cleanup()
