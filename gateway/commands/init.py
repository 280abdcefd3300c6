"""``smsgw init --provider NAME``: a safe starting config for one vendor.

It writes ``config.toml``, ``policies/<provider>.toml``, a self-signed certificate under ``tls/``,
secrets under ``secrets/`` (mode 0700/0600) and ``secrets.env.example`` naming the vendor
variables to set. The result passes ``smsgw check-config`` with no warning once those variables
are set: TLS, one client with scopes, countries and rate limits, OTP caps on the send route, the
vendor's callback route (where the vendor signs its callbacks), body hashing. Comments say what to
change. It never overwrites: if any file it would write exists, it writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.commands.keygen import random_token

__all__ = ["STARTERS", "Starter", "add_init_parser", "plan"]


@dataclass(frozen=True, slots=True)
class Callback:
    name: str
    path: str
    signature: str
    methods: tuple[str, ...] = ("POST",)
    #: ``env:NAME`` when the vendor signs with a secret other than its API credential.
    signing_env: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Starter:
    """What a first config for one vendor needs; docs/vendors.md says the same."""

    base_url: str
    credentials: tuple[tuple[str, str], ...]
    send_name: str
    send_path: str
    callback: Callback | None
    #: Why there is no callback route (the vendor does not sign its callbacks).
    no_callback: str = ""
    base_url_note: str = ""
    sdk_note: str = ""
    #: The client's password is needed in clear (AWS SigV4 signs with it).
    clear_password: bool = False


STARTERS: Final[dict[str, Starter]] = {
    "twilio": Starter(
        "https://api.twilio.com",
        (("type", "basic"), ("username", "env:TWILIO_ACCOUNT_SID"), ("password", "env:TWILIO_AUTH_TOKEN")),
        "twilio-send",
        "/2010-04-01/Accounts/{account}/Messages.json",
        Callback("twilio-status", "/callbacks/twilio/status", "twilio"),
        sdk_note='Client(USERNAME, PASSWORD), then client.api.base_url = "https://<this gateway>"',
    ),
    "vonage": Starter(
        "https://rest.nexmo.com",
        (("type", "basic"), ("username", "env:VONAGE_API_KEY"), ("password", "env:VONAGE_API_SECRET")),
        "vonage-send",
        "/sms/json",
        Callback(
            "vonage-dlr", "/callbacks/vonage/dlr", "vonage", ("GET", "POST"), "env:VONAGE_SIGNATURE_SECRET"
        ),
    ),
    "vonage-messages": Starter(
        "https://api.nexmo.com",
        (("type", "basic"), ("username", "env:VONAGE_API_KEY"), ("password", "env:VONAGE_API_SECRET")),
        "vonage-messages-send",
        "/v1/messages",
        Callback(
            "vonage-messages-status",
            "/callbacks/vonage/status",
            "vonage-jwt",
            signing_env="env:VONAGE_SIGNATURE_SECRET",
        ),
    ),
    "messente": Starter(
        "https://api.messente.com",
        (
            ("type", "basic"),
            ("username", "env:MESSENTE_API_USERNAME"),
            ("password", "env:MESSENTE_API_PASSWORD"),
        ),
        "messente-send",
        "/v1/omnimessage",
        Callback("messente-dlr", "/callbacks/messente", "messente"),
    ),
    "plivo": Starter(
        "https://api.plivo.com",
        (("type", "basic"), ("username", "env:PLIVO_AUTH_ID"), ("password", "env:PLIVO_AUTH_TOKEN")),
        "plivo-send",
        "/v1/Account/{auth_id}/Message/",
        Callback("plivo-status", "/callbacks/plivo/status", "plivo"),
    ),
    "sinch": Starter(
        "https://us.sms.api.sinch.com",
        (("type", "bearer"), ("token", "env:SINCH_API_TOKEN")),
        "sinch-send",
        "/xms/v1/{plan}/batches",
        Callback("sinch-dlr", "/callbacks/sinch", "sinch", signing_env="env:SINCH_CALLBACK_SECRET"),
        base_url_note="your region: us, eu, au, br or ca",
    ),
    "infobip": Starter(
        "https://api.infobip.com",
        (("type", "header"), ("name", "Authorization"), ("value", "env:INFOBIP_AUTHORIZATION")),
        "infobip-send",
        "/sms/3/messages",
        None,
        no_callback="Infobip's callback signature is not published: see docs/callbacks.md "
        '(signature = "hmac" with the header your Infobip subscription uses, and an ip_allow)',
        base_url_note="your account's base URL: https://<id>.api.infobip.com",
    ),
    "smsapi": Starter(
        "https://api.smsapi.com",
        (("type", "bearer"), ("token", "env:SMSAPI_TOKEN")),
        "smsapi-send",
        "/sms.do",
        None,
        no_callback="SMSAPI does not sign its callbacks: receive them on your own service, behind an "
        "allowlist of SMSAPI's addresses",
    ),
    "messagebird": Starter(
        "https://rest.messagebird.com",
        (("type", "header"), ("name", "Authorization"), ("value", "env:MESSAGEBIRD_AUTHORIZATION")),
        "messagebird-send",
        "/messages",
        Callback(
            "messagebird-status",
            "/callbacks/messagebird",
            "messagebird",
            ("GET", "POST"),
            "env:MESSAGEBIRD_SIGNING_KEY",
        ),
    ),
    "aws-sns": Starter(
        "https://sns.eu-west-1.amazonaws.com",
        (
            ("type", "aws-sigv4"),
            ("username", "env:AWS_ACCESS_KEY_ID"),
            ("password", "env:AWS_SECRET_ACCESS_KEY"),
            ("region", "eu-west-1"),
        ),
        "sns-publish",
        "/",
        None,
        no_callback="SNS reports SMS delivery to CloudWatch, not to a callback URL",
        base_url_note="your region (and set region below to the same)",
        clear_password=True,
    ),
}


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(provider: str, starter: Starter) -> str:
    creds = "\n".join(f"{key} = {_toml_str(value)}" for key, value in starter.credentials)
    base_note = f"   # {starter.base_url_note}" if starter.base_url_note else ""
    return f"""# smsgw: a starting config for {provider}, made by `smsgw init`. Check it with
#   smsgw check-config -c config.toml      (set the variables in secrets.env.example first)
# and run it with `smsgw serve -c config.toml`. Every key is explained in config.example.toml.

[server]
listen = "0.0.0.0:8443"
public_url = "https://sms-gw.example.com"   # CHANGE: how clients and {provider} reach this gateway
trusted_proxies = []             # CIDRs of load balancers in front, if any
max_body_bytes = 65536

[server.tls]
mode = "terminate"               # or "offloaded" behind a TLS-terminating load balancer
cert_file = "tls/cert.pem"       # CHANGE: a self-signed certificate for localhost; use your own
key_file = "tls/key.pem"
min_version = "1.2"

[hsts]
max_age_s = 31536000
include_subdomains = true

[admin]
listen = "127.0.0.1:9000"        # /healthz, /readyz, /metrics: keep it off public networks

[upstream]
provider = {_toml_str(provider)}
base_url = {_toml_str(starter.base_url)}{base_note}
connect_timeout_s = 3
timeout_s = 15

[upstream.credentials]           # the vendor credential only the gateway holds (secrets.env.example)
{creds}

[storage]
url = "memory://"                # CHANGE to redis://... for several replicas or workers
on_error = "closed"              # storage down: sends are refused (503), never let through unlimited

[logging]
level = "info"
access_log = "logs/access.jsonl"
audit_log = "logs/audit.jsonl"
body = "hash"                    # bodies are logged as a keyed HMAC, never in clear
recipient = "mask"
hash_key = "file:secrets/hash_key"
retention_days = 90

[policies]
dir = "policies"
"""


def policy_text(provider: str, starter: Starter, username: str, password_sha256: str) -> str:
    if starter.clear_password:
        credential = (
            f"username = {_toml_str(username)}\n"
            'password = "file:../secrets/client-password"   # SigV4 signs with it: needed in clear'
        )
    else:
        credential = (
            f"username = {_toml_str(username)}\n"
            f'password_sha256 = "{password_sha256}"   # SHA-256 of secrets/client-password'
        )
    sdk = f"\n# The client's SDK: {starter.sdk_note}" if starter.sdk_note else ""
    parts = [
        f"""# Who may send, where, and how much. One client to start with; copy the [[client]] table
# for each service that sends. Test a change with `smsgw explain` before you reload.{sdk}

[[client]]
id = "app"
scopes = ["sms:send"]
countries = ["US", "GB"]         # CHANGE: the countries your users are in (["*"]: anywhere, said explicitly)
senders = []                     # sender IDs this client may use; empty: any
ip_allow = []                    # CHANGE: your services' addresses (CIDRs); empty: any address
rate_limits = ["60/minute", "5000/day"]   # messages of this client on every route together

[[client.basic]]                 # the password is in secrets/client-password: hand it to the app team
{credential}

[[route]]
name = {_toml_str(starter.send_name)}
methods = ["POST"]
path = {_toml_str(starter.send_path)}
kind = "sms"
auth = ["basic"]                 # also "jwt", "hmac" (RFC 9421), "mtls": see docs/identity.md
scopes = ["sms:send"]
number_types = ["mobile", "fixed_line_or_mobile"]   # no premium-rate, satellite or toll-free numbers
rate_limits = ["50/second"]      # this route, all clients together
recipient_limits = ["5/hour"]    # one number (keyed by HMAC, never stored in clear)

[route.otp]                      # one-time codes in messages: capped per number
detect = '(?i)\\b(code|passcode|otp|verification)\\b\\D{{0,20}}\\d{{4,8}}\\b'
max_sends = 3
window = "15 minutes"
min_interval = "30 seconds"
"""
    ]
    return "".join((*parts, callback_text(provider, starter)))


def callback_text(provider: str, starter: Starter) -> str:
    """The vendor's signed callback route, or why there is none."""
    callback = starter.callback
    if callback is None:
        return f"\n# No callback route: {starter.no_callback}.\n"
    methods = ", ".join(_toml_str(m) for m in callback.methods)
    secret = f"\nsigning_secret = {_toml_str(callback.signing_env)}" if callback.signing_env else ""
    return f"""
[[route]]                        # {provider} -> this gateway -> your service, signed by {provider}
name = {_toml_str(callback.name)}
methods = [{methods}]
path = {_toml_str(callback.path)}   # tell {provider}: https://<public_url>{callback.path}
kind = "webhook"
auth = []
signature = {_toml_str(callback.signature)}{secret}
forward_to = "http://sms-events.internal:8080/{provider}"   # CHANGE: your internal service
"""


def env_example(starter: Starter) -> str:
    names = [v[4:] for _, v in starter.credentials if v.startswith("env:")]
    if starter.callback is not None and starter.callback.signing_env:
        names.append(starter.callback.signing_env[4:])
    lines = ["# Set these in the gateway's environment (a secrets manager, not this file) before it starts."]
    lines += [f"{name}=" for name in names]
    return "\n".join(lines) + "\n"


def plan(provider: str) -> dict[str, tuple[str | bytes, int]]:
    """Every file init writes, relative to the folder: (content, mode). Certificates are made apart."""
    starter = STARTERS[provider]
    password = random_token(32)
    username = (
        ("AKIA" + secrets.token_hex(8).upper()) if starter.clear_password else "AC" + secrets.token_hex(16)
    )
    digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
    return {
        "config.toml": (config_text(provider, starter), 0o644),
        f"policies/{provider}.toml": (policy_text(provider, starter, username, digest), 0o644),
        "secrets/hash_key": (random_token(32), 0o600),
        "secrets/client-password": (password, 0o600),
        "secrets.env.example": (env_example(starter), 0o644),
    }


def cmd_init(args: argparse.Namespace) -> int:
    from gateway.commands.demo import make_self_signed

    folder = Path(args.dir)
    files = plan(args.provider)
    targets = [folder / name for name in (*files, "tls/cert.pem", "tls/key.pem")]
    existing = [str(p) for p in targets if p.exists() or p.is_symlink()]
    if existing:
        print(
            f"smsgw init: {existing[0]} exists; nothing was written (init never overwrites)", file=sys.stderr
        )
        return 2
    for sub, mode in (("", 0o755), ("policies", 0o755), ("secrets", 0o700), ("tls", 0o700), ("logs", 0o750)):
        path = folder / sub
        path.mkdir(parents=True, exist_ok=True)
        if sub:
            os.chmod(path, mode)
    for name, (content, mode) in files.items():
        path = folder / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    make_self_signed(folder / "tls" / "cert.pem", folder / "tls" / "key.pem", ("localhost",), 365)
    starter = STARTERS[args.provider]
    print(f"wrote a starting config for {args.provider} in {folder}/:")
    for name in (*files, "tls/cert.pem", "tls/key.pem"):
        print(f"  {name}")
    print("next:")
    print(f"  1. set the variables in {folder}/secrets.env.example in the gateway's environment")
    print(f"  2. change every line marked CHANGE in {folder}/config.toml and {folder}/policies/")
    print(f"  3. smsgw check-config -c {folder}/config.toml")
    print(f"  4. give the client its username (policies/{args.provider}.toml) and secrets/client-password")
    if starter.callback is None:
        print(f"  note: no callback route: {starter.no_callback}")
    return 0


def add_init_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="write a safe starting config for one vendor (never overwrites)")
    p.add_argument("--provider", required=True, choices=sorted(STARTERS))
    p.add_argument("--dir", default=".", help="the folder to write into (default: here)")
    p.set_defaults(func=cmd_init)
