"""The ``smsgw`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from pydantic import ValidationError

from gateway.commands.command import load_or_exit
from gateway.commands.conversion_cli import add_alerts_parser
from gateway.commands.explain import add_explain_parser
from gateway.commands.init import add_init_parser
from gateway.commands.keygen import basic_credential, basic_lines, hmac_key_lines, random_token, sdk_username
from gateway.commands.review import add_audit_parser
from gateway.config import Config, ConfigError, parse_listen
from gateway.config.schema import HMACKeyConfig
from gateway.config.weakening import Weakening, weakenings
from gateway.core.oplog import configure as configure_oplog
from gateway.server.config import load_config


def _configure_logging(level: str, fmt: str = "text") -> None:
    configure_oplog(level, fmt)
    # aiohttp's access logger is off (the gateway writes its own); its protocol errors go to
    # ``smsgw.protocol``, which keeps no request bytes (server/main.py).
    logging.getLogger("aiohttp.access").disabled = True


def _load(path: str) -> Config:
    return load_or_exit(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Exit 2 on any problem (in either config); warnings are printed on stderr and still exit 0.

    With ``--against OLD``, each way the config loosens OLD (what a reload from OLD would record
    as ``policy_weakened``) is printed on stdout; that is a warning too, and exits 0.
    """
    config = _load(args.config)
    weakened: list[Weakening] = []
    if args.against:
        try:
            old = load_config(args.against)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print(
                f"{len(exc.problems)} problem(s) in --against {args.against}; nothing compared.",
                file=sys.stderr,
            )
            return 2
        weakened = weakenings(old, config)
        for weakening in weakened:
            print(weakening)
    for warning in config.warnings:
        print(warning.as_warning(), file=sys.stderr)
    counts = f"{len(config.clients)} clients, {len(config.routes)} routes"
    if config.warnings:
        counts += f", {len(config.warnings)} warning(s)"
    if args.against:
        counts += f", {len(weakened)} weakening(s) against {args.against}"
    print(f"{args.config}: OK ({counts})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server.main import serve
    from gateway.server.workers import run_workers

    config = _load(args.config)
    _configure_logging(config.settings.logging.level, config.settings.logging.format)
    for warning in config.warnings:
        logging.getLogger("smsgw").warning("%s", warning.as_warning())
    if config.settings.server.workers > 1:
        return run_workers(config)
    # Until the loop handles it (a reload), SIGHUP's default action would end a starting gateway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"smsgw: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Check the config, then SIGHUP the running gateway named by its pid file; with ``--wait``,
    watch its /readyz until it serves the new config (exit 1 if it does not: see its log)."""
    from gateway.audit.log import config_sha256
    from gateway.server.main import pid_path

    config = _load(args.config)  # a config with problems is not sent: the gateway would refuse it
    for warning in config.warnings:
        print(warning.as_warning(), file=sys.stderr)
    path = Path(args.pid_file) if args.pid_file else pid_path(config)
    if path is None:
        print(
            "smsgw reload: server.pid_file is empty; give --pid-file or send SIGHUP yourself", file=sys.stderr
        )
        return 2
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        print(f"smsgw reload: no gateway pid in {path} (is `smsgw serve` running?)", file=sys.stderr)
        return 2
    if not _is_gateway(pid):
        print(f"smsgw reload: process {pid} from {path} is not a running smsgw serve", file=sys.stderr)
        return 2
    os.kill(pid, signal.SIGHUP)
    print(f"sent SIGHUP to smsgw (pid {pid})")
    if args.wait <= 0:
        return 0
    wanted = config_sha256(config)
    host, port = parse_listen(config.settings.admin.listen)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/readyz"
    deadline = time.monotonic() + args.wait
    seen: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                seen = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            seen = json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            seen = {}
        if seen.get("config_sha256") == wanted:
            print(f"reloaded: config generation {seen.get('config_generation')}, sha256 {wanted[:16]}")
            return 0
        time.sleep(0.2)
    print(
        f"smsgw reload: the gateway still serves config sha256 {str(seen.get('config_sha256', '?'))[:16]} "
        f"(generation {seen.get('config_generation', '?')}): the reload was refused; its log says why",
        file=sys.stderr,
    )
    return 1


def _is_gateway(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: the signal will say
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid file
    return b"serve" in cmdline


def cmd_sandbox(args: argparse.Namespace) -> int:
    """The built-in fake vendor on its own (compose files, manual tests)."""
    from gateway.commands.sandbox import run_sandbox

    _configure_logging("info")
    account = os.environ.get(args.account_env, "")
    token = os.environ.get(args.token_env, "")
    if not account or not token:
        print(
            f"smsgw sandbox: set {args.account_env} and {args.token_env} (the vendor credential)",
            file=sys.stderr,
        )
        return 2
    if bool(args.cert) != bool(args.key):
        print("smsgw sandbox: give both --cert and --key, or neither", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_sandbox(args.listen, account, token, args.cert, args.key))
    except OSError as exc:
        print(f"smsgw sandbox: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.commands.demo import run_demo

    _configure_logging("info")
    try:
        asyncio.run(run_demo(Path(args.dir), args.port, args.admin_port))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"smsgw demo: cannot listen: {exc.strerror} (try --port/--admin-port, --port 0 for free "
            'ports; through make: make demo DEMO_ARGS="--port 0")',
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_keygen_cert(args: argparse.Namespace) -> int:
    from gateway.commands.demo import make_self_signed

    cert, key = Path(args.cert), Path(args.key)
    if cert.exists() or key.exists():
        print(f"smsgw keygen cert: {cert} or {key} exists; not overwritten", file=sys.stderr)
        return 2
    make_self_signed(cert, key, tuple(args.host) or ("localhost",), args.days)
    names = ", ".join(args.host) or "localhost"
    print(f"wrote {cert} (a self-signed certificate for {names}) and {key} (mode 0600)")
    return 0


def cmd_keygen_seal(args: argparse.Namespace) -> int:
    from gateway.core.seal import SealError, write_key_pair

    private, public = Path(args.private), Path(args.public)
    try:
        key_id = write_key_pair(private, public, args.type)
    except (SealError, OSError) as exc:
        print(f"smsgw keygen seal: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {private} (private key, mode 0600: give it to the reviewers, never to the gateway)")
    print(f"wrote {public} (public key, {key_id})")
    print(f'[logging] body = "seal", seal_public_key_file = "{public}"')
    return 0


def cmd_keygen_hash_key(args: argparse.Namespace) -> int:
    print(random_token(32))
    return 0


def cmd_keygen_hmac(args: argparse.Namespace) -> int:
    today = datetime.now(UTC).date()
    key_id = args.key_id or f"{args.client}-{today:%Y-%m}"
    secret, lines = hmac_key_lines(args.client, key_id, today, args.days)
    try:
        HMACKeyConfig(id=key_id, secret=secret)  # what [[client.hmac_keys]] will accept
    except ValidationError:
        print(f"smsgw keygen: {key_id!r} is not a valid key id (letters, digits, _.:-)", file=sys.stderr)
        return 2
    print(secret)
    print("# ^ the secret: give it to the client (it signs with it); store it only where 'secret' points")
    print("\n".join(lines))
    return 0


def cmd_keygen_basic(args: argparse.Namespace) -> int:
    password, digest = basic_credential()
    print("\n".join(basic_lines(args.username or sdk_username(), password, digest)))
    return 0


def _positive_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"{days} days: give at least 1")
    return days


def _add_keygen_parser(sub: argparse._SubParsersAction) -> None:
    """``smsgw keygen KIND``: one subcommand per kind of secret, each with its own flags."""
    keygen = sub.add_parser(
        "keygen",
        help="make a secret: hmac | hash-key | basic (with the config lines) | seal | cert",
        description="Make a secret and print the config lines for it. `smsgw keygen KIND --help` "
        "lists the flags of one kind.",
    )
    kinds = keygen.add_subparsers(dest="kind", required=True, metavar="KIND")

    p = kinds.add_parser(
        "hmac",
        help="an HMAC request-signing secret and its [[client.hmac_keys]] lines",
        description="A new HMAC secret (32 random bytes, base64url; the first line) and the "
        "[[client.hmac_keys]] lines that reference it.",
    )
    p.add_argument("--client", default="client", help="the client id the key is for (default: client)")
    p.add_argument("--key-id", help="the key id (default: CLIENT-YYYY-MM)")
    p.add_argument("--days", type=_positive_days, default=90, help="days until it expires (default: 90)")
    p.set_defaults(func=cmd_keygen_hmac)

    p = kinds.add_parser(
        "hash-key",
        help="a log hash key (logging.hash_key, logging.chain_key)",
        description="32 random bytes, base64url: the text is the key.",
    )
    p.set_defaults(func=cmd_keygen_hash_key)

    p = kinds.add_parser(
        "basic",
        help="a gateway-issued client password and its [[client.basic]] lines",
        description="A gateway-issued password (in a comment: give it to the client) and the "
        "[[client.basic]] lines with its password_sha256; paste them under the [[client]].",
    )
    p.add_argument("--username", help="the username (default: AC + 32 random hex digits)")
    p.set_defaults(func=cmd_keygen_basic)
    _add_keygen_file_kinds(kinds)


def _add_keygen_file_kinds(kinds: argparse._SubParsersAction) -> None:
    """The kinds that write key files (and never overwrite one): ``seal`` and ``cert``."""
    p = kinds.add_parser(
        "seal",
        help='the reviewers\' key pair for logging.body = "seal"',
        description="A key pair for sealed audit bodies; never overwrites a file.",
    )
    p.add_argument(
        "--type", choices=["x25519", "rsa"], default="x25519", help="the key type (default: x25519)"
    )
    p.add_argument("--private", default="seal-private.pem", help="where the private key goes (mode 0600)")
    p.add_argument("--public", default="seal-public.pem", help="where the public key goes")
    p.set_defaults(func=cmd_keygen_seal)

    p = kinds.add_parser(
        "cert",
        help="a self-signed certificate for examples and tests",
        description="A self-signed certificate (its own CA) for each --host, 127.0.0.1 and ::1; "
        "never overwrites a file.",
    )
    p.add_argument("--cert", default="cert.pem", help="where the certificate goes (default: cert.pem)")
    p.add_argument(
        "--key", default="key.pem", help="where its private key goes, mode 0600 (default: key.pem)"
    )
    p.add_argument(
        "--host", action="append", default=[], help="a DNS name it is for (repeatable; default: localhost)"
    )
    p.add_argument("--days", type=_positive_days, default=365, help="days it is valid (default: 365)")
    p.set_defaults(func=cmd_keygen_cert)


def cmd_sign(args: argparse.Namespace) -> int:
    """Print the RFC 9421 headers for one request; with ``--send``, send it and print the answer."""
    from gateway.core.signing import sign

    secret = os.environ.get(args.secret_env)
    if not secret:
        print(f"smsgw sign: environment variable {args.secret_env} is not set", file=sys.stderr)
        return 2
    if args.data is not None and args.data.startswith("@"):
        body = Path(args.data[1:]).read_bytes()
    else:
        body = (args.data or "").encode("utf-8")
    try:
        headers = sign(args.method, args.url, body, key_id=args.key_id, secret=secret)
    except ValueError as exc:
        print(f"smsgw sign: {exc}", file=sys.stderr)
        return 2
    if not args.send:
        for name, value in headers.items():
            print(f"{name}: {value}")
        return 0
    extra = dict(h.split(":", 1) for h in args.header)
    headers = {**{k.strip(): v.strip() for k, v in extra.items()}, **headers}
    if body and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    status, answer = asyncio.run(_send(args.method.upper(), args.url, body, headers, args.ca_file))
    print(f"HTTP {status}")
    sys.stdout.write(
        answer.decode("utf-8", "replace") + ("\n" if answer and not answer.endswith(b"\n") else "")
    )
    return 0 if status < 400 else 1


async def _send(
    method: str, url: str, body: bytes, headers: dict[str, str], ca_file: str | None
) -> tuple[int, bytes]:
    import ssl

    import aiohttp

    context = ssl.create_default_context(cafile=ca_file)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.request(method, url, data=body, headers=headers) as response:
            return response.status, await response.read()


def package_version() -> str:
    """The installed package's version, from its metadata (pyproject.toml's ``version``)."""
    try:
        return metadata.version("smsgw")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: no package metadata)"


class _VersionAction(argparse.Action):
    """``--version``: the metadata is read only when asked for, not on every command."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"smsgw {package_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS security gateway")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a config and its policies; exit 2 on any problem")
    p.add_argument("-c", "--config", required=True)
    p.add_argument(
        "--against",
        metavar="OLD",
        help="also list every way the config loosens OLD (the config it replaces); still exit 0",
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="run the sandbox vendor and a gateway in front of it")
    p.add_argument("--dir", default=".smsgw-demo")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--admin-port", type=int, default=9000)
    p.set_defaults(func=cmd_demo)

    _add_keygen_parser(sub)

    p = sub.add_parser("reload", help="check the config, then make the running gateway reload it (SIGHUP)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--pid-file", help="default: server.pid_file of the config")
    p.add_argument(
        "--wait", type=float, default=10, help="seconds to watch /readyz for the new config (0: don't)"
    )
    p.set_defaults(func=cmd_reload)

    p = sub.add_parser("sandbox", help="run the built-in fake vendor (every vendor's send API) on its own")
    p.add_argument("--listen", default="127.0.0.1:8089", help="HOST:PORT")
    p.add_argument("--cert", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--key", help="and this private key")
    p.add_argument("--account-env", default="SMSGW_SANDBOX_ACCOUNT", help="variable holding the account id")
    p.add_argument("--token-env", default="SMSGW_SANDBOX_TOKEN", help="variable holding the auth token")
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("sign", help="RFC 9421 HMAC headers for a request to the gateway (--send runs it)")
    p.add_argument("--key-id", required=True)
    p.add_argument("--secret-env", required=True, help="environment variable holding the secret")
    p.add_argument("--data", help="the body; @FILE reads it from a file")
    p.add_argument("--header", action="append", default=[], help="--send: an extra 'Name: value' header")
    p.add_argument("--send", action="store_true", help="send the request and print the answer")
    p.add_argument("--ca-file", help="--send: trust this CA for the gateway's certificate")
    p.add_argument("method")
    p.add_argument("url")
    p.set_defaults(func=cmd_sign)

    add_audit_parser(sub)
    add_alerts_parser(sub)
    add_explain_parser(sub)
    add_init_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
